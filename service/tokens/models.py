"""The `tokens` table: a token's name, role and sha256 (never the token itself)."""

from __future__ import annotations

from datetime import datetime

from sqlalchemy import CheckConstraint, DateTime, Integer, String
from sqlalchemy.orm import Mapped, mapped_column

from service.kit.db import Base
from service.kit.roles import ROLES
from service.kit.time import utcnow


class Token(Base):
    __tablename__ = "tokens"
    __table_args__ = (
        CheckConstraint("role IN (" + ", ".join(f"'{r}'" for r in ROLES) + ")", name="role_valid"),
        {"sqlite_autoincrement": True},  # ids never reused (see experiments)
    )

    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    # Unique forever: a revoked token keeps its name, so `created_by` always names one token.
    name: Mapped[str] = mapped_column(String(100), unique=True)
    role: Mapped[str] = mapped_column(String(10))
    # sha256 hex of the token; unique, and its index is the lookup of every request.
    token_hash: Mapped[str] = mapped_column(String(64), unique=True)
    created_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), default=utcnow)
    # Written at most once a minute per token (service.USED_EVERY), not on every request.
    last_used_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True), nullable=True)
    revoked_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True), nullable=True)

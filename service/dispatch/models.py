from __future__ import annotations

from datetime import datetime

from sqlalchemy import DateTime, ForeignKey, Index, Integer, String
from sqlalchemy.orm import Mapped, mapped_column

from service.kit.db import Base
from service.kit.time import utcnow


class OutboxMessage(Base):
    """A task that must reach the broker. Written in the same transaction as the row it is about,
    sent after commit, and re-sent by the relay until `sent_at` is set."""

    __tablename__ = "outbox"
    __table_args__ = (Index("ix_outbox_sent_at_id", "sent_at", "id"),)

    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    experiment_id: Mapped[int] = mapped_column(ForeignKey("experiments.id", ondelete="CASCADE"))
    task: Mapped[str] = mapped_column(String(100))
    queue: Mapped[str] = mapped_column(String(50))
    created_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), default=utcnow)
    sent_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True), nullable=True)
    send_attempts: Mapped[int] = mapped_column(Integer, default=0)

"""The artifacts table: every file in the store that a process reads back, with its sha256."""

from __future__ import annotations

from datetime import datetime

from sqlalchemy import BigInteger, DateTime, Index, Integer, String
from sqlalchemy.orm import Mapped, mapped_column

from service.kit.db import Base
from service.kit.time import utcnow

KINDS = ("dataset", "checkpoint", "model")


class Artifact(Base):
    __tablename__ = "artifacts"
    __table_args__ = (Index("ix_artifacts_experiment_id_kind", "experiment_id", "kind"),)

    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    key: Mapped[str] = mapped_column(String(500), unique=True)  # relative to ARTIFACT_URL
    kind: Mapped[str] = mapped_column(String(20))
    # The run a checkpoint or model belongs to (no foreign key: deleting a run lists its keys
    # first, deletes the objects, then the rows).
    experiment_id: Mapped[int | None] = mapped_column(Integer, nullable=True)
    epoch: Mapped[int | None] = mapped_column(Integer, nullable=True)  # a checkpoint's
    attempt: Mapped[int | None] = mapped_column(Integer, nullable=True)
    sha256: Mapped[str] = mapped_column(String(64))
    size: Mapped[int] = mapped_column(BigInteger)
    created_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), default=utcnow)

"""A sweep: a base spec and a search over its fields, run as ordinary experiments."""

from __future__ import annotations

from datetime import datetime
from enum import StrEnum
from typing import Any

from sqlalchemy import JSON, DateTime, Float, ForeignKey, Integer, String, Text, UniqueConstraint
from sqlalchemy.orm import Mapped, mapped_column

from service.kit.db import Base
from service.kit.time import utcnow


class SweepStatus(StrEnum):
    RUNNING = "running"
    FINISHED = "finished"  # every run ended (and, for lr_coarse_to_fine, stage 2 with them)
    CANCELLED = "cancelled"


SWEEP_STATUSES = tuple(SweepStatus)


class Sweep(Base):
    __tablename__ = "sweeps"
    __table_args__ = {"sqlite_autoincrement": True}  # ids never reused (see experiments)

    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    name: Mapped[str] = mapped_column(String(200), default="")
    strategy: Mapped[str] = mapped_column(String(30))
    # The request as accepted (base spec, parameters, strategy options): stage 2 of
    # lr_coarse_to_fine is built from it, possibly by another process long after the POST.
    request: Mapped[dict[str, Any]] = mapped_column(JSON)
    metric: Mapped[str] = mapped_column(String(50))
    mode: Mapped[str] = mapped_column(String(3))
    # The last stage launched. Advancing is a conditional UPDATE on this column, so when two
    # processes see stage 1 finish at once only one of them launches stage 2.
    stage: Mapped[int] = mapped_column(Integer, default=1)
    status: Mapped[str] = mapped_column(String(20), default=SweepStatus.RUNNING)
    note: Mapped[str | None] = mapped_column(Text, nullable=True)  # what the last stage chose
    # The token that made it: every stage's runs carry it as their created_by.
    created_by: Mapped[str | None] = mapped_column(String(100), nullable=True)
    created_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), default=utcnow)
    finished_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True), nullable=True)


class SweepDecision(Base):
    """A pruner's decision about one run at one epoch, with what it compared, in the order taken
    (`id`). (experiment_id, epoch) is unique: a resumed run that reaches the epoch again is told
    the decision already taken, never a second one."""

    __tablename__ = "sweep_decisions"
    __table_args__ = (UniqueConstraint("experiment_id", "epoch"),)

    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    sweep_id: Mapped[int] = mapped_column(Integer, index=True)
    experiment_id: Mapped[int] = mapped_column(ForeignKey("experiments.id", ondelete="CASCADE"))
    stage: Mapped[int] = mapped_column(Integer)
    bracket: Mapped[int] = mapped_column(Integer)
    epoch: Mapped[int] = mapped_column(Integer)
    rung: Mapped[int | None] = mapped_column(Integer, nullable=True)  # None: the median rule
    value: Mapped[float | None] = mapped_column(Float, nullable=True)
    cutoff: Mapped[float | None] = mapped_column(Float, nullable=True)
    compared: Mapped[int] = mapped_column(Integer)
    decision: Mapped[str] = mapped_column(String(10))  # "continue" | "stop"
    reason: Mapped[str] = mapped_column(Text)
    created_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), default=utcnow)


class SweepRung(Base):
    """A synchronous rung that has been decided. Inserting its row is what decides it: the key
    lets exactly one process (the last run's worker, or housekeeping after a crash) do it."""

    __tablename__ = "sweep_rungs"

    sweep_id: Mapped[int] = mapped_column(Integer, primary_key=True)
    stage: Mapped[int] = mapped_column(Integer, primary_key=True)
    bracket: Mapped[int] = mapped_column(Integer, primary_key=True)
    epoch: Mapped[int] = mapped_column(Integer, primary_key=True)
    reached: Mapped[int] = mapped_column(Integer)
    continued: Mapped[int] = mapped_column(Integer)
    decided_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), default=utcnow)

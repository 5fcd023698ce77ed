"""Tables of the experiments domain: the run, its per-epoch rows, its decisions, its tags."""

from __future__ import annotations

from datetime import datetime
from typing import Any

from sqlalchemy import (
    JSON,
    BigInteger,
    Boolean,
    CheckConstraint,
    DateTime,
    Float,
    ForeignKey,
    Index,
    Integer,
    LargeBinary,
    String,
    Text,
    UniqueConstraint,
)
from sqlalchemy.orm import Mapped, mapped_column

from service.kit.db import Base
from service.kit.time import utcnow
from service.training.status import ExperimentStatus

# What a worker does with the row: train the spec, or run an LR range test on its model and data.
KINDS = ("train", "lr_range_test")


class Experiment(Base):
    __tablename__ = "experiments"
    __table_args__ = (
        CheckConstraint(
            "status IN (" + ", ".join(f"'{s}'" for s in ExperimentStatus) + ")", name="status_valid"
        ),
        CheckConstraint("kind IN (" + ", ".join(f"'{k}'" for k in KINDS) + ")", name="kind_valid"),
        Index("ix_experiments_status_id", "status", "id"),
        Index("ix_experiments_batch_id_id", "batch_id", "id"),
        Index("ix_experiments_sweep_id_id", "sweep_id", "id"),
        # SQLite: never hand a deleted run's id out again (migration 7c41d2e9a0f3 says why).
        {"sqlite_autoincrement": True},
    )

    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    name: Mapped[str] = mapped_column(String(200), default="")
    spec: Mapped[dict[str, Any]] = mapped_column(JSON)
    status: Mapped[str] = mapped_column(String(20), default=ExperimentStatus.QUEUED)
    queue: Mapped[str] = mapped_column(String(50), default="cpu")
    kind: Mapped[str] = mapped_column(String(20), default="train", server_default="train")
    batch_id: Mapped[str | None] = mapped_column(String(40), nullable=True)
    # References sweeps.id; that key is declared in `service.models`, which knows both tables,
    # so this domain (and a worker that never loads sweeps) maps its tables on its own.
    sweep_id: Mapped[int | None] = mapped_column(Integer, nullable=True)
    sweep_stage: Mapped[int | None] = mapped_column(Integer, nullable=True)
    # A hyperband trial's bracket, drawn once as its stage's runs are created (NULL otherwise,
    # and for sweeps created before it was stored: service/sweeps/pruning.py, brackets_of).
    sweep_bracket: Mapped[int | None] = mapped_column(Integer, nullable=True)
    idempotency_key: Mapped[str | None] = mapped_column(String(200), nullable=True, unique=True)
    request_hash: Mapped[str | None] = mapped_column(String(64), nullable=True)
    # The name of the token that made it (its sweep's, for a sweep's later stages); null when the
    # API was open. A name, not a key: a revoked token's runs keep it.
    created_by: Mapped[str | None] = mapped_column(String(100), nullable=True)

    created_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), default=utcnow)
    updated_at: Mapped[datetime] = mapped_column(
        DateTime(timezone=True), default=utcnow, onupdate=utcnow
    )
    started_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True), nullable=True)
    finished_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True), nullable=True)

    # Who holds the run. `attempt` fences every write: a worker writes only while its attempt
    # number is the current one, so a stale or duplicate worker cannot write.
    lease_owner: Mapped[str | None] = mapped_column(String(200), nullable=True)
    lease_expires_at: Mapped[datetime | None] = mapped_column(
        DateTime(timezone=True), nullable=True
    )
    attempt: Mapped[int] = mapped_column(Integer, default=0)
    cancel_requested: Mapped[bool] = mapped_column(Boolean, default=False)

    epochs_run: Mapped[int] = mapped_column(Integer, default=0)
    split_sizes: Mapped[dict[str, int] | None] = mapped_column(JSON, nullable=True)
    steps_per_epoch: Mapped[int | None] = mapped_column(Integer, nullable=True)
    device: Mapped[str | None] = mapped_column(String(50), nullable=True)
    # Written by the worker when the run starts: the model's trainable parameters, and the
    # package and version of each plugin it trains with ({"model": {...}, "dataset": {...}}).
    param_count: Mapped[int | None] = mapped_column(BigInteger, nullable=True)
    plugins: Mapped[dict[str, Any] | None] = mapped_column(JSON, nullable=True)
    best_epoch: Mapped[int | None] = mapped_column(Integer, nullable=True)
    best_value: Mapped[float | None] = mapped_column(Float, nullable=True)
    stop_reason: Mapped[str | None] = mapped_column(Text, nullable=True)
    test_metrics: Mapped[dict[str, float] | None] = mapped_column(JSON, nullable=True)
    error: Mapped[str | None] = mapped_column(Text, nullable=True)
    # kind == "lr_range_test": the test's own parameters and, once done, its suggestion.
    range_test: Mapped[dict[str, Any] | None] = mapped_column(JSON, nullable=True)
    range_result: Mapped[dict[str, Any] | None] = mapped_column(JSON, nullable=True)


class EpochRow(Base):
    """One row per finished epoch. (experiment_id, epoch) is unique and serves `after_epoch`
    range reads."""

    __tablename__ = "epoch_metrics"
    __table_args__ = (UniqueConstraint("experiment_id", "epoch"),)

    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    experiment_id: Mapped[int] = mapped_column(
        ForeignKey("experiments.id", ondelete="CASCADE"), index=False
    )
    epoch: Mapped[int] = mapped_column(Integer)
    lr: Mapped[float] = mapped_column(Float)  # param group 0's, at the epoch's first step
    # Its minimum and maximum over the epoch's optimizer steps (null in rows from before them).
    lr_min: Mapped[float | None] = mapped_column(Float, nullable=True)
    lr_max: Mapped[float | None] = mapped_column(Float, nullable=True)
    # Every step's LR (little-endian float64, `service.training.per_step.pack`), only for runs
    # whose per-step LR depends on data or the optimizer (`per_step.recorded`); the others'
    # is recomputed from the spec. Deferred: the metrics pages never load it.
    step_lrs: Mapped[bytes | None] = mapped_column(LargeBinary, nullable=True, deferred=True)
    train_loss: Mapped[float | None] = mapped_column(Float, nullable=True)
    val_loss: Mapped[float | None] = mapped_column(Float, nullable=True)
    val_accuracy: Mapped[float | None] = mapped_column(Float, nullable=True)
    val_mae: Mapped[float | None] = mapped_column(Float, nullable=True)
    duration_s: Mapped[float] = mapped_column(Float)
    decision: Mapped[str | None] = mapped_column(String(40), nullable=True)
    # precision fp16: optimizer steps the GradScaler skipped (inf/NaN gradients) in this epoch
    skipped_steps: Mapped[int | None] = mapped_column(Integer, nullable=True)
    # The decision state after this epoch (plateau best/bad epochs/cooldown, early-stop wait):
    # the next epoch's decision needs only this row, however long the history.
    state: Mapped[dict[str, Any] | None] = mapped_column(JSON, nullable=True)
    attempt: Mapped[int] = mapped_column(Integer)
    created_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), default=utcnow)


class Decision(Base):
    """An LR reduction or a stop, with the numbers and the sentence that explain it."""

    __tablename__ = "decisions"
    __table_args__ = (UniqueConstraint("experiment_id", "epoch", "kind"),)

    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    experiment_id: Mapped[int] = mapped_column(ForeignKey("experiments.id", ondelete="CASCADE"))
    epoch: Mapped[int] = mapped_column(Integer)
    kind: Mapped[str] = mapped_column(String(30))
    monitor: Mapped[str | None] = mapped_column(String(50), nullable=True)
    value: Mapped[float | None] = mapped_column(Float, nullable=True)
    best: Mapped[float | None] = mapped_column(Float, nullable=True)
    best_epoch: Mapped[int | None] = mapped_column(Integer, nullable=True)
    old_lr: Mapped[float | None] = mapped_column(Float, nullable=True)
    new_lr: Mapped[float | None] = mapped_column(Float, nullable=True)
    reason: Mapped[str] = mapped_column(Text)
    created_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), default=utcnow)


class Attempt(Base):
    """One attempt at a run: which worker, when, from which checkpoint, and how it ended."""

    __tablename__ = "attempts"

    experiment_id: Mapped[int] = mapped_column(
        ForeignKey("experiments.id", ondelete="CASCADE"), primary_key=True
    )
    attempt: Mapped[int] = mapped_column(Integer, primary_key=True)
    worker: Mapped[str] = mapped_column(String(200))
    started_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), default=utcnow)
    ended_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True), nullable=True)
    # The checkpoint's epoch it resumed from (0: from the start); null until it has loaded one.
    resumed_from_epoch: Mapped[int | None] = mapped_column(Integer, nullable=True)
    # How it ended: a final status, handed_back, or lost (its lease expired).
    outcome: Mapped[str | None] = mapped_column(String(20), nullable=True)


class ExperimentTag(Base):
    """Tags as rows, so `?tag=key:value` is an indexed lookup on both SQLite and PostgreSQL."""

    __tablename__ = "experiment_tags"
    __table_args__ = (Index("ix_experiment_tags_key_value", "key", "value", "experiment_id"),)

    experiment_id: Mapped[int] = mapped_column(
        ForeignKey("experiments.id", ondelete="CASCADE"), primary_key=True
    )
    key: Mapped[str] = mapped_column(String(100), primary_key=True)
    value: Mapped[str] = mapped_column(String(200))


class RangePoint(Base):
    """One step of an LR range test: the LR tried, the batch loss and its smoothed value."""

    __tablename__ = "lr_range_points"

    experiment_id: Mapped[int] = mapped_column(
        ForeignKey("experiments.id", ondelete="CASCADE"), primary_key=True
    )
    step: Mapped[int] = mapped_column(Integer, primary_key=True)
    lr: Mapped[float] = mapped_column(Float)
    loss: Mapped[float | None] = mapped_column(Float, nullable=True)
    smoothed_loss: Mapped[float | None] = mapped_column(Float, nullable=True)


class RunStatusChange(Base):
    """The ledger /metrics counts runs by status from: one row per change in how many runs hold
    a status, written by the database's own triggers on `experiments` (migration a3c9e1f04b7d),
    so that every writer is counted: a worker's UPDATE, a batch's INSERT, a test's raw SQL, an
    operator's DELETE.

    Counting runs by status afresh is a pass over the (status, id) index: ~2.5 ms of a ~10 ms
    scrape with 10,000 runs on the reference box, and linear in the runs stored. The ledger is
    append-only, so a scrape reads it as it reads the epochs, past a high-water mark
    (monitoring/tail.py), and sums `delta` by status: its cost follows the changes since the
    last scrape, not the history."""

    __tablename__ = "run_status_changes"

    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    status: Mapped[str] = mapped_column(String(20))
    # Runs that came to hold `status` (positive) or left it (negative). On PostgreSQL one row per
    # status per INSERT or DELETE statement (a 1,000-run batch writes one); on SQLite one per run.
    delta: Mapped[int] = mapped_column(Integer)

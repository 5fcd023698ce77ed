"""Decided epochs as the rows that store them: what a run hands to its writer process
(runs/epoch_writer.py) and what that process writes. Plain values only, and no import of the
training core or torch: the writer process imports this module and the repository, and starts in
a fraction of the time and memory a worker does."""

from __future__ import annotations

from dataclasses import dataclass
from enum import IntEnum
from typing import Any

from sqlalchemy.engine import Connection

from service.artifacts.repository import ArtifactRepository
from service.experiments.repository import ExperimentRepository
from service.kit.db import session_scope


@dataclass(frozen=True)
class EpochRows:
    """Consecutive epochs of one run, ready to store in one transaction; or, with `start` and no
    rows, an attempt's start (from `epochs_run`: the checkpoint it resumed from, or 0); or, with
    `finish`, its end."""

    epochs_run: int  # the last one's epoch: the run's progress once they are stored
    best: dict[str, Any]  # best_epoch and best_value of the decision state after the last one
    rows: list[dict[str, Any]]  # epoch_metrics rows
    events: list[dict[str, Any]]  # decisions rows
    # What an attempt learnt at its start (device, steps_per_epoch, ...), written with its
    # progress, the attempt's start epoch and a later attempt's cut (runs/training.py: `begin`).
    start: dict[str, Any] | None = None
    # The run's final status and its values (stop_reason, test_metrics), and its model's
    # artifacts row: a run finished behind its worker (runs/finish.py: `finish_run_behind`).
    finish: dict[str, Any] | None = None
    model: dict[str, Any] | None = None

    @property
    def first(self) -> int:
        return int(self.rows[0]["epoch"]) if self.rows else self.epochs_run


class Written(IntEnum):
    """What a write found: false when the attempt no longer held the run (nothing written)."""

    LOST = 0
    STORED = 1
    CANCEL = 2  # stored, and a cancel of the run is requested: it stops at its next batch


def write(experiment_id: int, attempt: int, batch: EpochRows,
          conn: Connection | None = None) -> Written:  # fmt: skip
    """Store `batch` in one transaction fenced by the attempt."""
    with session_scope(conn) as session:
        return store(ExperimentRepository(session), experiment_id, attempt, batch)


def store(repo: ExperimentRepository, experiment_id: int, attempt: int,
          batch: EpochRows) -> Written:  # fmt: skip
    """The fence (the run's progress: the last epoch's), then the rows and their decisions,
    then whether a cancel is requested: the run learns it from the write behind its training,
    within one write (tens of milliseconds), not at its lease's next heartbeat (up to 2 s).
    A run's end (`finish`) is fenced by its own statement (on PostgreSQL one, with its
    attempt's end), which alone makes a finish that follows the stored epochs."""
    cancel = False
    if batch.finish is None or batch.rows or batch.start is not None:
        found = repo.fence_reading_cancel(experiment_id, attempt, epochs_run=batch.epochs_run,
                                          **batch.best, **(batch.start or {}))  # fmt: skip
        if found is None:
            return Written.LOST
        cancel = found
        if batch.start is not None:
            if attempt > 1:  # a later attempt redoes the epochs after its checkpoint
                repo.truncate_history(experiment_id, batch.epochs_run)
            repo.resumed_from(experiment_id, attempt, batch.epochs_run)
        if batch.rows:
            repo.write_epochs(batch.rows, batch.events)
    if batch.finish is not None:
        if not repo.finish(experiment_id, attempt, **batch.finish):
            return Written.LOST
        if batch.model is not None:
            ArtifactRepository(repo.session).record(batch.model)
    return Written.CANCEL if cancel else Written.STORED

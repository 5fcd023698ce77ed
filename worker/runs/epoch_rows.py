"""Decided epochs as the rows that store them: what a run hands to its writer process
(runs/epoch_writer.py) and what that process writes. Plain values only, and no import of the
training core or torch: the writer process imports this module and the repository, and starts in
a fraction of the time and memory a worker does."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from sqlalchemy.engine import Connection

from service.experiments.repository import ExperimentRepository
from service.kit.db import session_scope


@dataclass(frozen=True)
class EpochRows:
    """Consecutive epochs of one run, ready to store in one transaction."""

    epochs_run: int  # the last one's epoch: the run's progress once they are stored
    best: dict[str, Any]  # best_epoch and best_value of the decision state after the last one
    rows: list[dict[str, Any]]  # epoch_metrics rows
    events: list[dict[str, Any]]  # decisions rows

    @property
    def first(self) -> int:
        return int(self.rows[0]["epoch"])


def write(experiment_id: int, attempt: int, batch: EpochRows,
          conn: Connection | None = None) -> bool:  # fmt: skip
    """Store `batch` in one transaction fenced by the attempt; False when the attempt is no
    longer current (nothing is written)."""
    with session_scope(conn) as session:
        return store(ExperimentRepository(session), experiment_id, attempt, batch)


def store(repo: ExperimentRepository, experiment_id: int, attempt: int, batch: EpochRows) -> bool:
    """The fence (the run's progress: the last epoch's), then the rows and their decisions."""
    if not repo.fence(experiment_id, attempt, epochs_run=batch.epochs_run, **batch.best):
        return False
    repo.write_epochs(batch.rows, batch.events)
    return True

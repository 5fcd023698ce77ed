"""A run's worker as its repository calls (claim, fenced epoch writes, a resume from an earlier
checkpoint, finish), for tests that need a live run without training: on PostgreSQL each write
notifies like the worker's own."""

from __future__ import annotations

from service.experiments.repository import ExperimentRepository
from service.kit.db import session_scope
from worker.runs import epoch_rows
from worker.runs.epoch_rows import EpochRows


class Worker:
    """A run's worker, as its repository calls: claim, fenced epoch writes, resume, finish."""

    def __init__(self, experiment_id: int) -> None:
        self.id = experiment_id
        self.attempt = 0

    def claim(self) -> None:
        with session_scope() as s:
            attempt = ExperimentRepository(s).claim(self.id, "test-worker", 60)
        assert attempt is not None
        self.attempt = attempt

    def write(self, *epochs: int, decision_at: int | None = None) -> None:
        """The epochs in one transaction, as the worker's writer does."""
        with session_scope() as s:
            repo = ExperimentRepository(s)
            assert repo.fence(self.id, self.attempt, epochs_run=epochs[-1])
            rows = [{"experiment_id": self.id, "epoch": e, "lr": 0.1 / e, "duration_s": 0.01,
                     "decision": "reduce_lr" if e == decision_at else None,
                     "attempt": self.attempt, "state": None, "train_loss": 1.0 / e,
                     "val_loss": 1.0 / e + self.attempt, "val_accuracy": 0.5}
                    for e in epochs]  # fmt: skip
            decisions = [{"experiment_id": self.id, "epoch": decision_at, "kind": "reduce_lr",
                          "monitor": "val_loss", "value": 0.5, "best": 0.4, "best_epoch": 1,
                          "old_lr": 0.1, "new_lr": 0.01,
                          "reason": "val_loss did not improve for 2 epochs"}
                         ] if decision_at in epochs else []  # fmt: skip
            repo.write_epochs(rows, decisions)

    def hand_back_and_resume(self, checkpoint_epoch: int) -> None:
        """Shutdown hands the run back; the next claim resumes from an earlier checkpoint,
        cutting the rows after it."""
        with session_scope() as s:
            assert ExperimentRepository(s).release(self.id, self.attempt)
        self.claim()
        # The resumed attempt's start, as its worker hands it to its writer.
        start = EpochRows(checkpoint_epoch, {}, [], [], start={})
        assert epoch_rows.write(self.id, self.attempt, start)

    def finish(self, status: str = "succeeded") -> None:
        with session_scope() as s:
            assert ExperimentRepository(s).finish(self.id, self.attempt, status)

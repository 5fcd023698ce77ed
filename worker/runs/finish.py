"""How a worker's hold on a run ends: a final status, or the run handed back to the queue."""

from __future__ import annotations

from dataclasses import dataclass

from service.config import settings
from service.dispatch import service as dispatch
from service.experiments.repository import ExperimentRepository
from service.kit.db import session_scope
from service.kit.logging import get_logger
from service.training.status import ExperimentStatus
from worker.runs import epoch_writer
from worker.runs.artifacts import SavedModel, discard_checkpoints
from worker.runs.epoch_rows import EpochRows, Written
from worker.runs.retry import with_db_retry

log = get_logger(__name__)

# What a worker's call ends with when it does not end the run itself.
NOT_CLAIMED, LEASE_LOST, HANDED_BACK = "not_claimed", "lease_lost", "handed_back"
WAITING = "waiting"  # paused at a pruner's rung (service/sweeps/pruning.py)


@dataclass
class Outcome:
    experiment_id: int
    status: str  # a final status, or NOT_CLAIMED / LEASE_LOST / HANDED_BACK
    epochs_run: int = 0
    in_sweep: bool = True  # False: no sweep to move on when it ended

    @property
    def ended_run(self) -> bool:
        return self.status not in (NOT_CLAIMED, LEASE_LOST, HANDED_BACK, WAITING)


def finish_run(
    experiment_id: int, attempt: int, status: ExperimentStatus, checkpoints: bool = True,
    model: SavedModel | None = None, **values: object,
) -> bool:  # fmt: skip
    """Set the final status, fenced by the attempt; False when the run is no longer ours.
    `checkpoints`: False when the run can have none to discard (its first attempt took none).
    `model`: the final model written, recorded in the same transaction."""

    def finish() -> bool:
        with session_scope() as session:
            ended = ExperimentRepository(session).finish(experiment_id, attempt, status, **values)
            if ended and model is not None:
                model.record(session)
            return ended

    ended = with_db_retry(finish, f"experiment {experiment_id} finish")
    _log_end(ended, experiment_id, attempt, status, values)
    if ended and checkpoints:
        discard_checkpoints(experiment_id)  # an ended run keeps its final model only
    return ended


def finish_run_behind(
    experiment_id: int, attempt: int, status: ExperimentStatus, epochs_run: int,
    model: SavedModel | None = None, **values: object,
) -> None:  # fmt: skip
    """`finish_run` for a run with nothing to do once it has ended (no checkpoint to discard, no
    sweep to move on), written by the worker's epoch writer, fenced by the attempt as every
    write of it: the worker does not wait for the transaction (2-3 ms on PostgreSQL between
    every two runs it takes) but takes its next run, and `take`s the writer again only once it
    has answered. The final status is still stored only after every epoch row (the run's writes
    go one at a time, and its epochs were flushed first); a worker killed meanwhile leaves the
    write to its writer, which stores what its pipe holds before it exits, and a machine lost
    leaves the run to the reaper, as a crash just before a `finish_run` would."""
    finish = {"status": status, **values}
    batch = EpochRows(epochs_run, {}, [], [], finish=finish,
                      model=model.row() if model is not None else None)  # fmt: skip
    writer = epoch_writer.take()
    pending = writer.send(settings.effective_database_url, experiment_id, attempt, batch)

    def answered(written: Written | None) -> None:
        if written is not None:  # None: the write failed (logged); the reaper ends the run
            _log_end(bool(written), experiment_id, attempt, status, values)

    epoch_writer.keep_when_answered(writer, pending, answered)


def _log_end(ended: bool, experiment_id: int, attempt: int, status: str,
             values: dict[str, object]) -> None:  # fmt: skip
    fields = {k: v for k, v in values.items() if k in ("stop_reason", "error")}
    log.info("finished" if ended else "finish_refused", experiment_id=experiment_id,
             attempt=attempt, status=str(status), **fields)  # fmt: skip


def hand_back(experiment_id: int, attempt: int) -> None:
    """The worker is shutting down: return the run to the queue now instead of letting its
    lease run out. The next worker resumes from the last checkpoint."""

    def release() -> str | None:
        with session_scope() as session:
            queue = ExperimentRepository(session).release(experiment_id, attempt)
            if queue is not None:
                dispatch.enqueue(session, experiment_id, queue, dispatch.RUN_TASK)
            return queue

    # A few seconds at most: a worker stopping waits on this, and a run not handed back is
    # requeued by the reaper once its lease runs out.
    queue = with_db_retry(release, f"experiment {experiment_id} hand-back", budget_s=5)
    log.info("handed_back", experiment_id=experiment_id, attempt=attempt, queued=queue is not None)

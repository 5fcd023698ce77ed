"""A training run on this worker: the engine's program (`worker.engine.program`) with the
database around it. Each epoch is decided from the stored history and written in one fenced
transaction; checkpoints go to the run's artifact path; a resume cuts the history back to the
checkpoint it loads."""

from __future__ import annotations

import threading
import time
from functools import partial

from sqlalchemy.engine import Connection

from service.config import settings
from service.kit.db import get_engine
from service.kit.logging import get_logger
from service.training import decisions
from service.training.spec import ExperimentSpec
from service.training.status import ExperimentStatus
from worker.engine import checkpoint, program
from worker.engine.data import to_device
from worker.engine.model import pick_device
from worker.engine.plugins import param_count
from worker.runs import artifacts, plugins
from worker.runs.budget import data_budget
from worker.runs.datasets import check_fits, load_arrays
from worker.runs.epochs import decide_and_write, resume_point
from worker.runs.finish import LEASE_LOST, Outcome, finish_run
from worker.runs.retry import with_db_retry

log = get_logger(__name__)


class DatabaseSink:
    """`program.EpochSink` over the database: decide-and-write per epoch, checkpoints by the
    spec's `checkpoint_every` or else by time."""

    def __init__(
        self, experiment_id: int, attempt: int, spec: ExperimentSpec, stop: threading.Event,
        conn: Connection,
    ) -> None:  # fmt: skip
        self.experiment_id, self.attempt, self.spec = experiment_id, attempt, spec
        self.stop, self.conn = stop, conn
        self.saved_at = time.monotonic()  # when the last checkpoint was written (or the run began)

    def record(
        self, epoch: int, lr: float, duration: float, metrics: dict[str, float | None]
    ) -> tuple[decisions.Decision, decisions.State] | None:
        decision, state = with_db_retry(
            partial(
                decide_and_write,
                self.experiment_id,
                self.attempt,
                self.spec,
                epoch,
                lr,
                duration,
                metrics,
                self.conn,
            ),
            f"experiment {self.experiment_id} epoch {epoch}",
        )
        if decision is None:
            return None
        for event in decision.events:  # every decision, with the sentence the API shows
            log.info("decision", epoch=epoch, kind=event.kind, reason=event.reason,
                     old_lr=event.old_lr, new_lr=event.new_lr)  # fmt: skip
        return decision, state

    def checkpoint(self, state: program.RunState) -> None:
        if self.spec.checkpoint_every is not None:
            due = state.epoch % self.spec.checkpoint_every == 0
        else:
            # Default: by time, so small runs are not slowed and long epochs are never lost long.
            due = time.monotonic() - self.saved_at >= settings.checkpoint_seconds
        if due:
            path = artifacts.checkpoint_path(self.experiment_id)
            checkpoint.save(state.state_dict(), self.attempt, path)
            self.saved_at = time.monotonic()


def train_run(
    experiment_id: int, attempt: int, spec: ExperimentSpec, stop: threading.Event
) -> Outcome:
    device = pick_device(spec.device)
    arrays, info, dataset_plugin = load_arrays(spec.dataset)
    sizes = check_fits(spec, info, dataset_plugin)
    data = to_device(spec, arrays, info, device, data_budget(device))
    state = program.build(spec, data, device, plugins.model_plugin(spec))
    ckpt_path = artifacts.checkpoint_path(experiment_id)
    facts = {
        "device": str(device),
        "steps_per_epoch": state.steps_per_epoch,
        "split_sizes": sizes,
        "param_count": param_count(state.model),
        "plugins": plugins.pinned(spec, dataset_plugin),
    }
    ok, ckpt = with_db_retry(
        lambda: resume_point(experiment_id, attempt, checkpoint.load(ckpt_path), **facts),
        f"experiment {experiment_id} resume",
    )
    if not ok:
        return Outcome(experiment_id, LEASE_LOST)
    if ckpt is not None:
        state.load_state_dict(ckpt)
        log.info("resumed", from_epoch=state.epoch)

    with get_engine().connect() as conn:  # held for the run's per-epoch writes
        result = program.train(spec, data, state, DatabaseSink(experiment_id, attempt, spec,
                                                               stop, conn))  # fmt: skip
    if result.status is None:
        return Outcome(experiment_id, LEASE_LOST, result.epoch)
    if result.status != ExperimentStatus.DIVERGED:
        checkpoint.save_model(state.model.state_dict(), artifacts.model_path(experiment_id))
    ended = finish_run(experiment_id, attempt, result.status, stop_reason=result.reason,
                       test_metrics=result.test_metrics)  # fmt: skip
    if not ended:
        return Outcome(experiment_id, LEASE_LOST, result.epoch)
    ckpt_path.unlink(missing_ok=True)  # the model file supersedes it
    return Outcome(experiment_id, result.status, result.epoch)

"""A training run on this worker: the engine's program (`worker.engine.program`) with the
database around it. Each epoch is decided from the stored history and written in one fenced
transaction; checkpoints upload to the artifact store in the background (runs/artifacts.py); a
resume loads the newest good one and cuts the history back to it."""

from __future__ import annotations

import json
import threading
import time
from functools import partial

from sqlalchemy.engine import Connection

from service.config import settings
from service.kit.db import get_engine
from service.kit.logging import get_logger
from service.sweeps import pruning as sweep_pruning
from service.training import decisions, per_step
from service.training.spec import ExperimentSpec
from service.training.status import ExperimentStatus
from worker.engine import checkpoint, program
from worker.engine.data import to_device
from worker.engine.model import pick_device
from worker.engine.plugins import param_count
from worker.runs import artifacts, plugins, pruner
from worker.runs.budget import data_budget
from worker.runs.datasets import check_fits, load_arrays
from worker.runs.epochs import decide_and_write, last_epoch, resume_point
from worker.runs.finish import LEASE_LOST, WAITING, Outcome, finish_run
from worker.runs.retry import with_db_retry

log = get_logger(__name__)


class DatabaseSink:
    """`program.EpochSink` over the database: decide-and-write per epoch, checkpoints by the
    spec's `checkpoint_every` or else by time."""

    def __init__(
        self, experiment_id: int, attempt: int, spec: ExperimentSpec, stop: threading.Event,
        conn: Connection, uploads: artifacts.Checkpoints,
        prune: sweep_pruning.RunPruner | None = None,
    ) -> None:  # fmt: skip
        self.experiment_id, self.attempt, self.spec = experiment_id, attempt, spec
        self.stop, self.conn, self.uploads = stop, conn, uploads
        self.prune = prune  # the run's sweep pruner, if it has one
        self.saved_at = time.monotonic()  # when the last checkpoint was taken (or the run began)
        self.best_epoch: int | None = None  # the decision state's, for checkpoint retention

    def record(
        self, epoch: int, lr: float, duration: float, metrics: dict[str, float | None],
        lrs: per_step.EpochLRs | None = None,
    ) -> tuple[decisions.Decision, decisions.State] | None:  # fmt: skip
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
                lrs,
            ),
            f"experiment {self.experiment_id} epoch {epoch}",
        )
        if decision is None:
            return None
        if self.prune is not None and decision.stop is None:
            decision = with_db_retry(partial(pruner.after_epoch, self.prune, epoch, decision),
                                     f"experiment {self.experiment_id} pruner")  # fmt: skip
        self.best_epoch = state.best_epoch
        for event in decision.events:  # every decision, with the sentence the API shows
            log.info("decision", epoch=epoch, kind=event.kind, reason=event.reason,
                     old_lr=event.old_lr, new_lr=event.new_lr)  # fmt: skip
        return decision, state

    def checkpoint(self, state: program.RunState, now: bool = False) -> None:
        if now:
            due = True
        elif self.spec.checkpoint_every is not None:
            due = state.epoch % self.spec.checkpoint_every == 0
        else:
            # Default: by time, so small runs are not slowed and long epochs are never lost long.
            due = time.monotonic() - self.saved_at >= settings.checkpoint_seconds
        if due:
            # The bytes are taken now (a consistent copy); the upload runs while training goes on.
            data = checkpoint.dumps(state.state_dict(), self.attempt)
            self.uploads.submit(state.epoch, data, self.best_epoch)
            self.saved_at = time.monotonic()


def train_run(
    experiment_id: int, attempt: int, spec: ExperimentSpec, stop: threading.Event
) -> Outcome:
    device = pick_device(spec.device)
    arrays, info, dataset_plugin = load_arrays(spec.dataset)
    sizes = check_fits(spec, info, dataset_plugin)
    data = to_device(spec, arrays, info, device, data_budget(device))
    state = program.build(spec, data, device, plugins.model_plugin(spec))
    facts = {
        "device": str(device),
        "steps_per_epoch": state.steps_per_epoch,
        "split_sizes": sizes,
        "param_count": param_count(state.model),
        "plugins": plugins.pinned(spec, dataset_plugin),
    }
    last = with_db_retry(lambda: last_epoch(experiment_id), f"experiment {experiment_id} history")
    loaded = artifacts.latest_good(experiment_id, last)
    ok, ckpt = with_db_retry(
        lambda: resume_point(experiment_id, attempt, loaded, **facts),
        f"experiment {experiment_id} resume",
    )
    if not ok:
        return Outcome(experiment_id, LEASE_LOST)
    if ckpt is not None:
        state.load_state_dict(ckpt)
        log.info("resumed", from_epoch=state.epoch)

    prune = with_db_retry(lambda: pruner.of_run(experiment_id), f"experiment {experiment_id}")
    uploads = artifacts.Checkpoints(experiment_id, attempt)
    uploads.start()
    try:
        with get_engine().connect() as conn:  # held for the run's per-epoch writes
            sink = DatabaseSink(experiment_id, attempt, spec, stop, conn, uploads, prune)
            result = program.train(spec, data, state, sink)
    finally:
        # The last checkpoint taken completes its upload (a handed-back run resumes from it).
        uploads.close()
    if result.status is None:
        return Outcome(experiment_id, LEASE_LOST, result.epoch)
    if result.status == ExperimentStatus.WAITING and prune is not None:
        paused = with_db_retry(lambda: pruner.pause(experiment_id, attempt, prune, result.epoch),
                               f"experiment {experiment_id} pause")  # fmt: skip
        return Outcome(experiment_id, WAITING if paused else LEASE_LOST, result.epoch)
    if result.status != ExperimentStatus.DIVERGED:
        meta = {"spec": json.dumps(spec.model_dump(mode="json")), "status": str(result.status),
                "epochs_run": str(result.epoch),
                "test_metrics": json.dumps(result.test_metrics)}  # fmt: skip
        artifacts.save_model(experiment_id, attempt,
                             checkpoint.model_bytes(state.model.state_dict(), meta))  # fmt: skip
    ended = finish_run(experiment_id, attempt, result.status, stop_reason=result.reason,
                       test_metrics=result.test_metrics)  # fmt: skip
    if not ended:
        return Outcome(experiment_id, LEASE_LOST, result.epoch)
    return Outcome(experiment_id, result.status, result.epoch)

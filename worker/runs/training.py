"""A training run on this worker: the engine's program (`worker.engine.program`) with the
database around it. Each epoch is decided from the decision state stored with the one before it
(read from the database once per attempt, then kept in memory, equal to what was stored) and
written in fenced transactions behind the training, by the worker's writer process
(runs/epoch_writer.py): the next epochs train while the previous ones' rows commit (short epochs
share a transaction), and nothing (a checkpoint, a pause, the final model or status) happens
before every decided epoch is stored. Checkpoints upload to the
artifact store in the background (runs/artifacts.py); a resume loads the newest good one, and
its first write cuts the history back to it."""

from __future__ import annotations

import json
import threading
import time
from functools import partial
from typing import Any

from service.config import settings
from service.experiments.repository import ExperimentRepository
from service.kit.db import session_scope
from service.kit.logging import get_logger
from service.sweeps import pruning as sweep_pruning
from service.training import decisions, per_step
from service.training.spec import ExperimentSpec
from service.training.status import ExperimentStatus
from worker.engine import checkpoint, program
from worker.engine.data import to_device
from worker.engine.model import pick_device
from worker.engine.plugins import param_count
from worker.runs import artifacts, epoch_writer, plugins, pruner
from worker.runs.artifacts import discard_checkpoints
from worker.runs.budget import data_budget
from worker.runs.datasets import check_fits, load_arrays
from worker.runs.epoch_rows import EpochRows, Written
from worker.runs.epochs import Decided, rows_of, stored_state
from worker.runs.finish import LEASE_LOST, Outcome, finish_run, finish_run_behind
from worker.runs.retry import with_db_retry

log = get_logger(__name__)


class DatabaseSink:
    """`program.EpochSink` over the database: decide per epoch from the decision state in memory
    (read from the stored history at the attempt's first epoch) and write the epochs behind the
    training through `writer` (a process: epoch_writer.py), one transaction at a time (epochs
    decided within `epoch_write_seconds` of the last write share the next one: a short epoch
    does not pay a transaction of its own); checkpoints by the spec's `checkpoint_every` or else
    by time.

    A run with a sweep pruner writes each epoch before it returns: the pruner decides from the
    sweep's stored histories. `flush()` stores every epoch decided; `lost` once a write was
    refused (the attempt is no longer current): the next `record` returns None."""

    def __init__(
        self, experiment_id: int, attempt: int, spec: ExperimentSpec, stop: threading.Event,
        writer: epoch_writer.Writer, uploads: artifacts.Checkpoints,
        prune: sweep_pruning.RunPruner | None = None,
    ) -> None:  # fmt: skip
        self.experiment_id, self.attempt, self.spec = experiment_id, attempt, spec
        self.stop, self.writer, self.uploads = stop, writer, uploads
        self.prune = prune  # the run's sweep pruner, if it has one
        self.saved_at = time.monotonic()  # when the last checkpoint was taken (or the run began)
        self.best_epoch: int | None = None  # the decision state's, for checkpoint retention
        self.state: decisions.State | None = None  # as stored with the last epoch decided
        self.lost = False
        self._pending: epoch_writer.Pending | None = None  # the write in flight
        self._decided: list[Decided] = []  # decided, not yet handed to the writer
        self._sent_at = -float("inf")  # when the last write was handed to the writer

    def record(
        self, epoch: int, lr: float, duration: float, metrics: dict[str, float | None],
        lrs: per_step.EpochLRs | None = None, start_loss: float | None = None,
        overflow: decisions.Overflow | None = None,
    ) -> tuple[decisions.Decision, decisions.State] | None:  # fmt: skip
        if not self._collect():  # an earlier epoch's write was refused: the run is not ours
            return None
        what = f"experiment {self.experiment_id} epoch {epoch}"
        state = self.state
        if state is None:
            state = with_db_retry(
                partial(stored_state, self.experiment_id, self.spec, epoch, lr), what
            )
        decision, state = decisions.step(self.spec, state, epoch, metrics, lr, start_loss, overflow)
        self.state = state
        self._decided.append(Decided(epoch, lr, duration, metrics, lrs, decision, state))
        if self.prune is None or not self.prune.asks_at(epoch):
            # Commits while the next epochs train; short epochs share one transaction.
            self._send(due=True)
        else:
            # The pruner decides from the sweep's stored histories: this epoch is stored first.
            if not self.flush():
                return None
            if decision.stop is None:
                decision = with_db_retry(partial(pruner.after_epoch, self.prune, epoch, decision),
                                         f"experiment {self.experiment_id} pruner")  # fmt: skip
        self.best_epoch = state.best_epoch
        for event in decision.events:  # every decision, with the sentence the API shows
            log.info("decision", epoch=epoch, kind=event.kind, reason=event.reason,
                     old_lr=event.old_lr, new_lr=event.new_lr)  # fmt: skip
        return decision, state

    def begin(self, facts: dict[str, Any], epoch: int) -> None:
        """The attempt's start goes to the writer while its first epoch trains: its facts, its
        progress (`epoch`: the checkpoint it resumed from, 0 from scratch), the attempt's start
        epoch and, for a later attempt, the cut of the rows and decisions after `epoch`, which
        it redoes. A transaction fewer before the training: 2 ms on PostgreSQL between every
        two runs a worker takes, 5-13 ms in every resume (a rung's promoted runs included). A
        refused write stops the run once its answer is in, as a refused epoch write does, and
        nothing of the attempt is stored: every later write is refused too. The decision state
        the first epoch starts from is stored with the row at `epoch`, which the cut keeps."""
        self._write(EpochRows(epoch, {}, [], [], start=facts))

    def _collect(self, wait: bool = False) -> bool:
        """Take the result of the write in flight once it is done (or, with `wait`, when it
        is); False once a write was refused (a write's error is raised here)."""
        pending = self._pending
        if pending is not None and (wait or pending.done()):
            self._pending = None
            written = pending.result()
            if not written:
                self.lost = True
            elif written == Written.CANCEL:
                self.stop.set()  # the loop stops at its next batch and the run ends cancelled
        return not self.lost

    def _send(self, due: bool = False) -> None:
        """Hand the epochs decided to the writer as one transaction, when no write is in flight
        (and, with `due`, `settings.epoch_write_seconds` after the last one was handed over)."""
        if self.lost or not self._decided or self._pending is not None:
            return
        now = time.monotonic()
        if due and now - self._sent_at < settings.epoch_write_seconds:
            return
        epochs, self._decided, self._sent_at = self._decided, [], now
        self._write(rows_of(self.experiment_id, self.attempt, epochs))

    def _write(self, batch: EpochRows) -> None:
        """One transaction to the writer; its answer is taken by `_collect`."""
        self._pending = self.writer.send(settings.effective_database_url, self.experiment_id,
                                         self.attempt, batch)  # fmt: skip

    def flush(self) -> bool:
        """Wait until every epoch decided is stored (a write's error is raised here); False
        once a write was refused."""
        while self._collect(wait=True) and self._decided:
            self._send()
        return not self.lost

    def checkpoint(self, state: program.RunState, now: bool = False) -> None:
        if now:
            due = True
        elif self.spec.checkpoint_every is not None:
            due = state.epoch % self.spec.checkpoint_every == 0
        else:
            # Default: by time, so small runs are not slowed and long epochs are never lost long.
            due = time.monotonic() - self.saved_at >= settings.checkpoint_seconds
        if due and self.flush():  # a checkpoint's epoch is stored before its upload starts
            # The bytes are taken now (a consistent copy); the upload runs while training goes on.
            data = checkpoint.dumps(state.state_dict(), self.attempt)
            self.uploads.submit(state.epoch, data, self.best_epoch)
            self.saved_at = time.monotonic()


def _start(
    experiment_id: int, attempt: int, in_sweep: bool
) -> tuple[list[tuple[str, str]], sweep_pruning.RunPruner | None]:
    """What a run starts from, read in one transaction: its sweep's pruner (None outside a
    sweep) and, for a later attempt, its recorded checkpoints up to its last stored epoch,
    newest first. Nothing is written here: an attempt's start (its facts, its progress, the cut
    of its history back to the checkpoint it resumes from) goes to the writer while its first
    epoch trains (`DatabaseSink.begin`). A first attempt outside a sweep reads nothing."""
    fresh = attempt == 1
    if fresh and not in_sweep:
        return [], None
    with session_scope() as session:
        prune = sweep_pruning.for_run(session, experiment_id, fresh) if in_sweep else None
        if fresh:
            return [], prune
        last = ExperimentRepository(session).last_epoch(experiment_id)
        return (artifacts.recorded(session, experiment_id, last) if last > 0 else []), prune


def train_run(
    experiment_id: int, attempt: int, spec: ExperimentSpec, stop: threading.Event,
    in_sweep: bool = True, finish_behind: bool = False,
) -> Outcome:  # fmt: skip
    """`in_sweep`: the run belongs to a sweep, which may prune it (False: no pruner to read).
    `finish_behind`: lifecycle.run_experiment's."""
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
    candidates, prune = with_db_retry(partial(_start, experiment_id, attempt, in_sweep),
                                      f"experiment {experiment_id} start")  # fmt: skip
    ckpt = artifacts.latest_good(experiment_id, candidates) if candidates else None
    if ckpt is not None:  # the newest good checkpoint; the rows after it are cut by `begin`
        state.load_state_dict(ckpt)
        log.info("resumed", from_epoch=state.epoch)

    uploads = artifacts.Checkpoints(experiment_id, attempt)  # a thread from the first checkpoint
    writer = epoch_writer.take()
    try:
        sink = DatabaseSink(experiment_id, attempt, spec, stop, writer, uploads, prune)
        sink.begin(facts, state.epoch)
        try:
            result = program.train(spec, data, state, sink)
        finally:
            ours = sink.flush()  # every epoch decided is stored before anything else
    finally:
        epoch_writer.give_back(writer)
        # The last checkpoint taken completes its upload (a handed-back run resumes from it).
        uploads.close()
    if result.status is None or not ours:
        return Outcome(experiment_id, LEASE_LOST, result.epoch)
    if result.status == ExperimentStatus.WAITING and prune is not None:
        paused = with_db_retry(lambda: pruner.pause(experiment_id, attempt, prune, result.epoch),
                               f"experiment {experiment_id} pause")  # fmt: skip
        if paused == ExperimentStatus.CANCELLED:
            discard_checkpoints(experiment_id)  # ended: no rung will resume it
        return Outcome(experiment_id, paused or LEASE_LOST, result.epoch)
    model = None
    if result.status != ExperimentStatus.DIVERGED:
        meta = {"spec": json.dumps(spec.model_dump(mode="json")), "status": str(result.status),
                "epochs_run": str(result.epoch),
                "test_metrics": json.dumps(result.test_metrics)}  # fmt: skip
        weights = checkpoint.model_bytes(state.model.state_dict(), meta)
        model = artifacts.save_model(experiment_id, attempt, weights)
    values = {"stop_reason": result.reason, "test_metrics": result.test_metrics}
    checkpoints = attempt > 1 or uploads.taken
    if finish_behind and not in_sweep and not checkpoints:  # nothing to do once it has ended
        finish_run_behind(experiment_id, attempt, result.status, result.epoch, model, **values)
        return Outcome(experiment_id, result.status, result.epoch)
    ended = finish_run(experiment_id, attempt, result.status, model=model,
                       checkpoints=checkpoints, **values)  # fmt: skip
    if not ended:
        return Outcome(experiment_id, LEASE_LOST, result.epoch)
    return Outcome(experiment_id, result.status, result.epoch)

"""Run one experiment end to end: claim, build, resume from the last checkpoint, train epoch by
epoch (each epoch's decision and row in one fenced transaction), checkpoint, finish. A plain
function: the Celery task only calls it."""

from __future__ import annotations

import logging
import os
import socket
import time
import traceback
from dataclasses import asdict, dataclass
from functools import partial
from typing import Any

import torch
from sqlalchemy.engine import Connection

from service.config import settings
from service.datasets.split import steps_per_epoch as steps_of
from service.experiments import catalog
from service.experiments.repository import ExperimentRepository
from service.experiments.spec import ExperimentSpec
from service.kit.db import get_engine, session_scope
from worker.engine import checkpoint, decisions
from worker.engine.data import to_device
from worker.engine.hypergradient import Hypergradient
from worker.engine.lease import Lease
from worker.engine.loop import Cancelled, EvalResult, evaluate, train_epoch
from worker.engine.model import build_model, pick_device
from worker.engine.retry import with_db_retry
from worker.engine.schedule import build_schedule

log = logging.getLogger(__name__)


def worker_id() -> str:
    return f"{socket.gethostname()}:{os.getpid()}"


@dataclass
class Outcome:
    experiment_id: int
    status: str  # a final status, or "not_claimed" / "lease_lost" / "handed_back"
    epochs_run: int = 0


class HistoryGap(RuntimeError):
    """The stored history does not end at the previous epoch."""


def _metric_row(task: str, train_loss: float, val: EvalResult) -> dict[str, float | None]:
    row: dict[str, float | None] = {"train_loss": train_loss, "val_loss": val.loss}
    if task == "classification":
        row["val_accuracy"] = val.accuracy
    else:
        row["val_mae"] = val.mae
    return row


def run_experiment(experiment_id: int, owner: str | None = None) -> Outcome:
    owner = owner or worker_id()
    with session_scope() as session:
        repo = ExperimentRepository(session)
        attempt = repo.claim(experiment_id, owner, settings.lease_seconds)
        experiment = repo.get(experiment_id) if attempt else None
        spec_json = experiment.spec if experiment else None
        kind = experiment.kind if experiment else None
        range_params = experiment.range_test if experiment else None
    if attempt is None or spec_json is None:
        log.info("experiment %s not claimed (held elsewhere or ended)", experiment_id)
        return Outcome(experiment_id, "not_claimed")
    lease = Lease(experiment_id, attempt, settings.lease_seconds)
    lease.start()
    try:
        spec = ExperimentSpec.model_validate(spec_json)
        if kind == "lr_range_test":
            # Same claim, lease, cancel and failure handling as training; a different loop.
            from worker.engine.range_test import run_range_test

            return run_range_test(experiment_id, attempt, spec, range_params or {}, lease)
        with get_engine().connect() as conn:  # held for the run's per-epoch writes
            return _train(experiment_id, attempt, spec, lease, conn)
    except Cancelled:
        if lease.lost:
            return Outcome(experiment_id, "lease_lost")
        if lease.shutdown and not lease.cancelled:
            _hand_back(experiment_id, attempt)
            return Outcome(experiment_id, "handed_back")
        finish_run(experiment_id, attempt, "cancelled", stop_reason="cancelled while running")
        return Outcome(experiment_id, "cancelled")
    except Exception as exc:
        log.exception("experiment %s failed", experiment_id)
        detail = "".join(traceback.format_exception_only(type(exc), exc)).strip()
        finish_run(experiment_id, attempt, "failed", error=detail[:2000])
        return Outcome(experiment_id, "failed")
    finally:
        lease.close()


def decide_and_write(
    experiment_id: int, attempt: int, spec: ExperimentSpec, epoch: int, lr: float,
    duration: float, metrics: dict[str, float | None], conn: Connection | None = None,
) -> tuple[decisions.Decision | None, decisions.State]:  # fmt: skip
    """One transaction per epoch: read the decision state stored with the previous epoch's row,
    decide, then write this epoch's row, its decisions and the run's progress, fenced by the
    attempt. The read is one unique-key lookup, so its cost does not grow with the history.
    Returns (None, state) when the attempt is no longer current."""
    with session_scope(conn) as session:
        repo = ExperimentRepository(session)
        stored = repo.state_after(experiment_id, epoch - 1) if epoch > 1 else None
        if epoch > 1 and stored is None:
            # Epoch rows are contiguous by construction; a missing predecessor means the history
            # was cut (a resume elsewhere) or lost: never decide on a guess.
            raise HistoryGap(f"no stored row for epoch {epoch - 1} of experiment {experiment_id}")
        state = decisions.State.from_json(stored) if stored else decisions.initial_state(spec, lr)
        decision, state = decisions.step(spec, state, epoch, metrics, lr)
        if not repo.fence(experiment_id, attempt, epochs_run=epoch,
                          best_epoch=state.best_epoch, best_value=state.best_value):  # fmt: skip
            return None, state
        row = {"experiment_id": experiment_id, "epoch": epoch, "lr": lr, "duration_s": duration,
               "decision": decision.label, "attempt": attempt, "state": state.to_json(),
               **metrics}  # fmt: skip
        events = [{"experiment_id": experiment_id, "epoch": epoch, **asdict(e)}
                  for e in decision.events]  # fmt: skip
        repo.write_epoch(row, events)
    return decision, state


def finish_run(experiment_id: int, attempt: int, status: str, **values: object) -> bool:
    def finish() -> bool:
        with session_scope() as session:
            return ExperimentRepository(session).finish(experiment_id, attempt, status, **values)

    return with_db_retry(finish, f"experiment {experiment_id} finish")


def _hand_back(experiment_id: int, attempt: int) -> None:
    """The worker is shutting down: return the run to the queue now instead of letting its
    lease run out. The next worker resumes from the last checkpoint."""
    from service.dispatch import service as dispatch

    with session_scope() as session:
        queue = ExperimentRepository(session).release(experiment_id, attempt)
        if queue is not None:
            dispatch.enqueue(session, experiment_id, queue, dispatch.RUN_TASK)
    log.info("experiment %s handed back to the queue", experiment_id)


def _resume_point(
    experiment_id: int, attempt: int, device: str, steps: int
) -> tuple[bool, dict[str, Any] | None]:
    """Cut the stored history back to the checkpoint (or to nothing) and return it."""
    ckpt = checkpoint.load(experiment_id)
    with session_scope() as session:
        repo = ExperimentRepository(session)
        last = repo.last_epoch(experiment_id)
        if ckpt is not None and ckpt["epoch"] > last:
            ckpt = None  # rows the checkpoint builds on are gone: start over
        start = ckpt["epoch"] if ckpt else 0
        ok = repo.fence(experiment_id, attempt, device=device, steps_per_epoch=steps,
                        epochs_run=start)  # fmt: skip
        if ok:
            repo.truncate_history(experiment_id, start)
    return ok, ckpt


def _checkpoint_due(spec: ExperimentSpec, epoch: int, since: float) -> bool:
    if spec.checkpoint_every is not None:
        return epoch % spec.checkpoint_every == 0
    # Default: by time, so small runs are not slowed and long epochs are never lost for long.
    return time.monotonic() - since >= settings.checkpoint_seconds


def _train(
    experiment_id: int, attempt: int, spec: ExperimentSpec, lease: Lease, conn: Connection
) -> Outcome:
    device = pick_device(spec.device)
    torch.manual_seed(spec.seed)  # weight init
    data = to_device(spec, device)
    task = data.info.task
    model = build_model(spec.model, data.info).to(device)
    optimizer = catalog.solver_class(spec.solver.type)(
        model.parameters(), lr=spec.base_lr, **spec.solver.params
    )
    steps = steps_of(len(data.train), spec.batch_size)
    schedule = build_schedule(spec, optimizer, steps)
    hd_spec = spec.solver.hypergradient  # the LR then adapts itself (no scheduler, no warmup)
    hd = Hypergradient(optimizer, hd_spec.hyper_lr) if hd_spec is not None else None
    restore_best = bool(spec.early_stopping and spec.early_stopping.restore_best)

    ok, ckpt = with_db_retry(
        lambda: _resume_point(experiment_id, attempt, str(device), steps),
        f"experiment {experiment_id} resume",
    )
    if not ok:
        return Outcome(experiment_id, "lease_lost")
    best_weights: dict[str, torch.Tensor] | None = None
    start = 1
    if ckpt is not None:
        model.load_state_dict(ckpt["model"])
        optimizer.load_state_dict(ckpt["optimizer"])
        if schedule.scheduler is not None and ckpt["scheduler"] is not None:
            schedule.scheduler.load_state_dict(ckpt["scheduler"])
        if hd is not None and ckpt.get("hypergradient") is not None:
            hd.load_state_dict(ckpt["hypergradient"])
        if ckpt["best_weights"] is not None:
            best_weights = {k: v.to(device) for k, v in ckpt["best_weights"].items()}
        start = ckpt["epoch"] + 1
        log.info("experiment %s resumes after epoch %s", experiment_id, ckpt["epoch"])

    status, reason = "succeeded", None
    epoch = start - 1
    saved_at = time.monotonic()
    for epoch in range(start, spec.epochs + 1):
        lr = float(optimizer.param_groups[0]["lr"])
        t0 = time.perf_counter()
        train_loss = train_epoch(model, optimizer, schedule, data.train, spec.batch_size, task,
                                 spec.seed, epoch, lease.stop, hd)  # fmt: skip
        if hd is not None:
            lr = hd.epoch_lr  # what the epoch's first step used: adapted just before it
        val = evaluate(model, data.val, task)
        schedule.after_epoch(epoch)
        duration = time.perf_counter() - t0
        metrics = _metric_row(task, train_loss, val)
        decision, state = with_db_retry(
            partial(
                decide_and_write, experiment_id, attempt, spec, epoch, lr, duration, metrics, conn
            ),
            f"experiment {experiment_id} epoch {epoch}",
        )
        if decision is None:
            return Outcome(experiment_id, "lease_lost", epoch - 1)
        if decision.lr_next != lr:  # a plateau reduction: takes effect from the next epoch
            for group in optimizer.param_groups:
                group["lr"] = decision.lr_next
        if restore_best and state.best_epoch == epoch:
            best_weights = {k: v.detach().clone() for k, v in model.state_dict().items()}
        if decision.stop:
            status, reason = decision.stop, decision.events[-1].reason
            break
        if epoch < spec.epochs and _checkpoint_due(spec, epoch, saved_at):
            checkpoint.save(experiment_id, epoch, attempt, model, optimizer, schedule.scheduler,
                            best_weights, hd.state_dict() if hd is not None else None)  # fmt: skip
            saved_at = time.monotonic()

    if restore_best and best_weights is not None:
        model.load_state_dict(best_weights)  # the final model is the best epoch's
    test_metrics = None
    if data.test is not None and status in ("succeeded", "early_stopped"):
        t = evaluate(model, data.test, task)
        test_metrics = {"test_loss": t.loss}
        test_metrics["test_accuracy" if task == "classification" else "test_mae"] = (
            t.accuracy if task == "classification" else t.mae  # type: ignore[assignment]
        )
    if status != "diverged":
        checkpoint.save_model(experiment_id, model.state_dict())
    ended = finish_run(
        experiment_id, attempt, status, stop_reason=reason, test_metrics=test_metrics
    )
    if not ended:
        return Outcome(experiment_id, "lease_lost", epoch)
    checkpoint.path_for(experiment_id).unlink(missing_ok=True)  # the model file supersedes it
    return Outcome(experiment_id, status, epoch)

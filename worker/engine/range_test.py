"""Leslie Smith's LR range test on a spec's model and data: the LR ramps exponentially from
min_lr to max_lr, one optimizer step per batch, and each step's batch loss is recorded with its
smoothed value until the test ends or diverges; then the suggestion (`service.lr_range.suggest`)
is stored with the run. `run.run_experiment` claims the row, holds the lease and turns
`Cancelled` and exceptions into the final status, as for training.

A resumed test (a new attempt after a crash or a hand-back) deletes the points of the attempt
before it and starts over: the test is short, and it is deterministic given the spec's seed (the
weights, the batches and the dropout draws are training's), so the new trace is the same."""

from __future__ import annotations

import itertools
import logging
import math
import time
from collections.abc import Iterator
from functools import partial
from typing import Any

import torch

from service.experiments import catalog
from service.experiments.repository import ExperimentRepository
from service.experiments.spec import ExperimentSpec
from service.kit.db import session_scope
from service.lr_range import suggest
from service.lr_range.repository import RangeRepository
from service.lr_range.schemas import RangeParams
from worker.engine.data import Part, to_device
from worker.engine.lease import Lease
from worker.engine.loop import Cancelled, epoch_order, loss_fn
from worker.engine.model import build_model, pick_device
from worker.engine.retry import with_db_retry
from worker.engine.run import Outcome, finish_run

log = logging.getLogger(__name__)

# Losses come to the host (one sync) once per SYNC_STEPS steps; the smoothing and the divergence
# stop run there, then the trace is cut at the step that stopped it. Up to SYNC_STEPS - 1 steps
# past a divergence are computed and thrown away: cheaper than a sync per step on a GPU.
SYNC_STEPS = 25
# Points are written at the first sync after this many seconds (and at the end), so a running
# test can be polled without a transaction per step.
WRITE_SECONDS = 0.5


def batches(part: Part, batch_size: int, seed: int) -> Iterator[torch.Tensor]:
    """Batch indices epoch after epoch, shuffled and with dropout seeded per (seed, epoch) as
    `loop.train_epoch` does (the last, smaller batch kept), so the test sees training's batches."""
    n = len(part)
    for epoch in itertools.count(1):
        order = epoch_order(n, part.x.device, seed, epoch)
        for start in range(0, n, batch_size):
            yield order[start : start + batch_size]


def _start(experiment_id: int, attempt: int, device: str) -> bool:
    """Fenced: record the device and drop an earlier attempt's points (the test starts over)."""
    with session_scope() as session:
        if not ExperimentRepository(session).fence(experiment_id, attempt, device=device):
            return False
        RangeRepository(session).clear(experiment_id)
        return True


def _write(experiment_id: int, attempt: int, rows: list[dict[str, Any]]) -> bool:
    with session_scope() as session:
        if not ExperimentRepository(session).fence(experiment_id, attempt):
            return False
        RangeRepository(session).write(rows)
        return True


def _finite(value: float | None) -> float | None:
    # JSON has no NaN or infinity: a non-finite loss is stored (and sent) as null.
    return value if value is not None and math.isfinite(value) else None


def run_range_test(
    experiment_id: int, attempt: int, spec: ExperimentSpec, params: dict[str, Any], lease: Lease
) -> Outcome:
    p = RangeParams.model_validate(params)
    device = pick_device(spec.device)
    torch.manual_seed(spec.seed)  # weight init, as training's
    data = to_device(spec, device)
    model = build_model(spec.model, data.info).to(device)
    # The spec's scheduler, warmup, early stopping and hypergradient are ignored: the ramp
    # drives the LR, one optimizer step per batch.
    optimizer = catalog.solver_class(spec.solver.type)(
        model.parameters(), lr=p.min_lr, **spec.solver.params
    )
    if not with_db_retry(
        partial(_start, experiment_id, attempt, str(device)), f"range test {experiment_id} start"
    ):
        return Outcome(experiment_id, "lease_lost")

    lrs = suggest.lr_ramp(p.min_lr, p.max_lr, p.steps)
    tracker = suggest.Tracker(p.smoothing, p.diverge_factor, suggest.skip_steps(p.steps))
    criterion = loss_fn(data.info.task)
    order = batches(data.train, spec.batch_size, spec.seed)
    losses: list[float] = []  # the recorded batch losses, for the suggestion
    pending: list[torch.Tensor] = []  # on the device, not yet synced
    unsent: list[dict[str, Any]] = []
    written_at = time.monotonic()
    model.train()
    for step, lr in enumerate(lrs):
        if lease.stop.is_set():
            raise Cancelled
        for group in optimizer.param_groups:
            group["lr"] = lr
        idx = next(order)
        optimizer.zero_grad(set_to_none=True)
        loss = criterion(model(data.train.x[idx]), data.train.y[idx])
        loss.backward()
        optimizer.step()
        pending.append(loss.detach())
        last = step == p.steps - 1
        if len(pending) < SYNC_STEPS and not last:
            continue
        first = step + 1 - len(pending)
        for k, value in enumerate(torch.stack(pending).tolist()):  # the one sync
            smoothed = tracker.add(value)
            losses.append(value)
            unsent.append({"experiment_id": experiment_id, "step": first + k,
                           "lr": lrs[first + k], "loss": _finite(value),
                           "smoothed_loss": _finite(smoothed)})  # fmt: skip
            if tracker.stopped:
                break  # the trace ends at the step that diverged
        pending = []
        if tracker.stopped or last or time.monotonic() - written_at >= WRITE_SECONDS:
            if not with_db_retry(
                partial(_write, experiment_id, attempt, unsent),
                f"range test {experiment_id} points",
            ):
                return Outcome(experiment_id, "lease_lost", len(losses))
            unsent, written_at = [], time.monotonic()
        if tracker.stopped:
            break

    found = suggest.suggest(lrs[: len(losses)], losses, p.steps)
    stopped = tracker.stopped or f"completed all {p.steps} steps"
    result = {
        "suggested_lr": found.lr,
        "rule": found.rule,
        "min_loss_lr": found.min_loss_lr,
        "min_loss_step": found.min_loss_step,
        "steepest_lr": found.steepest_lr,
        "steepest_step": found.steepest_step,
        "steps_run": len(losses),
        "stopped": stopped,
        **found.details,
    }
    log.info("range test %s: %s; suggested lr %s", experiment_id, stopped, found.lr)
    ended = finish_run(
        experiment_id, attempt, "succeeded", stop_reason=stopped, range_result=result
    )
    if not ended:
        return Outcome(experiment_id, "lease_lost", len(losses))
    return Outcome(experiment_id, "succeeded", len(losses))

"""Leslie Smith's LR range test on a spec's model and data: the LR ramps exponentially from
min_lr to max_lr, one optimizer step per batch, and each step's batch loss is recorded with its
smoothed value until the test ends or diverges; then the suggestion
(`service.training.range_suggest`) is computed from the trace. No database here: points go to
the `write` callback (the worker's `runs.range_test` stores them, fenced by the attempt).

A resumed test (a new attempt after a crash or a hand-back) starts over: the test is short, and
it is deterministic given the spec's seed (the weights, the batches and the dropout draws are
training's), so the new trace is the same."""

from __future__ import annotations

import itertools
import math
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from typing import Any

import torch

from service.training import catalog
from service.training import range_suggest as suggest
from service.training.range_spec import RangeParams
from service.training.spec import ExperimentSpec
from worker.engine.data import Batch, DeviceData, Part
from worker.engine.loop import (
    Cancelled,
    LROverflow,
    autocast,
    epoch_order,
    grad_scaler,
    loss_fn,
    scaled_step,
    seed_all,
)
from worker.engine.model import build_model
from worker.engine.plugins import Plugin

# Losses come to the host (one sync) once per SYNC_STEPS steps; the smoothing and the divergence
# stop run there, then the trace is cut at the step that stopped it. Up to SYNC_STEPS - 1 steps
# past a divergence are computed and thrown away: cheaper than a sync per step on a GPU.
SYNC_STEPS = 25
# Points are written at the first sync after this many seconds (and at the end), so a running
# test can be polled without a transaction per step.
WRITE_SECONDS = 0.5

Write = Callable[[list[dict[str, Any]]], bool]  # False: the run is no longer ours


@dataclass
class RangeOutcome:
    steps_run: int
    result: dict[str, Any] | None  # None: a write was refused (the run is no longer ours)
    stopped: str = ""


def batches(part: Part, batch_size: int, seed: int) -> Iterator[Batch]:
    """Batches (x, y) epoch after epoch, shuffled and with dropout seeded per (seed, epoch) as
    `loop.train_epoch` does (the last, smaller batch kept), so the test sees training's batches
    (on the device or streamed from host memory, as training would)."""
    for epoch in itertools.count(1):
        order = epoch_order(len(part), part.index_device, seed, epoch)
        yield from part.batches(order, batch_size)


def _finite(value: float | None) -> float | None:
    # JSON has no NaN or infinity: a non-finite loss is stored (and sent) as null.
    return value if value is not None and math.isfinite(value) else None


def run(
    experiment_id: int,
    spec: ExperimentSpec,
    p: RangeParams,
    data: DeviceData,
    device: torch.device,
    stop: threading.Event,
    write: Write,
    plugin: Plugin | None = None,
) -> RangeOutcome:
    seed_all(spec.seed)  # weight init, as training's
    model = build_model(spec.model, data.info, plugin).to(device)
    # The spec's scheduler, warmup, early stopping and hypergradient are ignored: the ramp
    # drives the LR, one optimizer step per batch.
    optimizer = catalog.solver_class(spec.solver.type)(
        model.parameters(), lr=p.min_lr, **spec.solver.params
    )
    lrs = suggest.lr_ramp(p.min_lr, p.max_lr, p.steps)
    tracker = suggest.Tracker(p.smoothing, p.diverge_factor, suggest.skip_steps(p.steps))
    criterion = loss_fn(data.info.task)
    scaler = grad_scaler(spec.precision, device)  # fp16: a skipped step still records its loss
    feed = batches(data.train, spec.batch_size, spec.seed)
    losses: list[float] = []  # the recorded batch losses, for the suggestion
    pending: list[torch.Tensor] = []  # on the device, not yet synced
    unsent: list[dict[str, Any]] = []
    written_at = time.monotonic()
    overflowed: str | None = None  # the step whose LR did not fit the weights' dtype
    model.train()
    catalog.training_mode(optimizer, True)  # a schedule-free optimizer steps in train mode
    for step, lr in enumerate(lrs):
        if stop.is_set():
            raise Cancelled
        for group in optimizer.param_groups:
            group["lr"] = lr
        xb, yb = next(feed)
        optimizer.zero_grad(set_to_none=True)
        with autocast(spec.precision, device):  # the spec's precision, as training's
            loss = criterion(model(xb), yb)
        try:
            scaled_step(loss, optimizer, scaler)
        except LROverflow as err:
            # Torch refused the step (the LR does not fit the weights' dtype): the trace ends
            # here, with this step's loss (taken before its step, as every point's).
            o = err.overflow
            overflowed = (f"diverged at step {step}: the learning rate {lr:.4g} overflowed the "
                          f"parameters' {o.dtype} (largest {o.largest:.4g})")  # fmt: skip
        pending.append(loss.detach())
        last = step == p.steps - 1 or overflowed is not None
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
            if not write(unsent):
                return RangeOutcome(len(losses), None)
            unsent, written_at = [], time.monotonic()
        if tracker.stopped or overflowed:
            break

    found = suggest.suggest(lrs[: len(losses)], losses, p.steps,
                            diverged=bool(tracker.stopped or overflowed))  # fmt: skip
    stopped = tracker.stopped or overflowed or f"completed all {p.steps} steps"
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
    return RangeOutcome(len(losses), result, stopped)

"""The LR at every optimizer step, beside the per-epoch one the contract records.

Each epoch row carries the minimum and maximum of param group 0's LR over the epoch's steps. The
steps' LRs themselves are stored only where nothing else can reproduce them (`recorded`): they
depend on the data or the optimizer (hypergradient descent adapts the LR every step; a
schedule-free optimizer's `scheduled_lr` comes from its own counter; fp16's GradScaler skips
steps, and a skipped step does not advance a per-step scheduler). Every other run's per-step LR is
a function of its spec, recomputed on demand by the worker's own schedule code (`walk_steps`).

Stored as little-endian float64 (`pack`/`unpack`): 8 bytes per step, exact."""

from __future__ import annotations

import array
import sys
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass

from service.training import catalog
from service.training.schedule import build_schedule, dummy_optimizer
from service.training.spec import ExperimentSpec


def per_step_scheduler(spec: ExperimentSpec) -> bool:
    """The spec's scheduler steps per batch (the rule `build_schedule` applies: no scheduler and
    `constant` are per epoch)."""
    sched = spec.scheduler
    if sched is None or sched.type == catalog.CONSTANT:
        return False
    return sched.effective_interval == "step"


def recorded(spec: ExperimentSpec) -> bool:
    """Whether a run of `spec` stores its per-step LRs: they depend on data or the optimizer."""
    return (
        spec.solver.hypergradient is not None
        or spec.solver.type in catalog.SCHEDULE_FREE
        or (spec.precision == "fp16" and per_step_scheduler(spec))
    )


@dataclass(frozen=True)
class EpochLRs:
    """Param group 0's LR over one epoch's optimizer steps: its minimum and maximum, and every
    step's value where the run records them (`steps`; None otherwise)."""

    lr_min: float | None
    lr_max: float | None
    steps: tuple[float, ...] | None = None

    @classmethod
    def of(cls, values: Sequence[float], keep: bool) -> EpochLRs:
        if not values:
            return cls(None, None, () if keep else None)
        return cls(min(values), max(values), tuple(values) if keep else None)


def pack(values: Iterable[float]) -> bytes:
    """Little-endian float64, 8 bytes a step."""
    out = array.array("d", values)
    if sys.byteorder != "little":
        out.byteswap()
    return out.tobytes()


def unpack(data: bytes) -> array.array[float]:
    if len(data) % 8:
        raise ValueError(f"per-step LRs are 8 bytes each; got {len(data)} bytes")
    out = array.array("d")
    out.frombytes(data)
    if sys.byteorder != "little":
        out.byteswap()
    return out


def walk_steps(
    spec: ExperimentSpec,
    steps_per_epoch: int,
    epochs: int,
    lr_after: Mapping[int, float] | None = None,
) -> array.array[float]:
    """Param group 0's LR at each optimizer step of the first `epochs` epochs, from the schedule
    the worker builds (`build_schedule`) stepped in the worker loop's order
    (worker/engine/program.py): read the LR, step the optimizer, `after_step()` per batch, then
    `after_epoch(epoch)`; `lr_after[e]`, a plateau decision's new LR after epoch e, is then set on
    every param group as the worker does. Only for runs that do not record theirs (`recorded`):
    it assumes every step is taken. The optimizer steps once per epoch with no gradients: a
    no-op that keeps torch's "scheduler before optimizer" check quiet."""
    optimizer = dummy_optimizer(spec)
    schedule = build_schedule(spec, optimizer, steps_per_epoch)
    group = optimizer.param_groups
    out = array.array("d")
    for epoch in range(1, epochs + 1):
        optimizer.step()
        for _ in range(steps_per_epoch):
            out.append(float(group[0]["lr"]))
            schedule.after_step()
        schedule.after_epoch(epoch)
        if lr_after and epoch in lr_after:
            for g in group:
                g["lr"] = lr_after[epoch]
    return out

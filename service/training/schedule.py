"""LR schedules built from a spec with torch's own classes, so traces equal plain torch.

Warmup composes with every scheduler as
`SequentialLR([LinearLR(start_factor, 1.0, total_iters=W), main], milestones=[W])`, W counted in
the main scheduler's interval; before a SequentialLR it becomes its first element, milestones
shifted by W (CONTRACT.md). Two forms torch cannot build run as a head and a tail instead: a
ReduceLROnPlateau (alone after a warmup, or last in a SequentialLR), where from the switch on the
LR starts at base_lr and belongs to the plateau decisions (service/training/decisions.py); and a
ChainedScheduler after a warmup (torch's SequentialLR cannot hold one: NotImplementedError),
built at the switch from base_lr as a user's script would build it then.
"""

from __future__ import annotations

import functools
import itertools
import json
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from typing import Any

import torch
from torch.optim.lr_scheduler import ChainedScheduler, LinearLR, LRScheduler, SequentialLR

from service.training import catalog, decisions
from service.training.lr_lambda import LambdaError, compile_lambda
from service.training.spec import ExperimentSpec, SchedulerSpec


class ScheduleError(ValueError):
    """A scheduler config torch would refuse (now or mid-run); `loc` is relative to `scheduler`."""

    def __init__(self, msg: str, loc: list[str | int] | None = None) -> None:
        super().__init__(msg)
        self.loc: list[str | int] = loc or ["params"]


class Schedule:
    """What the loop needs: when to step, and the scheduler(s) stepped.

    `head` runs for the first `switch` scheduler steps (all of them when `switch` is None). At
    the switch every param group's LR goes back to the spec's base_lr and `tail` takes over: a
    plateau's decisions (`tail` None), or a scheduler built then by `make_tail`."""

    def __init__(self, optimizer: torch.optim.Optimizer, head: LRScheduler | None, interval: str,
                 switch: int | None = None, make_tail: Any = None, base_lr: float = 0.0
                 ) -> None:  # fmt: skip
        self.optimizer = optimizer
        self.base_lr = base_lr  # the LR at the switch (not a group's initial_lr: OneCycleLR's own)
        self.head = head
        self.interval = interval  # "epoch" | "step"
        self.switch = switch
        self.make_tail = make_tail  # () -> LRScheduler, for a ChainedScheduler after a warmup
        self.tail: LRScheduler | None = None
        self.count = 0  # scheduler steps taken

    @property
    def scheduler(self) -> LRScheduler | None:
        """The torch scheduler in charge now (None: constant, or the plateau decisions')."""
        if self.switch is not None and self.count >= self.switch:
            return self.tail
        return self.head

    def _step(self) -> None:
        self.count += 1
        if self.switch is not None and self.count == self.switch:
            for group in self.optimizer.param_groups:
                group["lr"] = self.base_lr
            if self.make_tail is not None:
                self.tail = self.make_tail()
            return
        if self.scheduler is not None:
            self.scheduler.step()

    def after_step(self) -> None:
        if self.interval == "step":
            self._step()

    def after_epoch(self, epoch: int) -> None:
        """Called once epoch `epoch` (1-based) has finished training and validating."""
        if self.interval == "epoch":
            self._step()

    def state_dict(self) -> dict[str, Any] | None:
        if self.switch is None:  # one torch scheduler: its own state, as checkpoints always held
            return self.head.state_dict() if self.head is not None else None
        return {
            "count": self.count,
            "head": self.head.state_dict() if self.head is not None else None,
            "tail": self.tail.state_dict() if self.tail is not None else None,
        }

    def load_state_dict(self, state: dict[str, Any] | None) -> None:
        if state is None:
            return
        if self.switch is None:
            if self.head is not None:
                self.head.load_state_dict(state)
            return
        self.count = int(state["count"])
        if self.head is not None and state["head"] is not None:
            self.head.load_state_dict(state["head"])
        if state["tail"] is not None and self.make_tail is not None:
            # Building the tail sets the LR; the checkpoint's optimizer state holds the true one.
            lrs = [group["lr"] for group in self.optimizer.param_groups]
            self.tail = self.make_tail()
            self.tail.load_state_dict(state["tail"])
            for group, lr in zip(self.optimizer.param_groups, lrs, strict=True):
                group["lr"] = lr


def _check_values(type_: str, p: dict[str, Any], base_lr: float, total: int) -> None:
    """Values torch accepts at construction but fails on (or silently mis-schedules) mid-run."""

    def need(cond: bool, key: str, msg: str) -> None:
        if not cond:
            raise ScheduleError(f"{type_}.{key}: {msg}", ["params", key])

    def is_int(v: Any) -> bool:
        return isinstance(v, int) and not isinstance(v, bool)

    if type_ == "StepLR":
        need(is_int(p["step_size"]) and p["step_size"] >= 1, "step_size", "must be an integer ≥ 1")
    if type_ == "MultiStepLR":
        m = p["milestones"]
        need(
            isinstance(m, list) and all(is_int(x) and x >= 1 for x in m),
            "milestones",
            "must be a list of integers ≥ 1",
        )
        need(
            all(a < b for a, b in itertools.pairwise(m)),
            "milestones",
            "must be strictly increasing",
        )
    if type_ == "ExponentialLR":
        need(isinstance(p["gamma"], int | float) and p["gamma"] > 0, "gamma", "must be > 0")
    if type_ in ("StepLR", "MultiStepLR") and "gamma" in p:
        need(isinstance(p["gamma"], int | float) and p["gamma"] > 0, "gamma", "must be > 0")
    if type_ in ("LinearLR", "ConstantLR", "PolynomialLR") and "total_iters" in p:
        low = 0 if type_ == "ConstantLR" else 1
        need(
            is_int(p["total_iters"]) and p["total_iters"] >= low,
            "total_iters",
            f"must be an integer ≥ {low}",
        )
    if type_ == "CosineAnnealingLR":
        need(isinstance(p["T_max"], int | float) and p["T_max"] > 0, "T_max", "must be > 0")
    if type_ == "CyclicLR":
        lo = p.get("base_lr", base_lr)
        need(
            isinstance(p["max_lr"], int | float) and p["max_lr"] >= lo,
            "max_lr",
            f"must be ≥ base_lr ({lo:g})",
        )
        for key in ("step_size_up", "step_size_down"):
            if p.get(key) is not None:
                need(isinstance(p[key], int | float) and p[key] > 0, key, "must be > 0")
    if type_ == "ReduceLROnPlateau" and "factor" in p:
        # torch refuses factor >= 1 but takes factor <= 0, which drops the LR to min_lr at once.
        f = p["factor"]
        need(isinstance(f, int | float) and 0 < f < 1, "factor", "must be in (0, 1)")
    if type_ == "OneCycleLR":
        need(isinstance(p["max_lr"], int | float) and p["max_lr"] > 0, "max_lr", "must be > 0")
        pct = p.get("pct_start", 0.3)
        need(isinstance(pct, int | float) and 0 < pct < 1, "pct_start", "must be in (0, 1)")
        # torch divides by each phase's length (its own `end_step` formulas): a phase of length
        # exactly 0 raises ZeroDivisionError when a step lands in it, mid-run.
        if p.get("three_phase"):
            ends = [float(pct * total) - 1, float(2 * pct * total) - 2, total - 1]
        else:
            ends = [float(pct * total) - 1, total - 1]
        starts = [0.0, *ends[:-1]]
        need(all(e - s != 0 for s, e in zip(starts, ends, strict=True)), "pct_start",
             f"gives a zero-length phase over {total} scheduler steps")  # fmt: skip


LAMBDA_SCHEDULERS = ("LambdaLR", "MultiplicativeLR")


def lambda_of(params: dict[str, Any], interval: str) -> Any:
    """The spec's `lr_lambda` expression as the function torch calls with its counter."""
    expression = params.get("lr_lambda")
    if not isinstance(expression, str):
        raise ScheduleError("lr_lambda must be an expression string, e.g. \"0.95 ** epoch\"",
                            ["params", "lr_lambda"])  # fmt: skip
    try:
        return compile_lambda(expression, "step" if interval == "step" else "epoch")
    except LambdaError as exc:
        raise ScheduleError(f"lr_lambda: {exc}", ["params", "lr_lambda"]) from None


def _build_one(sched: SchedulerSpec, optimizer: torch.optim.Optimizer, base_lr: float,
               interval: str, span: int, loc: list[str | int]) -> LRScheduler:  # fmt: skip
    """One torch scheduler from its spec; `span`: the scheduler steps it will take (a OneCycleLR's
    `total_steps`); `loc`: where its spec sits under `scheduler`, for errors."""
    params = dict(sched.params)
    if sched.type in LAMBDA_SCHEDULERS:
        try:
            params["lr_lambda"] = lambda_of(sched.params, interval)
        except ScheduleError as exc:
            raise ScheduleError(str(exc), [*loc, *exc.loc]) from None
    if sched.type == "CyclicLR":
        params.setdefault("base_lr", base_lr)
    if sched.type == "OneCycleLR":
        params["total_steps"] = span
    try:
        _check_values(sched.type, params, base_lr, span)
    except ScheduleError as exc:
        raise ScheduleError(str(exc), [*loc, *exc.loc]) from None
    try:
        built: LRScheduler = catalog.scheduler_class(sched.type)(optimizer, **params)
    except Exception as exc:  # any failure on the user's kwargs is an input error
        raise ScheduleError(f"{sched.type} rejects these params: {exc}", [*loc, "params"]) from exc
    return built


def _check_plateau(sched: SchedulerSpec, optimizer: torch.optim.Optimizer, loc: list[str | int]
                   ) -> None:  # fmt: skip
    """Built only so torch checks the values (mode, factor < 1, ...); the decisions in
    decisions.py apply its logic to the stored history."""
    try:
        _check_values(sched.type, sched.params, 0.0, 0)
    except ScheduleError as exc:
        raise ScheduleError(str(exc), [*loc, *exc.loc]) from None
    lrs = [group["lr"] for group in optimizer.param_groups]
    try:
        catalog.scheduler_class(sched.type)(optimizer, **sched.params)
    except Exception as exc:  # any failure on the user's kwargs is an input error
        raise ScheduleError(f"{sched.type} rejects these params: {exc}", [*loc, "params"]) from exc
    for group, lr in zip(optimizer.param_groups, lrs, strict=True):
        group["lr"] = lr


def build_schedule(
    spec: ExperimentSpec, optimizer: torch.optim.Optimizer, steps_per_epoch: int
) -> Schedule:
    """The run's schedule, its torch schedulers built in list order (warmup first), as torch's
    SequentialLR docs and a user's script do: it matters when one sets the LR at construction
    (CyclicLR's own base_lr, OneCycleLR)."""
    sched = spec.scheduler
    constant = sched is None or sched.type == catalog.CONSTANT
    interval = "epoch" if sched is None or constant else sched.effective_interval
    per_epoch = steps_per_epoch if interval == "step" else 1
    w = (spec.warmup.epochs if spec.warmup else 0) * per_epoch  # warmup, in scheduler steps
    total = spec.epochs * per_epoch
    ramp = None
    if spec.warmup is not None:
        ramp = LinearLR(optimizer, start_factor=spec.warmup.start_factor, end_factor=1.0,
                        total_iters=w)  # fmt: skip
    # The elements that run one after another from the warmup's end, with their start counters.
    if sched is None or constant:
        return Schedule(optimizer, ramp, interval)
    if sched.type == "SequentialLR" and sched.schedulers:
        parts = list(sched.schedulers)
        starts = [w, *(w + m for m in sched.params.get("milestones", []))]
        where: list[list[str | int]] = [["schedulers", i] for i in range(len(parts))]
    else:
        parts, starts, where = [sched], [w], [[]]
    ends = [*starts[1:], total]
    plateau = parts[-1].type == "ReduceLROnPlateau"
    if plateau:
        _check_plateau(parts[-1], optimizer, where[-1])
        plateau_start = starts[-1]
        parts, starts, ends, where = parts[:-1], starts[:-1], ends[:-1], where[:-1]
    if len(parts) == 1 and parts[0].type == "ChainedScheduler" and ramp is not None:
        # torch's SequentialLR cannot hold a ChainedScheduler: built at the warmup's end instead
        # (checked now on a stand-in optimizer, so a bad element is an error before the run).
        make = functools.partial(_build_chained, parts[0], optimizer, spec.base_lr, interval,
                                 total - w)  # fmt: skip
        _build_chained(parts[0], dummy_optimizer(spec), spec.base_lr, interval, total - w)
        return Schedule(optimizer, ramp, interval, w, make, spec.base_lr)
    built: list[LRScheduler] = [ramp] if ramp is not None else []
    for part, start, end, loc in zip(parts, starts, ends, where, strict=True):
        if part.type == "ChainedScheduler":
            built.append(_build_chained(part, optimizer, spec.base_lr, interval, end - start))
        else:
            built.append(_build_one(part, optimizer, spec.base_lr, interval, end - start, loc))
    milestones = starts[1:] if ramp is None else starts[: len(built) - 1]
    head: LRScheduler | None
    if not built:
        head = None
    elif len(built) == 1:
        head = built[0]
    else:
        head = SequentialLR(optimizer, built, milestones=milestones)
    if plateau and plateau_start > 0:
        return Schedule(optimizer, head, interval, plateau_start, None, spec.base_lr)
    return Schedule(optimizer, head, interval)


def _build_chained(sched: SchedulerSpec, optimizer: torch.optim.Optimizer, base_lr: float,
                   interval: str, span: int) -> LRScheduler:  # fmt: skip
    elements = [
        _build_one(s, optimizer, base_lr, interval, span, ["schedulers", i])
        for i, s in enumerate(sched.schedulers or [])
    ]
    return ChainedScheduler(elements, optimizer=optimizer)


def dummy_optimizer(spec: ExperimentSpec) -> torch.optim.Optimizer:
    p = torch.zeros(1, requires_grad=True)
    return catalog.solver_class(spec.solver.type)([p], lr=spec.base_lr, **spec.solver.params)


def monitored(spec: ExperimentSpec) -> str:
    """The metric a single series of values stands for: ReduceLROnPlateau's `monitor`, else
    early stopping's (both default to val_loss)."""
    if spec.plateau is not None:
        return spec.plateau.monitor
    return spec.early_stopping.monitor if spec.early_stopping else "val_loss"


@dataclass(frozen=True)
class EpochLR:
    epoch: int
    lr: float  # param group 0's LR for the epoch's first step: what the worker records
    decision: decisions.Decision | None  # taken after the epoch; None without metric values


def walk(
    spec: ExperimentSpec, steps_per_epoch: int, monitor_values: Sequence[float] | None = None
) -> Iterator[EpochLR]:
    """The run's schedule epoch by epoch without training, in the worker loop's order
    (worker/engine/program.py): read the LR; step the scheduler per batch (interval `step`);
    `after_epoch`; then, given metric values, `decisions.step` and its `lr_next` for every
    param group.

    `monitor_values[e - 1]` is epoch e's value of `monitored(spec)`; with values the walk ends
    after the last one or where a decision stops the run (a non-finite value diverges). Without
    them it covers `spec.epochs` and no plateau or early-stopping decision is taken (the LR after
    a ReduceLROnPlateau warmup stays put). The optimizer steps once per epoch, with no gradients:
    a no-op that keeps torch's "scheduler before optimizer" check quiet."""
    optimizer = dummy_optimizer(spec)
    schedule = build_schedule(spec, optimizer, steps_per_epoch)
    sched_steps = steps_per_epoch if schedule.interval == "step" else 1
    epochs = spec.epochs if monitor_values is None else min(spec.epochs, len(monitor_values))
    monitor = monitored(spec)
    state = decisions.initial_state(spec, float(optimizer.param_groups[0]["lr"]))
    for epoch in range(1, epochs + 1):
        lr = float(optimizer.param_groups[0]["lr"])
        optimizer.step()
        if schedule.interval == "step":
            for _ in range(sched_steps):
                schedule.after_step()
        schedule.after_epoch(epoch)
        if monitor_values is None:
            yield EpochLR(epoch, lr, None)
            continue
        metrics: dict[str, float | None] = {monitor: monitor_values[epoch - 1]}
        decision, state = decisions.step(spec, state, epoch, metrics, lr)
        if decision.lr_next != lr:  # a plateau reduction: takes effect from the next epoch
            for group in optimizer.param_groups:
                group["lr"] = decision.lr_next
        yield EpochLR(epoch, lr, decision)
        if decision.stop:
            return


def iter_epoch_lrs(spec: ExperimentSpec, steps_per_epoch: int) -> Iterator[float]:
    """The per-epoch LR (param group 0 at the first step of each epoch), without training and
    without plateau decisions (those need metrics: see `walk` and decisions.py)."""
    return (e.lr for e in walk(spec, steps_per_epoch))


def simulate_lrs(spec: ExperimentSpec, steps_per_epoch: int, max_epochs: int = 3) -> list[float]:
    """Build the schedule and walk its first epochs: catches what construction alone lets by."""
    out = []
    try:
        for epoch, lr in enumerate(iter_epoch_lrs(spec, steps_per_epoch)):
            if epoch >= max_epochs:
                break
            out.append(lr)
    except ScheduleError:
        raise
    except Exception as exc:  # whatever torch raises on these params is an input error
        raise ScheduleError(
            f"{spec.scheduler.type if spec.scheduler else 'schedule'} fails: {exc}"
        ) from exc
    return out


def _walk_key(spec: ExperimentSpec, steps_per_epoch: int) -> str:
    """What a walk's success depends on. Not base_lr: every scheduler scales the LR it is given
    (or, OneCycleLR, ignores it), so what torch fails on mid-walk is the same for any positive
    base_lr; the one LR-valued constraint (CyclicLR's max_lr ≥ base_lr, its base_lr defaulting to
    the spec's) is checked by `_check_values`, so for CyclicLR base_lr stays in the key."""
    keep = {"scheduler", "warmup", "epochs", "solver"}
    if spec.scheduler is not None and "CyclicLR" in spec.scheduler.types:
        keep.add("base_lr")
    return json.dumps([spec.model_dump(mode="json", include=keep), steps_per_epoch], sort_keys=True)


@functools.lru_cache(maxsize=4096)
def _walk_error(key: str) -> ScheduleError | None:
    spec_json, steps = json.loads(key)
    spec = ExperimentSpec.model_validate({**spec_json, "base_lr": spec_json.get("base_lr", 0.01)})
    try:
        simulate_lrs(spec, steps)
    except ScheduleError as exc:
        return exc
    return None


def check_walk(spec: ExperimentSpec, steps_per_epoch: int) -> None:
    """`simulate_lrs` as a check, remembered per distinct schedule: a 1,000-spec batch or sweep
    that varies base_lr or seeds walks each schedule once. Raises ScheduleError."""
    error = _walk_error(_walk_key(spec, steps_per_epoch))
    if error is not None:
        raise ScheduleError(str(error), list(error.loc))

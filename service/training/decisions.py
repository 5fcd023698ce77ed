"""Decisions that change a run, as pure functions of the spec and the validation history.

`step` takes the state after epoch N-1 and epoch N's metrics and returns epoch N's decision and
the new state. Folding it over a stored history (`replay`) gives the same decisions a live run
took, so a resumed run, the preview endpoint and an auditor all agree with the worker.

ReduceLROnPlateau follows torch's `ReduceLROnPlateau.step` line by line (mode, factor, patience,
threshold, threshold_mode, cooldown, min_lr, eps); early stopping follows CONTRACT.md.

The divergence guard ends a run whose train_loss is non-finite, or above `divergence.factor`
times where the run started, or above `divergence.ceiling`. Where it started is read at epoch 1
and kept in the state: the untrained model's loss (epoch 1's first batch, before any step: the
engine measures it) and epoch 1's train_loss. Both are needed: a run at a wild LR blows up within
its first epoch (its epoch-1 mean is already a thousand times the untrained loss and later epochs
stay there), while a run that blows up later rises above its own first epoch.

An optimizer step whose learning rate does not fit the parameters' dtype (1e308 for float32
weights: torch refuses to convert it) is a divergence too, at the epoch where it happened
(`Overflow`, measured by the engine: `loop.LROverflow`).
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import asdict, dataclass, field, replace
from typing import Any

from service.training.spec import DivergenceSpec, EarlyStoppingSpec, ExperimentSpec


@dataclass(frozen=True)
class PlateauParams:
    mode: str = "min"
    factor: float = 0.1
    patience: int = 10
    threshold: float = 1e-4
    threshold_mode: str = "rel"
    cooldown: int = 0
    min_lr: float = 0.0
    eps: float = 1e-8

    @classmethod
    def of(cls, params: dict[str, Any]) -> PlateauParams:
        p = dict(params)
        if isinstance(p.get("min_lr"), list):  # one param group: torch's per-group list of one
            p["min_lr"] = p["min_lr"][0]
        return cls(**p)


@dataclass(frozen=True)
class State:
    """Everything a decision depends on besides the new epoch's metrics."""

    lr: float
    plateau_best: float | None = None  # None = torch's mode_worse (±inf), JSON-safe
    plateau_best_epoch: int | None = None
    plateau_bad_epochs: int = 0
    plateau_cooldown: int = 0
    stop_best: float | None = None
    stop_best_epoch: int | None = None
    stop_wait: int = 0
    # The run's best epoch: early stopping's best (its min_delta rule) when it is on, else the
    # plateau monitor's, else the lowest val_loss. Reported as best_epoch/best_value.
    best_value: float | None = None
    best_epoch: int | None = None
    # Where the run started, set at epoch 1 (the divergence guard's references): the untrained
    # model's loss (epoch 1's first batch, before any step) and epoch 1's train_loss. None in
    # states stored before the guard, which then has only its ceiling.
    start_loss: float | None = None
    first_train_loss: float | None = None

    def to_json(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> State:
        return cls(**data)


@dataclass(frozen=True)
class Event:
    kind: str  # "reduce_lr" | "early_stop" | "diverged"
    monitor: str | None
    value: float | None
    best: float | None
    best_epoch: int | None
    old_lr: float | None
    new_lr: float | None
    reason: str


@dataclass(frozen=True)
class Overflow:
    """An optimizer step of the epoch whose learning rate (or the step size made from it) does
    not fit the parameters' dtype: torch cannot take it, so the run cannot go on."""

    lr: float  # param group 0's LR at that step
    step: int  # the step of the epoch, from 1
    dtype: str  # the parameters', e.g. "float32"
    largest: float  # that dtype's largest finite value

    def reason(self, epoch: int) -> str:
        return (f"the learning rate {_fmt(self.lr)} at epoch {epoch} (step {self.step}) "
                f"overflowed the parameters' {self.dtype} (largest {_fmt(self.largest)}): "
                "diverged")  # fmt: skip


@dataclass(frozen=True)
class Decision:
    epoch: int
    lr_next: float  # LR for the next epoch's first step (plateau's say only)
    stop: str | None  # final status when the run ends here: "early_stopped" | "diverged"
    events: list[Event] = field(default_factory=list)

    @property
    def label(self) -> str | None:
        return "+".join(e.kind for e in self.events) or None


def _fmt(x: float | None) -> str:
    return "n/a" if x is None else f"{x:.4g}"


def plateau_is_better(p: PlateauParams, a: float, best: float | None) -> bool:
    if best is None:
        best = math.inf if p.mode == "min" else -math.inf
    if p.mode == "min" and p.threshold_mode == "rel":
        return a < best * (1.0 - p.threshold)
    if p.mode == "min":
        return a < best - p.threshold
    if p.threshold_mode == "rel":
        return a > best * (p.threshold + 1.0)
    return a > best + p.threshold


def _plateau(
    p: PlateauParams, monitor: str, s: State, epoch: int, value: float
) -> tuple[State, Event | None]:
    best, best_epoch, bad, cooldown = (
        s.plateau_best,
        s.plateau_best_epoch,
        s.plateau_bad_epochs,
        s.plateau_cooldown,
    )
    if plateau_is_better(p, value, best):
        best, best_epoch, bad = value, epoch, 0
    else:
        bad += 1
    if cooldown > 0:
        cooldown -= 1
        bad = 0  # torch ignores bad epochs in cooldown
    lr, event = s.lr, None
    if bad > p.patience:
        waited = bad
        new_lr = max(s.lr * p.factor, p.min_lr)
        if s.lr - new_lr > p.eps:
            lr = new_lr
            event = Event(
                "reduce_lr",
                monitor,
                value,
                best,
                best_epoch,
                s.lr,
                new_lr,
                f"{monitor} has not improved on {_fmt(best)} (epoch {best_epoch}) for "
                f"{waited} epochs; lr {s.lr:g} → {new_lr:g}",
            )
        cooldown, bad = p.cooldown, 0
    return replace(
        s,
        lr=lr,
        plateau_best=best,
        plateau_best_epoch=best_epoch,
        plateau_bad_epochs=bad,
        plateau_cooldown=cooldown,
    ), event


def stop_improved(es: EarlyStoppingSpec, value: float, best: float | None) -> bool:
    if best is None:
        return True
    if es.mode == "min":
        return value < best - es.min_delta
    return value > best + es.min_delta


def _early_stop(
    es: EarlyStoppingSpec, s: State, epoch: int, value: float
) -> tuple[State, Event | None]:
    # A baseline is a best to beat that no epoch has reached yet.
    best = s.stop_best if s.stop_best_epoch is not None else es.baseline
    if stop_improved(es, value, best):
        s = replace(s, stop_best=value, stop_best_epoch=epoch, stop_wait=0)
    else:
        s = replace(s, stop_best=best, stop_wait=s.stop_wait + 1)
    if s.stop_wait < es.patience:
        return s, None
    where = (
        f"{_fmt(s.stop_best)} (epoch {s.stop_best_epoch})"
        if s.stop_best_epoch
        else f"the baseline {_fmt(es.baseline)}"
    )
    return s, Event(
        "early_stop",
        es.monitor,
        value,
        s.stop_best,
        s.stop_best_epoch,
        None,
        None,
        f"{es.monitor} has not improved on {where} for {s.stop_wait} epochs "
        f"(patience {es.patience}, min_delta {es.min_delta:g}); stopping",
    )


def initial_state(spec: ExperimentSpec, lr: float) -> State:
    return State(lr=lr)


def _usable(x: float | None) -> float | None:
    """A loss that can serve as a reference: finite and positive (a factor of 0 is 0)."""
    return x if x is not None and math.isfinite(x) and x > 0 else None


def _started(s: State, epoch: int, metrics: dict[str, float | None],
             start_loss: float | None) -> State:  # fmt: skip
    if epoch != 1:
        return s
    return replace(s, start_loss=_usable(start_loss),
                   first_train_loss=_usable(metrics.get("train_loss")))  # fmt: skip


def _guard(g: DivergenceSpec, s: State, epoch: int, loss: float | None) -> Event | None:
    """The divergence guard on a finite train_loss: above the ceiling, or above `factor` times
    epoch 1's train_loss (from epoch 2 on) or the untrained model's loss."""
    if loss is None:
        return None
    why = None
    if g.ceiling is not None and loss > g.ceiling:
        why = f"the ceiling {_fmt(g.ceiling)}"
    elif epoch > 1 and s.first_train_loss is not None and loss > g.factor * s.first_train_loss:
        why = f"{g.factor:g} × epoch 1's {_fmt(s.first_train_loss)}"
    elif s.start_loss is not None and loss > g.factor * s.start_loss:
        why = f"{g.factor:g} × the untrained model's {_fmt(s.start_loss)} (epoch 1's first batch)"
    if why is None:
        return None
    reason = f"train_loss {_fmt(loss)} at epoch {epoch} is above {why}: diverged"
    return Event("diverged", "train_loss", loss, None, None, None, None, reason)


def step(
    spec: ExperimentSpec, state: State, epoch: int, metrics: dict[str, float | None], lr: float,
    start_loss: float | None = None, overflow: Overflow | None = None,
) -> tuple[Decision, State]:  # fmt: skip
    """Epoch `epoch` finished with `metrics` while the LR was `lr`; what now?

    `lr` is what the schedule set for this epoch (warmup included); plateau reductions act on it.
    `start_loss`: at epoch 1, the untrained model's loss (the first batch's, before its step);
    kept in the state, so later epochs and a resumed run read it from there.
    `overflow`: a step of the epoch could not be taken (its LR overflowed the weights' dtype).
    """
    state = _started(replace(state, lr=lr), epoch, metrics, start_loss)
    if overflow is not None:
        reason = overflow.reason(epoch)
        refused = Event("diverged", "lr", overflow.lr, None, None, None, None, reason)
        return Decision(epoch, lr, "diverged", [refused]), state
    bad = sorted(k for k, v in metrics.items() if v is not None and not math.isfinite(v))
    if bad:
        diverged = Event(
            "diverged",
            bad[0],
            metrics[bad[0]],
            None,
            None,
            None,
            None,
            f"{', '.join(bad)} became non-finite at epoch {epoch}; stopping",
        )
        return Decision(epoch, lr, "diverged", [diverged]), state
    guard = None
    if spec.divergence is not None:
        guard = _guard(spec.divergence, state, epoch, metrics.get("train_loss"))
    if guard is not None:
        return Decision(epoch, lr, "diverged", [guard]), state
    events: list[Event] = []
    event: Event | None
    sched = spec.plateau
    if sched is not None and epoch > spec.plateau_start:
        # The plateau logic sees only the epochs after the warmup and, last in a SequentialLR,
        # after its milestone (CONTRACT.md).
        value = metrics[sched.monitor]
        assert value is not None
        state, event = _plateau(PlateauParams.of(sched.params), sched.monitor, state, epoch, value)
        events += [event] if event else []
    stop = None
    if spec.early_stopping is not None:
        value = metrics[spec.early_stopping.monitor]
        assert value is not None
        state, event = _early_stop(spec.early_stopping, state, epoch, value)
        if event:
            events.append(event)
            stop = "early_stopped"
    return Decision(epoch, state.lr, stop, events), _track_best(spec, state, epoch, metrics)


def best_criterion(spec: ExperimentSpec) -> tuple[str, str]:
    """(monitor, mode) that defines the run's best epoch."""
    if spec.early_stopping:
        return spec.early_stopping.monitor, spec.early_stopping.mode
    if spec.plateau is not None:
        return spec.plateau.monitor, str(spec.plateau.params.get("mode", "min"))
    return "val_loss", "min"


def stored_best_criterion(spec: Mapping[str, Any]) -> tuple[str, str]:
    """`best_criterion` of a stored spec (its JSON, as the API keeps it), read without
    validating it again: what a run's best_epoch and best_value are the best of."""
    stop = spec.get("early_stopping")
    if isinstance(stop, Mapping):
        return str(stop.get("monitor", "val_loss")), str(stop.get("mode", "min"))
    sched = spec.get("scheduler")
    if isinstance(sched, Mapping) and sched.get("type") == "SequentialLR":
        inner = sched.get("schedulers")
        sched = inner[-1] if isinstance(inner, list) and inner else None
    if isinstance(sched, Mapping) and sched.get("type") == "ReduceLROnPlateau":
        params = sched.get("params")
        mode = params.get("mode", "min") if isinstance(params, Mapping) else "min"
        return str(sched.get("monitor", "val_loss")), str(mode)
    return "val_loss", "min"


def _track_best(spec: ExperimentSpec, s: State, epoch: int, metrics: dict[str, float | None]
                ) -> State:  # fmt: skip
    if spec.early_stopping:
        return replace(s, best_value=s.stop_best if s.stop_best_epoch else None,
                       best_epoch=s.stop_best_epoch)  # fmt: skip
    monitor, mode = best_criterion(spec)
    value = metrics.get(monitor)
    if value is None:
        return s
    if s.best_value is None or (value < s.best_value if mode == "min" else value > s.best_value):
        return replace(s, best_value=value, best_epoch=epoch)
    return s


def replay(
    spec: ExperimentSpec, history: list[tuple[int, float, dict[str, float | None]]],
    start_loss: float | None = None,
) -> tuple[list[Decision], State | None]:  # fmt: skip
    """Fold `step` over stored (epoch, lr, metrics) rows: the decisions a run took.
    `start_loss`: the untrained model's loss (stored in the state of epoch 1's row)."""
    decisions, state = [], None
    for epoch, lr, metrics in history:
        state = state or initial_state(spec, lr)
        decision, state = step(spec, state, epoch, metrics, lr, start_loss)
        decisions.append(decision)
    return decisions, state

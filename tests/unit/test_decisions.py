"""`service/training/decisions.py` against torch's ReduceLROnPlateau and CONTRACT.md's early
stopping.

The plateau reference is torch itself (a real SGD optimizer and scheduler); the early-stopping
reference is a few lines written straight from CONTRACT.md's "Experiment spec" text.
"""

from __future__ import annotations

import json
import math
from typing import Any

import pytest
import torch
from hypothesis import HealthCheck, example, given, settings
from hypothesis import strategies as st

from service.training.decisions import Decision, State, initial_state, replay, step
from service.training.schedule import iter_epoch_lrs
from service.training.spec import ExperimentSpec

BASE_LR = 0.1
SETTINGS = settings(
    max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow], database=None
)

# Many exact ties and near-ties, mixed with arbitrary values.
VALUE = st.one_of(
    st.sampled_from([1.0, 0.9, 0.5, 0.5000001, 0.45, 2.0]),
    st.floats(0.01, 10, allow_nan=False, allow_infinity=False),
)
VALUES = st.lists(VALUE, min_size=1, max_size=40)
PLATEAU_PARAMS = st.fixed_dictionaries(
    {
        "mode": st.sampled_from(["min", "max"]),
        "factor": st.one_of(
            st.sampled_from([0.5, 0.1, 0.3]),
            st.floats(0.01, 0.99, allow_nan=False),
        ),
        "patience": st.integers(0, 5),
        "threshold": st.one_of(st.just(0.0), st.floats(0.0, 0.2, allow_nan=False)),
        "threshold_mode": st.sampled_from(["rel", "abs"]),
        "cooldown": st.integers(0, 3),
        "min_lr": st.sampled_from([0.0, 1e-4, 0.02, 0.06]),
    },
    optional={"eps": st.sampled_from([0.0, 1e-8, 0.005])},
)
EARLY_STOPPING = st.fixed_dictionaries(
    {
        "mode": st.sampled_from(["min", "max"]),
        "patience": st.integers(1, 6),
        "min_delta": st.one_of(st.just(0.0), st.sampled_from([0.05, 0.1]), st.floats(0, 0.5)),
        "baseline": st.one_of(st.none(), st.sampled_from([0.5, 1.0]), st.floats(0.01, 10)),
    }
)


def monitor_for(mode: str) -> str:
    return "val_loss" if mode == "min" else "val_accuracy"


def make_spec(
    *,
    plateau: dict[str, Any] | None = None,
    warmup: int = 0,
    start_factor: float = 0.1,
    early_stopping: dict[str, Any] | None = None,
    epochs: int = 50,
) -> ExperimentSpec:
    data: dict[str, Any] = {
        "dataset": "digits",
        "base_lr": BASE_LR,
        "epochs": epochs,
        "solver": {"type": "SGD", "params": {"momentum": 0.9}},
    }
    if plateau is not None:
        data["scheduler"] = {
            "type": "ReduceLROnPlateau",
            "params": plateau,
            "monitor": monitor_for(plateau.get("mode", "min")),
            "interval": "epoch",
        }
    if warmup:
        data["warmup"] = {"epochs": warmup, "start_factor": start_factor}
    if early_stopping is not None:
        data["early_stopping"] = {"monitor": monitor_for(early_stopping["mode"]), **early_stopping}
    return ExperimentSpec.model_validate(data)


def metrics(monitor: str, value: float) -> dict[str, float | None]:
    out: dict[str, float | None] = {"train_loss": 0.3, "val_loss": 0.4, "val_accuracy": 0.7}
    out[monitor] = value
    return out


def schedule_lrs(spec: ExperimentSpec) -> list[float]:
    """The LRs the schedule alone sets (warmup ramp, then base_lr), one per epoch."""
    return list(iter_epoch_lrs(spec, 1))


def drive(
    spec: ExperimentSpec, values: list[float], monitor: str
) -> tuple[list[Decision], list[tuple[int, float, dict[str, float | None]]]]:
    """Step live, epoch by epoch, as the worker does: the schedule's LR during the warmup and for
    the first epoch after it, then the previous decision's `lr_next`. Stops where a decision
    stops the run. Returns the decisions and the (epoch, lr, metrics) history rows."""
    warm = spec.warmup.epochs if spec.warmup else 0
    sched = schedule_lrs(spec)
    decisions: list[Decision] = []
    history: list[tuple[int, float, dict[str, float | None]]] = []
    state = initial_state(spec, sched[0])
    for epoch, value in enumerate(values, 1):
        lr = sched[epoch - 1] if epoch <= warm + 1 else decisions[-1].lr_next
        row = metrics(monitor, value)
        decision, state = step(spec, state, epoch, row, lr)
        decisions.append(decision)
        history.append((epoch, lr, row))
        if decision.stop:
            break
    return decisions, history


def torch_plateau(params: dict[str, Any], values: list[float], lr: float = BASE_LR) -> list[float]:
    """Param group 0's LR after torch's ReduceLROnPlateau.step(value), for each value."""
    p = torch.zeros(1, requires_grad=True)
    opt = torch.optim.SGD([p], lr=lr)
    sched = torch.optim.lr_scheduler.ReduceLROnPlateau(opt, **params)
    out = []
    for value in values:
        sched.step(value)
        out.append(opt.param_groups[0]["lr"])
    return out


def assert_matches_torch(
    decisions: list[Decision], lr_before: float, torch_after: list[float], first_epoch: int = 1
) -> None:
    assert [d.lr_next for d in decisions] == torch_after
    prev = lr_before
    for d, new in zip(decisions, torch_after, strict=True):
        kinds = [e.kind for e in d.events]
        if new != prev:
            assert kinds == ["reduce_lr"], (d.epoch, kinds)
            (event,) = d.events
            assert (event.old_lr, event.new_lr) == (prev, new)
            assert d.epoch >= first_epoch
        else:
            assert "reduce_lr" not in kinds, d.epoch
        assert d.stop is None
        prev = new


# --- ReduceLROnPlateau == torch -------------------------------------------------------------


# Edges found so far, pinned (random draws caught the first one in about half the runs):
# min_lr reached with eps 0 (a "reduction" from 0.06 to 0.06 is none), ties with threshold 0 in
# both modes, cooldown swallowing bad epochs, an abs threshold.
PINNED_PLATEAU = {"factor": 0.5, "patience": 0, "threshold": 0.0, "threshold_mode": "rel",
                  "cooldown": 0, "min_lr": 0.06, "eps": 0.0}  # fmt: skip


@SETTINGS
@given(params=PLATEAU_PARAMS, values=VALUES)
@example(params={"mode": "min", **PINNED_PLATEAU}, values=[1.0, 1.0, 1.0, 1.0])
@example(params={"mode": "max", **PINNED_PLATEAU}, values=[0.5, 0.5, 0.5, 0.5])
@example(params={"mode": "min", **PINNED_PLATEAU, "min_lr": 0.0}, values=[0.5, 0.5, 0.45, 0.5])
@example(params={"mode": "min", **PINNED_PLATEAU, "cooldown": 2}, values=[1.0] * 7)
@example(
    params={"mode": "max", **PINNED_PLATEAU, "threshold": 0.1, "threshold_mode": "abs"},
    values=[0.5, 0.55, 0.61, 0.65, 0.72],
)
def test_plateau_matches_torch_exactly(params: dict[str, Any], values: list[float]) -> None:
    spec = make_spec(plateau=params)
    decisions, history = drive(spec, values, monitor_for(params["mode"]))
    assert len(decisions) == len(values)
    expected = torch_plateau(params, values)
    assert_matches_torch(decisions, BASE_LR, expected)
    # The per-epoch LR in effect (what the worker records) is torch's, shifted by one epoch.
    assert [lr for _, lr, _ in history] == [BASE_LR, *expected[:-1]]


def test_plateau_worked_example() -> None:
    """patience 1, factor 0.5, a flat loss: torch reduces at epochs 3 and 5 (bad epochs 2 > 1)."""
    params = {"mode": "min", "factor": 0.5, "patience": 1}
    decisions, _ = drive(make_spec(plateau=params), [0.8] * 6, "val_loss")
    assert [d.label for d in decisions] == [None, None, "reduce_lr", None, "reduce_lr", None]
    assert [d.lr_next for d in decisions] == torch_plateau(params, [0.8] * 6)
    assert [d.lr_next for d in decisions] == [0.1, 0.1, 0.05, 0.05, 0.025, 0.025]


def test_reduce_lr_reason_names_monitor_best_epoch_and_lrs() -> None:
    params = {"mode": "min", "factor": 0.5, "patience": 1}
    decisions, _ = drive(make_spec(plateau=params), [0.8, 0.9, 0.85], "val_loss")
    (event,) = decisions[2].events
    assert event.kind == "reduce_lr"
    assert (event.monitor, event.best, event.best_epoch) == ("val_loss", 0.8, 1)
    assert (event.old_lr, event.new_lr) == (0.1, 0.05)
    assert "val_loss" in event.reason
    assert "0.8" in event.reason
    assert "epoch 1" in event.reason
    assert "lr 0.1 → 0.05" in event.reason


@SETTINGS
@given(
    params=PLATEAU_PARAMS,
    warmup=st.integers(1, 4),
    start_factor=st.sampled_from([0.1, 0.25, 1.0]),
    excellent=st.booleans(),
    values=VALUES,
)
@example(params={"mode": "min", **PINNED_PLATEAU}, warmup=2, start_factor=0.1, excellent=True,
         values=[1.0, 1.0, 1.0])  # fmt: skip
def test_plateau_after_warmup_sees_only_post_warmup_epochs(
    params: dict[str, Any],
    warmup: int,
    start_factor: float,
    excellent: bool,
    values: list[float],
) -> None:
    """Warmup epochs with extreme values (terrible: would make everything after look good;
    excellent: would make everything after look bad) change nothing: the decisions equal torch's
    plateau run on epochs W+1.. alone, starting from the LR the warmup ends on."""
    mode = params["mode"]
    worst, best = (1e6, 1e-6) if mode == "min" else (-1e6, 1e6)
    warm_values = [best if excellent else worst] * warmup
    spec = make_spec(plateau=params, warmup=warmup, start_factor=start_factor)
    decisions, history = drive(spec, warm_values + values, monitor_for(mode))
    sched = schedule_lrs(spec)
    # During the warmup: no plateau decisions, the LR is the warmup's.
    for d, (_, lr, _) in zip(decisions[:warmup], history[:warmup], strict=True):
        assert d.events == [] and d.stop is None
        assert d.lr_next == lr
    assert [lr for _, lr, _ in history[: warmup + 1]] == sched[: warmup + 1]
    lr_after_warmup = sched[warmup]
    assert lr_after_warmup == pytest.approx(BASE_LR, rel=1e-12)
    expected = torch_plateau(params, values, lr=lr_after_warmup)
    assert_matches_torch(decisions[warmup:], lr_after_warmup, expected, first_epoch=warmup + 1)


# --- replay / resume -------------------------------------------------------------------------


@SETTINGS
@given(
    params=st.one_of(st.none(), PLATEAU_PARAMS),
    es=st.one_of(st.none(), EARLY_STOPPING),
    warmup=st.integers(0, 3),
    values=VALUES,
    data=st.data(),
)
def test_replay_equals_live_and_resumes_from_any_prefix(
    params: dict[str, Any] | None,
    es: dict[str, Any] | None,
    warmup: int,
    values: list[float],
    data: st.DataObject,
) -> None:
    if es is not None and params is not None:
        es = {**es, "mode": params["mode"]}  # one monitor for both decisions
    monitor = monitor_for((params or es or {"mode": "min"})["mode"])
    spec = make_spec(plateau=params, warmup=warmup, early_stopping=es)
    live, history = drive(spec, values, monitor)

    replayed, final = replay(spec, history)
    assert replayed == live
    assert final is not None

    cut = data.draw(st.integers(1, len(history)), label="cut")
    head, state = replay(spec, history[:cut])
    assert head == live[:cut]
    assert state is not None
    restored = State.from_json(json.loads(json.dumps(state.to_json())))
    assert restored == state
    tail: list[Decision] = []
    for epoch, lr, row in history[cut:]:
        decision, restored = step(spec, restored, epoch, row, lr)
        tail.append(decision)
    assert head + tail == live
    assert restored == final


def test_replay_of_empty_history() -> None:
    assert replay(make_spec(plateau={"patience": 1}), []) == ([], None)


# --- early stopping == CONTRACT.md ----------------------------------------------------------


def reference_early_stop(
    values: list[float], mode: str, patience: int, min_delta: float, baseline: float | None
) -> tuple[int, float, int | None] | None:
    """CONTRACT.md: improvement is `value < best - min_delta` (min) / `value > best + min_delta`
    (max); wait resets on improvement, else grows by one; stop after the epoch where wait reaches
    patience. A baseline is the best to beat before any epoch has beaten it.
    Returns (stop epoch, best, best epoch) or None."""
    best = baseline if baseline is not None else (math.inf if mode == "min" else -math.inf)
    best_epoch, wait = None, 0
    for epoch, value in enumerate(values, 1):
        improved = value < best - min_delta if mode == "min" else value > best + min_delta
        if improved:
            best, best_epoch, wait = value, epoch, 0
        else:
            wait += 1
        if wait >= patience:
            return epoch, best, best_epoch
    return None


def early_stop_outcome(
    es: dict[str, Any], values: list[float]
) -> tuple[list[Decision], tuple[int, float, int | None] | None]:
    decisions, _ = drive(make_spec(early_stopping=es), values, monitor_for(es["mode"]))
    for d in decisions[:-1]:
        assert d.stop is None and d.events == []
    last = decisions[-1]
    if last.stop is None:
        assert last.events == []
        return decisions, None
    assert last.stop == "early_stopped"
    (event,) = last.events
    assert event.kind == "early_stop"
    assert event.monitor == monitor_for(es["mode"])
    assert event.value == values[last.epoch - 1]
    assert event.best is not None
    return decisions, (last.epoch, event.best, event.best_epoch)


@SETTINGS
@given(es=EARLY_STOPPING, values=VALUES)
# A tie with an unbeaten baseline; a tie after an improvement; min_delta in mode max.
@example(es={"mode": "min", "patience": 1, "min_delta": 0.0, "baseline": 0.5}, values=[0.5])
@example(es={"mode": "min", "patience": 2, "min_delta": 0.0, "baseline": None},
         values=[1.0, 0.9, 0.9, 0.9])  # fmt: skip
@example(es={"mode": "max", "patience": 1, "min_delta": 0.1, "baseline": None},
         values=[0.5, 0.6, 0.61])  # fmt: skip
def test_early_stopping_matches_contract_reference(es: dict[str, Any], values: list[float]) -> None:
    decisions, outcome = early_stop_outcome(es, values)
    expected = reference_early_stop(values, **es)
    assert outcome == expected
    assert len(decisions) == (expected[0] if expected else len(values))


def es(
    mode: str = "min", patience: int = 2, min_delta: float = 0.0, baseline: float | None = None
) -> dict[str, Any]:
    return {"mode": mode, "patience": patience, "min_delta": min_delta, "baseline": baseline}


@pytest.mark.parametrize(
    ("params", "values", "expected"),
    [
        # Ties are not improvements: with min_delta 0 an equal value increments wait.
        (es(patience=2), [1.0, 1.0, 1.0, 1.0], (3, 1.0, 1)),
        # Wait resets on improvement.
        (es(patience=2), [1.0, 1.1, 0.9, 0.95, 0.85, 0.95], None),
        (es(patience=2), [1.0, 1.1, 0.9, 0.95, 0.9, 0.9], (5, 0.9, 3)),
        # patience=1 stops on the first non-improving epoch.
        (es(patience=1), [1.0, 0.9, 0.8, 0.8], (4, 0.8, 3)),
        (es(patience=1), [1.0, 0.9, 0.95], (3, 0.9, 2)),
        # min_delta: a small improvement counts as non-improving.
        (es(patience=1, min_delta=0.1), [1.0, 0.95], (2, 1.0, 1)),
        (es(patience=2, min_delta=0.1), [1.0, 0.95, 0.85, 0.8, 0.79], (5, 0.85, 3)),
        # mode max.
        (es(mode="max", patience=2), [0.5, 0.6, 0.6, 0.55], (4, 0.6, 2)),
        (es(mode="max", patience=1, min_delta=0.05), [0.5, 0.54], (2, 0.5, 1)),
        # Baseline never beaten: non-improving from epoch 1, stop after `patience` epochs.
        (es(patience=3, baseline=0.5), [0.6, 0.55, 0.7, 0.1], (3, 0.5, None)),
        (es(patience=1, baseline=0.5), [0.5], (1, 0.5, None)),
        (es(mode="max", patience=2, baseline=0.9), [0.8, 0.85], (2, 0.9, None)),
        # Baseline beaten later: the best is that epoch's value from then on.
        (es(patience=2, baseline=0.5), [0.6, 0.4, 0.45, 0.45], (4, 0.4, 2)),
    ],
)
def test_early_stopping_cases(
    params: dict[str, Any], values: list[float], expected: tuple[int, float, int | None] | None
) -> None:
    assert reference_early_stop(values, **params) == expected  # the reference itself
    _, outcome = early_stop_outcome(params, values)
    assert outcome == expected


def test_early_stop_reason_mentions_best_and_patience() -> None:
    decisions, _ = drive(make_spec(early_stopping=es(patience=2)), [0.8, 0.9, 0.85], "val_loss")
    (event,) = decisions[-1].events
    assert decisions[-1].epoch == 3
    assert "val_loss" in event.reason and "0.8" in event.reason and "epoch 1" in event.reason
    assert "patience 2" in event.reason


def test_plateau_and_early_stopping_on_the_same_epoch() -> None:
    """Both decisions are taken from the same history; both events are reported, in order."""
    spec = make_spec(plateau={"mode": "min", "factor": 0.5, "patience": 1}, early_stopping=es())
    decisions, _ = drive(spec, [0.8, 0.9, 0.9], "val_loss")
    last = decisions[-1]
    assert last.epoch == 3
    assert last.stop == "early_stopped"
    assert last.label == "reduce_lr+early_stop"
    assert last.lr_next == 0.05


# --- non-finite ------------------------------------------------------------------------------


@pytest.mark.parametrize("bad", [math.nan, math.inf, -math.inf], ids=["nan", "inf", "-inf"])
@pytest.mark.parametrize("metric", ["train_loss", "val_loss", "val_accuracy"])
@pytest.mark.parametrize("configured", [False, True], ids=["plain", "plateau+es"])
def test_non_finite_metric_diverges_at_once(bad: float, metric: str, configured: bool) -> None:
    spec = (
        make_spec(plateau={"mode": "min", "patience": 0}, early_stopping=es(patience=5))
        if configured
        else make_spec()
    )
    state = initial_state(spec, BASE_LR)
    for epoch in (1, 2):
        decision, state = step(spec, state, epoch, metrics("val_loss", 1.0 / epoch), BASE_LR)
        assert decision.stop is None
    row = metrics("val_loss", 0.3)
    row[metric] = bad
    decision, _ = step(spec, state, 3, row, BASE_LR)
    assert decision.epoch == 3
    assert decision.stop == "diverged"
    assert [e.kind for e in decision.events] == ["diverged"]
    assert decision.events[0].monitor == metric
    assert metric in decision.events[0].reason


def test_missing_metric_value_is_not_divergence() -> None:
    """None means 'not recorded', not non-finite."""
    spec = make_spec()
    row: dict[str, float | None] = {"train_loss": 0.3, "val_loss": 0.4, "val_accuracy": None}
    decision, _ = step(spec, initial_state(spec, BASE_LR), 1, row, BASE_LR)
    assert decision.stop is None and decision.events == []

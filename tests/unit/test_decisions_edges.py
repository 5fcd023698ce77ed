"""Edges of `service/training/decisions.py` a user sees: which epoch is reported best (ties, mode
max without early stopping), the plateau's eps/min_lr floor, thresholds, cooldown, and the exact
sentences the decisions table shows. Plain examples, each with its answer worked out by hand."""

from __future__ import annotations

from typing import Any

import pytest

from service.training.decisions import (
    PlateauParams,
    State,
    best_criterion,
    initial_state,
    plateau_is_better,
    replay,
    step,
)
from service.training.spec import ExperimentSpec

LR = 0.1


def spec(
    *,
    plateau: dict[str, Any] | None = None,
    monitor: str | None = None,
    early_stopping: dict[str, Any] | None = None,
    warmup: int = 0,
) -> ExperimentSpec:
    data: dict[str, Any] = {
        "dataset": "digits",
        "base_lr": LR,
        "epochs": 50,
        "solver": {"type": "SGD", "params": {}},
    }
    if plateau is not None:
        mode = plateau.get("mode", "min")
        data["scheduler"] = {
            "type": "ReduceLROnPlateau",
            "params": plateau,
            "monitor": monitor or ("val_accuracy" if mode == "max" else "val_loss"),
            "interval": "epoch",
        }
    if early_stopping is not None:
        data["early_stopping"] = early_stopping
    if warmup:
        data["warmup"] = {"epochs": warmup, "start_factor": 0.5}
    return ExperimentSpec.model_validate(data)


def row(val_loss: float = 1.0, val_accuracy: float = 0.5) -> dict[str, float | None]:
    return {"train_loss": 0.3, "val_loss": val_loss, "val_accuracy": val_accuracy}


def run(s: ExperimentSpec, rows: list[dict[str, float | None]], lr: float = LR) -> list[Any]:
    """Step epoch by epoch, feeding each decision's lr_next back as the next epoch's LR.
    Returns [(decision, state)] per epoch."""
    state = initial_state(s, lr)
    out = []
    for epoch, metrics in enumerate(rows, 1):
        decision, state = step(s, state, epoch, metrics, lr)
        out.append((decision, state))
        lr = decision.lr_next
    return out


def best_of(s: ExperimentSpec, rows: list[dict[str, float | None]]) -> tuple[int | None, Any]:
    state = run(s, rows)[-1][1]
    return state.best_epoch, state.best_value


# --- best epoch -------------------------------------------------------------------------------


def test_best_epoch_without_any_rule_is_the_lowest_val_loss_and_stays_on_ties() -> None:
    s = spec()
    assert best_of(s, [row(0.5), row(0.4), row(0.4), row(0.45)]) == (2, 0.4)
    assert best_of(s, [row(0.5)]) == (1, 0.5)
    assert best_of(s, [row(0.5), row(0.6)]) == (1, 0.5)


def test_best_epoch_follows_plateau_mode_max_when_there_is_no_early_stopping() -> None:
    s = spec(plateau={"mode": "max", "patience": 5})
    rows = [row(0.9, 0.5), row(0.2, 0.7), row(0.1, 0.7), row(0.05, 0.6)]
    # val_accuracy is the monitor: epoch 2 reached 0.7 first; val_loss (lowest at 4) is ignored.
    assert best_of(s, rows) == (2, 0.7)
    assert best_criterion(s) == ("val_accuracy", "max")


def test_best_epoch_follows_plateau_mode_min_monitor() -> None:
    s = spec(plateau={"mode": "min", "patience": 5})
    assert best_criterion(s) == ("val_loss", "min")
    assert best_of(s, [row(0.9), row(0.3), row(0.3), row(0.35)]) == (2, 0.3)


def test_best_epoch_plateau_default_mode_is_min() -> None:
    s = spec(plateau={"patience": 5}, monitor="val_loss")
    assert best_criterion(s) == ("val_loss", "min")
    assert best_of(s, [row(0.9), row(0.3), row(0.5)]) == (2, 0.3)


def test_best_epoch_with_early_stopping_uses_its_min_delta() -> None:
    es = {"monitor": "val_loss", "mode": "min", "patience": 10, "min_delta": 0.1}
    s = spec(early_stopping=es)
    assert best_criterion(s) == ("val_loss", "min")
    # 0.95 is lower than 1.0 but not by min_delta: epoch 1 stays the best; 0.85 beats it.
    assert best_of(s, [row(1.0), row(0.95)]) == (1, 1.0)
    assert best_of(s, [row(1.0), row(0.95), row(0.85)]) == (3, 0.85)


def test_best_epoch_with_early_stopping_mode_max() -> None:
    es = {"monitor": "val_accuracy", "mode": "max", "patience": 10}
    s = spec(early_stopping=es, plateau={"mode": "min", "patience": 5}, monitor="val_loss")
    assert best_criterion(s) == ("val_accuracy", "max")
    assert best_of(s, [row(0.5, 0.6), row(0.4, 0.8), row(0.3, 0.8), row(0.2, 0.7)]) == (2, 0.8)


def test_best_epoch_is_unset_while_a_baseline_is_unbeaten() -> None:
    es = {"monitor": "val_loss", "mode": "min", "patience": 10, "baseline": 0.5}
    s = spec(early_stopping=es)
    assert best_of(s, [row(0.6), row(0.55)]) == (None, None)
    assert best_of(s, [row(0.6), row(0.4)]) == (2, 0.4)


def test_best_epoch_skips_a_missing_monitor_value() -> None:
    s = spec()
    rows: list[dict[str, float | None]] = [
        row(0.5),
        {"train_loss": 0.3, "val_loss": None, "val_accuracy": 0.5},
        row(0.6),
    ]
    assert best_of(s, rows) == (1, 0.5)


# --- ReduceLROnPlateau: eps, min_lr, thresholds, cooldown ---------------------------------------


def lrs_and_labels(s: ExperimentSpec, values: list[float], monitor: str = "val_loss") -> Any:
    rows = [row(v) if monitor == "val_loss" else row(1.0, v) for v in values]
    out = run(s, rows)
    return [d.lr_next for d, _ in out], [d.label for d, _ in out]


def test_plateau_stops_reducing_at_min_lr_even_with_eps_zero() -> None:
    """0.1 → 0.06 (min_lr) and then nothing more: no event with old_lr == new_lr."""
    s = spec(plateau={"mode": "min", "factor": 0.5, "patience": 0, "min_lr": 0.06, "eps": 0.0})
    lrs, labels = lrs_and_labels(s, [1.0, 1.0, 1.0, 1.0])
    assert lrs == [0.1, 0.06, 0.06, 0.06]
    assert labels == [None, "reduce_lr", None, None]


def test_plateau_skips_a_reduction_no_larger_than_eps() -> None:
    # 0.1 * 0.9 = 0.09: a step of 0.01 is not more than eps 0.01, so torch keeps 0.1.
    s = spec(plateau={"mode": "min", "factor": 0.9, "patience": 0, "eps": 0.01})
    lrs, labels = lrs_and_labels(s, [1.0, 1.0, 1.0])
    assert lrs == [0.1, 0.1, 0.1]
    assert labels == [None, None, None]
    s = spec(plateau={"mode": "min", "factor": 0.5, "patience": 0, "eps": 0.01})
    assert lrs_and_labels(s, [1.0, 1.0, 1.0])[0] == [0.1, 0.05, 0.025]


def test_plateau_patience_counts_bad_epochs_strictly_past_it() -> None:
    s = spec(plateau={"mode": "min", "factor": 0.5, "patience": 2})
    lrs, labels = lrs_and_labels(s, [1.0, 1.0, 1.0, 1.0, 1.0])
    # bad epochs: 2, 3, 4 → the third one (epoch 4) is past patience 2.
    assert labels == [None, None, None, "reduce_lr", None]
    assert lrs == [0.1, 0.1, 0.1, 0.05, 0.05]


def test_plateau_cooldown_ignores_bad_epochs() -> None:
    s = spec(plateau={"mode": "min", "factor": 0.5, "patience": 0, "cooldown": 2})
    _, labels = lrs_and_labels(s, [1.0] * 7)
    # reduce at 2, then two cooldown epochs (3, 4), then reduce at 5, cooldown 6, 7.
    assert labels == [None, "reduce_lr", None, None, "reduce_lr", None, None]


def test_plateau_state_after_a_reduction() -> None:
    s = spec(plateau={"mode": "min", "factor": 0.5, "patience": 1, "cooldown": 1})
    out = run(s, [row(1.0), row(1.2), row(1.1)])
    state = out[-1][1]
    assert (state.plateau_best, state.plateau_best_epoch) == (1.0, 1)
    assert (state.plateau_bad_epochs, state.plateau_cooldown) == (0, 1)
    assert state.lr == 0.05


@pytest.mark.parametrize(
    ("params", "value", "best", "better"),
    [
        # rel, min: better means below best * (1 - threshold).
        ({"mode": "min", "threshold": 0.1, "threshold_mode": "rel"}, 0.89, 1.0, True),
        ({"mode": "min", "threshold": 0.1, "threshold_mode": "rel"}, 0.9, 1.0, False),
        ({"mode": "min", "threshold": 0.1, "threshold_mode": "rel"}, 0.95, 1.0, False),
        # abs, min: below best - threshold.
        ({"mode": "min", "threshold": 0.1, "threshold_mode": "abs"}, 0.85, 1.0, True),
        ({"mode": "min", "threshold": 0.1, "threshold_mode": "abs"}, 0.95, 1.0, False),
        ({"mode": "min", "threshold": 0.25, "threshold_mode": "abs"}, 0.5, 1.0, True),
        ({"mode": "min", "threshold": 0.25, "threshold_mode": "abs"}, 0.8, 1.0, False),
        # rel, max: above best * (1 + threshold).
        ({"mode": "max", "threshold": 0.1, "threshold_mode": "rel"}, 1.11, 1.0, True),
        ({"mode": "max", "threshold": 0.1, "threshold_mode": "rel"}, 1.05, 1.0, False),
        ({"mode": "max", "threshold": 0.5, "threshold_mode": "rel"}, 1.6, 1.0, True),
        ({"mode": "max", "threshold": 0.5, "threshold_mode": "rel"}, 1.4, 1.0, False),
        # abs, max: above best + threshold.
        ({"mode": "max", "threshold": 0.1, "threshold_mode": "abs"}, 1.15, 1.0, True),
        ({"mode": "max", "threshold": 0.1, "threshold_mode": "abs"}, 1.05, 1.0, False),
        # No best yet: any value is better, in both modes (torch's mode_worse is ±inf).
        ({"mode": "min"}, 1e300, None, True),
        ({"mode": "max"}, -1e300, None, True),
        ({"mode": "max", "threshold_mode": "abs"}, -1e300, None, True),
        ({"mode": "min", "threshold_mode": "abs"}, 1e300, None, True),
    ],
)
def test_plateau_threshold_rules(
    params: dict[str, Any], value: float, best: float | None, better: bool
) -> None:
    assert plateau_is_better(PlateauParams(**params), value, best) is better


def test_plateau_params_defaults_are_torchs() -> None:
    assert PlateauParams.of({}) == PlateauParams(
        mode="min", factor=0.1, patience=10, threshold=1e-4, threshold_mode="rel", cooldown=0,
        min_lr=0.0, eps=1e-8,
    )  # fmt: skip
    assert PlateauParams.of({"min_lr": [0.01]}).min_lr == 0.01
    assert PlateauParams.of({"min_lr": 0.02}).min_lr == 0.02


def test_plateau_default_threshold_and_patience() -> None:
    """Defaults: patience 10, rel threshold 1e-4 (a 0.005 % improvement is not one)."""
    s = spec(plateau={"mode": "min", "factor": 0.5}, monitor="val_loss")
    values = [1.0] + [0.99995] * 11
    lrs, labels = lrs_and_labels(s, values)
    assert labels[-1] == "reduce_lr" and labels[:-1] == [None] * 11
    assert lrs[-1] == 0.05


def test_plateau_waits_for_the_warmup_to_end() -> None:
    s = spec(plateau={"mode": "min", "factor": 0.5, "patience": 0}, warmup=2)
    state = initial_state(s, 0.05)
    labels = []
    for epoch, lr in enumerate([0.05, 0.075, 0.1, 0.1], 1):
        decision, state = step(s, state, epoch, row(1.0), lr)
        labels.append(decision.label)
    # Epoch 3 is the first the plateau sees (best 1.0), epoch 4 the first bad one.
    assert labels == [None, None, None, "reduce_lr"]


# --- the sentences users read ---------------------------------------------------------------


def test_reduce_lr_event_in_full() -> None:
    s = spec(plateau={"mode": "min", "factor": 0.5, "patience": 1})
    decision = run(s, [row(0.8), row(0.9), row(0.85)])[-1][0]
    (event,) = decision.events
    assert (event.kind, event.monitor, event.value, event.best, event.best_epoch) == (
        "reduce_lr", "val_loss", 0.85, 0.8, 1,
    )  # fmt: skip
    assert (event.old_lr, event.new_lr) == (0.1, 0.05)
    assert event.reason == (
        "val_loss has not improved on 0.8 (epoch 1) for 2 epochs; lr 0.1 → 0.05"
    )
    assert decision.label == "reduce_lr"
    assert decision.stop is None


def test_early_stop_event_in_full() -> None:
    es = {"monitor": "val_loss", "mode": "min", "patience": 2, "min_delta": 0.01}
    decision = run(spec(early_stopping=es), [row(0.8), row(0.9), row(0.85)])[-1][0]
    (event,) = decision.events
    assert (event.kind, event.monitor, event.value, event.best, event.best_epoch) == (
        "early_stop", "val_loss", 0.85, 0.8, 1,
    )  # fmt: skip
    assert (event.old_lr, event.new_lr) == (None, None)
    assert event.reason == (
        "val_loss has not improved on 0.8 (epoch 1) for 2 epochs "
        "(patience 2, min_delta 0.01); stopping"
    )
    assert decision.stop == "early_stopped" and decision.label == "early_stop"
    assert decision.lr_next == LR


def test_early_stop_against_an_unbeaten_baseline_says_so() -> None:
    es = {"monitor": "val_loss", "mode": "min", "patience": 1, "baseline": 0.5}
    decision = run(spec(early_stopping=es), [row(0.6)])[-1][0]
    (event,) = decision.events
    assert (event.best, event.best_epoch) == (0.5, None)
    assert event.reason == (
        "val_loss has not improved on the baseline 0.5 for 1 epochs "
        "(patience 1, min_delta 0); stopping"
    )


def test_divergence_event_in_full() -> None:
    s = spec(plateau={"mode": "min", "patience": 0})
    state = initial_state(s, LR)
    metrics: dict[str, float | None] = {
        "train_loss": float("inf"), "val_loss": float("nan"), "val_accuracy": 0.1,
    }  # fmt: skip
    decision, after = step(s, state, 4, metrics, 0.02)
    (event,) = decision.events
    assert (event.kind, event.monitor) == ("diverged", "train_loss")
    assert event.value == float("inf")
    assert (event.best, event.best_epoch, event.old_lr, event.new_lr) == (None,) * 4
    assert event.reason == "train_loss, val_loss became non-finite at epoch 4; stopping"
    assert (decision.stop, decision.lr_next, decision.epoch) == ("diverged", 0.02, 4)
    assert after == State(lr=0.02)


def test_no_events_no_label() -> None:
    decision = run(spec(), [row(1.0)])[0][0]
    assert decision.label is None and decision.events == [] and decision.stop is None


def test_replay_reports_the_last_state() -> None:
    s = spec(plateau={"mode": "max", "patience": 0, "factor": 0.5})
    history = [(1, 0.1, row(1.0, 0.5)), (2, 0.1, row(1.0, 0.4))]
    decisions, state = replay(s, history)
    assert [d.label for d in decisions] == [None, "reduce_lr"]
    assert state is not None and state.lr == 0.05 and state.best_epoch == 1

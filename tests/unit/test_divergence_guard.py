"""The divergence guard (`decisions.step`, spec `divergence`): a train_loss above `factor` times
where the run started (epoch 1's train_loss, or the untrained model's loss measured on epoch 1's
first batch) or above `ceiling` ends the run `diverged`, with a sentence; taken the same after a
resume from the stored state. And the metric a run's best is the best of, read from a stored
spec as from a validated one."""

from __future__ import annotations

from typing import Any

import pytest

from service.training.decisions import (
    Decision,
    State,
    best_criterion,
    initial_state,
    replay,
    step,
    stored_best_criterion,
)
from service.training.spec import ExperimentSpec

LR = 0.1
START = 2.3  # an untrained 10-class model's loss: about ln 10


def spec(**extra: Any) -> ExperimentSpec:
    return ExperimentSpec.model_validate({"dataset": "digits", "base_lr": LR, **extra})


def metrics(train_loss: float) -> dict[str, float | None]:
    return {"train_loss": train_loss, "val_loss": 1.0, "val_accuracy": 0.5}


def run(s: ExperimentSpec, losses: list[float], start_loss: float | None = START,
        state: State | None = None, first: int = 1) -> tuple[list[Decision], State]:  # fmt: skip
    """Step over train losses from epoch `first`, as the worker does (the start loss at epoch 1
    only); stops at the first decision that ends the run."""
    state = state or initial_state(s, LR)
    out = []
    for epoch, loss in enumerate(losses, first):
        decision, state = step(s, state, epoch, metrics(loss), LR,
                               start_loss if epoch == 1 else None)  # fmt: skip
        out.append(decision)
        if decision.stop:
            break
    return out, state


def test_a_loss_ten_times_epoch_ones_ends_the_run_with_the_sentence() -> None:
    decisions, _ = run(spec(), [2.0, 1.0, 5.0, 20.5])
    assert [d.stop for d in decisions] == [None, None, None, "diverged"]
    (event,) = decisions[-1].events
    assert (event.kind, event.monitor, event.value) == ("diverged", "train_loss", 20.5)
    assert event.reason == "train_loss 20.5 at epoch 4 is above 10 × epoch 1's 2: diverged"
    assert decisions[-1].label == "diverged" and decisions[-1].lr_next == LR


def test_exactly_the_factor_is_not_above_it() -> None:
    decisions, _ = run(spec(), [2.0, 20.0, 20.0])
    assert [d.stop for d in decisions] == [None, None, None]


def test_a_run_that_blows_up_in_its_first_epoch_ends_at_epoch_one() -> None:
    """The issue's run (base_lr 50, SGD with momentum on digits): epoch 1's mean train loss is
    1,350 against an untrained loss of 2.3; its later epochs stay near 90, below 10 × 1,350."""
    decisions, state = run(spec(), [1350.0, 82.96, 71.69])
    assert len(decisions) == 1 and decisions[0].stop == "diverged"
    assert decisions[0].events[0].reason == (
        "train_loss 1350 at epoch 1 is above 10 × the untrained model's 2.3 (epoch 1's first "
        "batch): diverged"
    )
    assert (state.start_loss, state.first_train_loss) == (START, 1350.0)


def test_the_factor_is_the_specs() -> None:
    s = spec(divergence={"factor": 3})
    decisions, _ = run(s, [2.0, 6.5])
    assert decisions[-1].events[0].reason == (
        "train_loss 6.5 at epoch 2 is above 3 × epoch 1's 2: diverged"
    )
    # Against the untrained loss at epoch 1 too: 3 × 2.3 = 6.9.
    assert run(s, [7.0])[0][0].stop == "diverged"
    assert run(s, [6.8])[0][0].stop is None


def test_a_ceiling_ends_a_run_whatever_its_start() -> None:
    s = spec(divergence={"factor": 10, "ceiling": 3})
    decisions, _ = run(s, [2.0, 2.5, 3.25])
    assert decisions[-1].events[0].reason == (
        "train_loss 3.25 at epoch 3 is above the ceiling 3: diverged"
    )
    # Without a known start (a state stored before the guard), the ceiling still holds.
    old = State.from_json({k: v for k, v in State(lr=LR).to_json().items()
                           if k not in ("start_loss", "first_train_loss")})  # fmt: skip
    decisions, _ = run(s, [2.9, 100.0], state=old, first=5)
    assert [d.stop for d in decisions] == [None, "diverged"]
    assert run(spec(), [2.9, 100.0], state=old, first=5)[0][-1].stop is None


def test_divergence_null_turns_the_guard_off_but_not_the_non_finite_check() -> None:
    s = spec(divergence=None)
    decisions, _ = run(s, [1350.0, 1e6, 1e9])
    assert [d.stop for d in decisions] == [None, None, None]
    decision, _ = step(s, initial_state(s, LR), 1, metrics(float("inf")), LR, START)
    assert decision.stop == "diverged" and "non-finite" in decision.events[0].reason


def test_a_normal_run_with_bumps_is_never_stopped() -> None:
    """Warm restarts, a one-cycle peak, noisy SGD: the mean moves by a small factor."""
    losses = [1.9, 0.9, 0.5, 1.4, 0.6, 0.3, 2.6, 0.4, 0.2, 0.9, 0.1, 0.05, 0.3]
    decisions, _ = run(spec(), losses)
    assert [d.stop for d in decisions] == [None] * len(losses)


def test_unusable_references_are_ignored() -> None:
    # A first epoch at 0 (or a start that is not a positive number) is no scale for "10 times".
    assert run(spec(), [0.0, 0.5], start_loss=0.0)[0][-1].stop is None
    assert run(spec(), [1.0, 0.5], start_loss=float("nan"))[1].start_loss is None


@pytest.mark.parametrize("cut", [1, 2, 3, 4])
def test_a_resumed_run_decides_as_an_uninterrupted_one(cut: int) -> None:
    """A resume reads the state stored with the checkpoint's epoch row (JSON) and never sees the
    start loss again; it takes the same decisions with the same states."""
    s = spec(divergence={"factor": 4})
    losses = [2.0, 1.0, 0.6, 5.0, 9.0]
    straight, final = run(s, losses)
    head, stored = run(s, losses[:cut])
    tail, resumed = run(s, losses[cut:], start_loss=None,
                        state=State.from_json(stored.to_json()), first=cut + 1)  # fmt: skip
    assert head + tail == straight and resumed == final
    assert straight[-1].events[0].reason == (
        "train_loss 9 at epoch 5 is above 4 × epoch 1's 2: diverged"
    )
    # And a replay of the stored rows, given the stored start loss, takes them too.
    history = [(e, LR, metrics(x)) for e, x in enumerate(losses, 1)]
    assert replay(s, history, START)[0] == straight


SPECS: list[dict[str, Any]] = [
    {},
    {"early_stopping": {"monitor": "val_accuracy", "mode": "max"}},
    {"early_stopping": {}},
    {
        "scheduler": {
            "type": "ReduceLROnPlateau",
            "params": {"mode": "max"},
            "monitor": "val_accuracy",
        }
    },
    {"scheduler": {"type": "ReduceLROnPlateau", "params": {}}},
    {
        "scheduler": {
            "type": "SequentialLR",
            "params": {"milestones": [3]},
            "schedulers": [
                {"type": "LinearLR", "params": {}},
                {"type": "ReduceLROnPlateau", "params": {"mode": "max"}, "monitor": "val_accuracy"},
            ],
        }
    },
    {"scheduler": {"type": "StepLR", "params": {"step_size": 3}}},
]


@pytest.mark.parametrize("extra", SPECS)
def test_the_best_metric_of_a_stored_spec_is_the_validated_specs(extra: dict[str, Any]) -> None:
    s = spec(**extra)
    assert stored_best_criterion(s.model_dump(mode="json")) == best_criterion(s)

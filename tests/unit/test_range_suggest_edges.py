"""Edges of the LR range test's suggestion (`service/training/range_suggest.py`) a user reads in
the result: the noise guard (a drop must beat 5 % of the loss and twice the batch noise), the
"still falling at the end" warning exactly half a slope window from the end, and the sentences
that explain a missing suggestion."""

from __future__ import annotations

import math

import numpy as np
import pytest

from service.training.range_suggest import Tracker, lr_ramp, skip_steps, smooth, suggest, windows

N = 100
LRS = lr_ramp(1e-5, 10.0, N)
STEPS = np.arange(N)


def sigmoid_drop(start: float, drop: float, n: int = N) -> list[float]:
    """A loss that falls by `drop` around step 50, noise-free."""
    return [start - drop / (1 + math.exp(-(i - 50) / 5)) for i in range(n)]


def noisy_drop(sd: float, seed: int = 0) -> list[float]:
    """2.0 falling by 0.2 (10 %) around step 50, plus Gaussian batch noise of `sd`."""
    rng = np.random.default_rng(seed)
    return list(2.0 - 0.2 / (1 + np.exp(-(STEPS - 50) / 5)) + sd * rng.standard_normal(N))


def flat_from(f: int, n: int = N) -> list[float]:
    """Falls linearly from 2.5 to 1.0 at step f, then stays at exactly 1.0: the filtered curve
    first reaches its minimum once a whole slope window (±5 steps) lies on the flat part, at
    step f + 5."""
    return [2.5 - 1.5 * i / f if i < f else 1.0 for i in range(n)]


# --- the noise guard -------------------------------------------------------------------------


def test_a_drop_smaller_than_twice_the_batch_noise_gets_no_suggestion() -> None:
    s = suggest(LRS, noisy_drop(0.15))
    assert s.lr is None and s.min_loss_lr is None and s.steepest_lr is None
    noise = s.details["noise"]
    drop = s.details["filtered_start_loss"] - s.details["filtered_min_loss"]
    assert noise < drop < 2 * noise  # more than the noise once, less than twice
    assert drop > 0.05 * s.details["filtered_start_loss"]  # the 5 % rule alone would pass it
    assert s.rule == (
        f"no suggestion: the loss fell only {drop:.3g} from "
        f"{s.details['filtered_start_loss']:.3g} (less than 5% or than twice the batch noise "
        f"{noise:.3g}); max_lr is too low, raise it"
    )


def test_a_drop_just_above_twice_the_batch_noise_gets_a_suggestion() -> None:
    s = suggest(LRS, noisy_drop(0.09))
    noise = s.details["noise"]
    drop = s.details["filtered_start_loss"] - s.details["filtered_min_loss"]
    assert 2 * noise < drop < 3 * noise
    assert s.lr is not None and s.lr > 0


@pytest.mark.parametrize(
    ("start", "drop", "suggested"),
    [
        (2.0, 0.08, False),  # 4 % of the loss: not a descent
        (2.0, 0.12, True),  # 6 %
        # Losses can be negative (a log-likelihood): 5 % of its size, not of its signed value.
        (-1.0, 0.03, False),
        (-1.0, 0.2, True),
    ],
)
def test_a_noise_free_drop_must_take_off_five_percent(
    start: float, drop: float, suggested: bool
) -> None:
    s = suggest(LRS, sigmoid_drop(start, drop))
    assert s.details["noise"] == 0.0
    assert (s.lr is not None) is suggested
    if not suggested:
        assert "max_lr is too low, raise it" in s.rule


def test_the_noise_is_measured_up_to_the_minimum_only() -> None:
    """A long, wild divergence after the minimum must not count as noise of the descent."""
    descent = flat_from(30, 36)  # clean: falls to 1.0 at step 30
    rng = np.random.default_rng(3)
    wild = list(1.5 + 0.02 * np.arange(64) + 1.0 * np.abs(rng.standard_normal(64)))
    s = suggest(LRS, descent + wild)
    assert s.lr is not None and s.min_loss_step is not None and s.min_loss_step < 40
    assert s.details["noise"] < 0.01


# --- "still falling at the end" --------------------------------------------------------------


@pytest.mark.parametrize(
    ("flat_from_step", "min_step", "warned"),
    [
        (87, 92, False),
        (88, 93, False),
        # The minimum within half a slope window (11 // 2 = 5 steps) of the last step, 99.
        (89, 94, True),
        (90, 95, True),
        (92, 97, True),
    ],
)
def test_still_falling_warning_starts_half_a_slope_window_from_the_end(
    flat_from_step: int, min_step: int, warned: bool
) -> None:
    assert windows(N)[1] == 11
    s = suggest(LRS, flat_from(flat_from_step))
    assert s.lr is not None and s.min_loss_step == min_step
    assert (
        s.rule.endswith(
            ". The loss was still falling at the end: a higher max_lr may show a larger LR"
        )
        is warned
    )


@pytest.mark.parametrize(("flat_from_step", "warned"), [(48, False), (49, True)])
def test_still_falling_is_measured_from_the_end_of_a_cut_trace(
    flat_from_step: int, warned: bool
) -> None:
    """A trace cut at step 60 of 100 planned: "the end" is its last step, 59."""
    s = suggest(LRS[:60], flat_from(flat_from_step, 60), N)
    assert s.lr is not None and s.min_loss_step == flat_from_step + 5
    assert ("still falling at the end" in s.rule) is warned
    # The step that stopped it (non-finite) is not part of the trace's end.
    s = suggest(LRS[:61], [*flat_from(flat_from_step, 60), math.nan], N)
    assert s.lr is not None and s.min_loss_step == flat_from_step + 5
    assert ("still falling at the end" in s.rule) is warned


def test_a_test_that_diverged_is_never_told_to_raise_max_lr() -> None:
    """Falling to the step that diverged (a spike the tracker stopped on): that step is the
    divergence's, left out, and the note says the loss fell until the divergence, not that a
    higher max_lr may help (it went past its minimum). A trace that barely fell before it
    diverged asks for a narrower ramp, not a higher max_lr."""
    falling = [2.5 - 1.5 * i / 60 for i in range(60)] + [300.0]
    s = suggest(LRS[:61], falling, N, diverged=True)
    assert s.lr is not None and s.min_loss_step is not None and s.min_loss_step < 60
    assert "still falling" not in s.rule and "raise" not in s.rule
    assert s.rule.endswith(
        ". The loss fell until the test diverged at step 60: its minimum is where the divergence "
        "began"
    )
    flat = [2.0 - 0.01 * i / 30 for i in range(30)] + [300.0]  # 0.5 %: too little
    s = suggest(LRS[:31], flat, N, diverged=True)
    assert s.lr is None and "max_lr is too low" not in s.rule
    assert "before it diverged at step 30" in s.rule and "narrow [min_lr, max_lr]" in s.rule
    # The same traces, not diverged (cut by a cancel, say): the advice is as before.
    assert "max_lr is too low, raise it" in suggest(LRS[:30], flat[:30], N).rule


# --- the suggestion and its sentence ---------------------------------------------------------


def test_the_suggestion_names_its_steps_and_windows() -> None:
    s = suggest(LRS, flat_from(60))
    assert s.min_loss_step == 65 and s.min_loss_lr == LRS[65]
    assert s.steepest_step is not None and s.steepest_lr == LRS[s.steepest_step]
    assert 10 <= s.steepest_step <= 65
    assert s.lr == min(s.steepest_lr, LRS[65] / 10)
    assert s.details["skipped_steps"] == 10
    assert s.details["median_window"] == 7 and s.details["slope_window"] == 11
    assert s.details["steps_used"] == 90
    assert s.details["filtered_min_loss"] == 1.0
    assert s.rule.startswith(
        "the smaller of the steepest descent of the loss and a tenth of the LR at its minimum; "
        "here "
    )
    assert s.rule.endswith(
        "Batch losses median-filtered over 7 steps, slopes of loss vs log10(lr) fitted over 11 "
        "steps; the first 10 steps and everything after the minimum ignored"
    )
    capped = s.lr == LRS[65] / 10
    if capped:
        assert f"= the minimum's LR {LRS[65]:.3g} (step 65) / 10, below the steepest" in s.rule
    else:
        assert f"{s.lr:.3g} = the steepest descent (step {s.steepest_step}), below" in s.rule


def test_exactly_enough_usable_steps() -> None:
    """The slope window needs 11 usable steps after the skipped 10: 21 is enough, 20 is not."""
    losses = flat_from(15, 21)
    assert suggest(LRS[:20], losses[:20], N).lr is None
    rule = suggest(LRS[:20], losses[:20], N).rule
    assert rule == (
        "no suggestion: only 10 usable steps after the first 10 (at least 11 are needed); run "
        "more steps, or lower max_lr if the test diverged early"
    )
    assert suggest(LRS[:21], losses, N).lr is not None


def test_a_rising_curve_says_where_it_started() -> None:
    rising = [1.0 + 0.01 * i for i in range(N)]
    s = suggest(LRS, rising)
    assert s.lr is None
    assert s.rule == (
        f"no suggestion: the loss never fell below its level at step 10 (lr {LRS[10]:.3g}); "
        "min_lr is already too high, lower it"
    )


def test_a_non_finite_loss_ends_the_usable_trace() -> None:
    losses = flat_from(60)
    losses[70] = math.inf
    s = suggest(LRS, losses)
    assert s.details["steps_used"] == 60
    assert s.min_loss_step is not None and s.min_loss_step <= 69


# --- the tracker's divergence stop -----------------------------------------------------------


def test_divergence_needs_strictly_more_than_the_factor() -> None:
    t = Tracker(beta=0.0, diverge_factor=4.0, skip=0)
    assert t.add(2.0) == 2.0 and t.stopped is None
    assert t.add(8.0) == 8.0 and t.stopped is None  # exactly 4× the best: not yet
    assert t.add(9.0) == 9.0
    assert t.stopped == "diverged at step 2 (smoothed loss 4.5× the best, 9 vs 2)"
    with pytest.raises(AssertionError, match="the test already stopped"):
        t.add(1.0)


def test_the_best_starts_counting_at_the_skip() -> None:
    t = Tracker(beta=0.0, diverge_factor=2.0, skip=2)
    t.add(0.1)  # before the skip: not a best to compare with
    t.add(0.1)
    t.add(1.0)  # step 2: the first best
    t.add(1.9)
    assert t.stopped is None and t.best == 1.0
    t.add(2.1)
    assert t.stopped is not None and t.stopped.startswith("diverged at step 4")


def test_smooth_uses_the_planned_steps_for_the_skip() -> None:
    losses = [1.0, 1.0, 10.0, 1.0]
    assert skip_steps(100) == 10 and skip_steps(4) == 1 and skip_steps(10) == 1
    # Planned 100: the skip is 10, so step 2's spike cannot stop the test.
    assert smooth(losses, 0.0, 4.0, steps=100) == (losses, None)
    # Planned 4 (the default, the trace's length): the skip is 1 and the spike stops it.
    out, stopped = smooth(losses, 0.0, 4.0)
    assert stopped is not None and stopped.startswith("diverged at step 2") and len(out) == 3


def test_ramp_of_two_steps_is_its_ends() -> None:
    assert lr_ramp(0.001, 1.0, 2) == [0.001, 1.0]
    ramp = lr_ramp(1e-4, 1.0, 5)
    assert ramp == pytest.approx([1e-4, 1e-3, 1e-2, 1e-1, 1.0], rel=1e-12)


def test_three_spikes_in_a_row_do_not_move_the_suggestion() -> None:
    """The median window of 7 removes up to 3 consecutive spikes, anywhere in the descent."""
    clean = flat_from(60)
    base = suggest(LRS, clean)
    for start in (62, 70, 80):  # right after the descent, and in the flat part
        spiky = list(clean)
        for i in range(start, start + 3):
            spiky[i] *= 6
        got = suggest(LRS, spiky)
        assert got.lr == base.lr, start
        assert got.min_loss_step is not None and 65 <= got.min_loss_step <= 68, start
        assert got.details["filtered_min_loss"] == 1.0


def test_no_suggestion_still_reports_what_was_analysed() -> None:
    empty = suggest([], [], N)
    assert empty.details == {
        "skipped_steps": 10, "median_window": 7, "slope_window": 11, "steps_used": 0,
    }  # fmt: skip
    rising = suggest(LRS, [1.0 + 0.01 * i for i in range(N)])
    assert rising.details["steps_used"] == 90
    assert rising.details["filtered_start_loss"] == rising.details["filtered_min_loss"]
    flat = suggest(LRS, sigmoid_drop(2.0, 0.08))
    assert flat.details["steps_used"] == 90 and "filtered_start_loss" in flat.details


def test_the_steepest_slope_is_reported_per_decade() -> None:
    """1.5 of loss over the steps 0..60, i.e. over 60 · 6/99 decades: -4.125 per decade."""
    s = suggest(LRS, flat_from(60))
    assert s.details["steepest_slope_per_decade"] == pytest.approx(-1.5 / (60 * 6 / 99))

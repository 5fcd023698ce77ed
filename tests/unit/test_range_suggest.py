"""The LR range test's pure part: the ramp, the smoothed loss and its divergence stop, and the
suggestion, on synthetic curves whose answer is known (no servers)."""

from __future__ import annotations

import itertools
import math

import numpy as np
import pytest

from service.training.range_suggest import Tracker, lr_ramp, skip_steps, smooth, suggest, windows

N = 100
LRS = lr_ramp(1e-5, 10.0, N)
X = np.log10(LRS)


def curve(
    x: np.ndarray, centre: float = -1.0, width: float = 0.25, cliff: float = 0.0
) -> np.ndarray:
    """A range-test loss: 2.3 falling to 0.3 around lr 10^centre, then rising steeply from
    around lr 10^cliff (a divergence)."""
    return 2.3 - 2.0 / (1 + np.exp(-(x - centre) / width)) + 0.05 * np.exp(4.0 * (x - cliff))


def expected(losses: np.ndarray) -> tuple[int, int]:
    """(step of the minimum, step of the steepest descent) of a noiseless curve, after the
    skipped start."""
    skip = skip_steps(N)
    i_min = skip + int(np.argmin(losses[skip:]))
    slope = np.gradient(losses, X)
    return i_min, skip + int(np.argmin(slope[skip : i_min + 1]))


def test_ramp_is_exponential_from_min_to_max() -> None:
    assert LRS[0] == 1e-5 and LRS[-1] == 10.0 and len(LRS) == N
    ratios = [b / a for a, b in itertools.pairwise(LRS)]
    assert ratios == pytest.approx([10 ** (6 / 99)] * 99, rel=1e-12)
    assert LRS[33] == pytest.approx(1e-5 * 1e6 ** (33 / 99), rel=1e-12)
    # Computed in log space: a ratio that overflows a float still gives a finite ramp.
    wide = lr_ramp(1e-300, 1e300, 11)
    assert all(math.isfinite(v) and v > 0 for v in wide) and wide[5] == pytest.approx(1.0)


def test_smoothed_loss_is_the_bias_corrected_ema() -> None:
    losses = [2.0, 1.0, 3.0, 0.5]
    smoothed, stopped = smooth(losses, beta=0.9, diverge_factor=100.0)
    avg, want = 0.0, []
    for i, v in enumerate(losses):
        avg = 0.9 * avg + 0.1 * v
        want.append(avg / (1 - 0.9 ** (i + 1)))
    assert smoothed == pytest.approx(want, rel=1e-12) and stopped is None
    assert smooth([1.7] * 20, 0.98, 4.0)[0] == pytest.approx([1.7] * 20, rel=1e-12)  # unbiased
    assert smooth(losses, beta=0.0, diverge_factor=100.0)[0] == losses  # beta 0: the raw loss


def test_divergence_stops_at_the_first_step_past_the_factor() -> None:
    losses = [1.0] * 30 + [1.0 * 1.5**k for k in range(1, 40)]
    smoothed, stopped = smooth(losses, beta=0.5, diverge_factor=4.0)
    # By hand: the first step whose smoothed loss exceeds 4 × the best smoothed loss (1.0).
    first = next(i for i, s in enumerate(smooth(losses, 0.5, 1e9)[0]) if s is not None and s > 4)
    assert len(smoothed) == first + 1  # the trace ends at (and includes) the divergence step
    assert stopped is not None and stopped.startswith(f"diverged at step {first} (smoothed loss")
    assert "× the best" in stopped


def test_a_non_finite_loss_stops_at_once() -> None:
    smoothed, stopped = smooth([2.0, 1.9, math.nan, 1.0], 0.98, 4.0)
    assert smoothed[-1] is None and len(smoothed) == 3 and stopped == "non-finite loss at step 2"
    assert smooth([2.0, math.inf], 0.98, 4.0)[1] == "non-finite loss at step 1"


def test_spikes_in_the_first_steps_do_not_stop_the_test() -> None:
    # Before the skip the bias-corrected EMA averages a few batches: one bad batch would read
    # as a 4× divergence. The stop and its best start counting at skip_steps(N).
    losses = [2.3, 40.0, 2.3, 30.0, 2.3] + [2.3] * (N - 5)
    smoothed, stopped = smooth(losses, 0.98, 4.0, steps=N)
    assert stopped is None and len(smoothed) == N
    tracker = Tracker(0.98, 4.0, skip=0)  # without the skip it would have stopped at step 1
    tracker.add(2.3)
    tracker.add(40.0)
    assert tracker.stopped is not None and tracker.stopped.startswith("diverged at step 1")


@pytest.mark.parametrize(
    ("centre", "cliff"),
    [(-1.0, 0.0), (-2.5, -1.0), (-3.5, 0.5)],
)
def test_clean_curve_gives_the_smaller_of_steepest_and_a_tenth_of_the_minimum(
    centre: float, cliff: float
) -> None:
    losses = curve(X, centre=centre, cliff=cliff)
    i_min, i_steep = expected(losses)
    s = suggest(LRS, list(losses))
    assert s.min_loss_step is not None and s.steepest_step is not None
    assert abs(s.min_loss_step - i_min) <= 2 and abs(s.steepest_step - i_steep) <= 1
    assert s.lr == pytest.approx(min(LRS[s.steepest_step], LRS[s.min_loss_step] / 10))
    assert s.lr == min(s.steepest_lr or 0, (s.min_loss_lr or 0) / 10)
    assert "steepest descent" in s.rule and "a tenth" in s.rule and "first 10 steps" in s.rule


def test_the_steepest_descent_wins_when_it_is_below_a_tenth_of_the_minimum() -> None:
    # A sharp drop at 1e-4, then a slow, long decline to a minimum near lr 1.
    slow = 0.3 - 0.2 / (1 + np.exp(-(X + 1.0) / 1.0))
    losses = 2.3 - 2.0 / (1 + np.exp(-(X + 4.0) / 0.2)) + (slow - 0.3) + 0.05 * np.exp(4 * X)
    s = suggest(LRS, list(losses))
    assert s.lr == s.steepest_lr and s.lr == pytest.approx(1e-4, rel=0.35)
    assert s.lr is not None and s.min_loss_lr is not None and s.lr < s.min_loss_lr / 10
    assert f"{s.lr:.3g} = the steepest descent" in s.rule


def test_big_spikes_in_the_first_steps_do_not_move_the_suggestion() -> None:
    clean = curve(X)
    rng = np.random.default_rng(0)
    noisy = clean * (1 + 0.05 * rng.standard_normal(N))  # batch-to-batch noise
    spiky = noisy.copy()
    spiky[[1, 2, 3, 5, 8]] *= 8  # the known failure: a drop after early spikes looks steepest
    spiky[[20, 33, 34, 47]] *= 5  # and isolated spikes later on, up to two in a row
    base = suggest(LRS, list(noisy))
    got = suggest(LRS, list(spiky))
    assert got.lr == base.lr and got.rule == base.rule
    assert base.lr == pytest.approx(suggest(LRS, list(clean)).lr, rel=0.5)  # ±1 step of 6 dec.
    # What a naive steepest-gradient pick on the EMA does with the same trace: the spike.
    ema = np.array(smooth(list(spiky), 0.98, 1e9)[0], dtype=float)
    naive = int(np.argmin(np.gradient(ema, X)[: int(np.argmin(ema)) + 1]))
    assert naive < 10 and got.steepest_step is not None and got.steepest_step > 30


def test_a_trace_cut_at_its_divergence_is_read_up_to_the_cut() -> None:
    losses = list(curve(X, centre=-2.0, cliff=-1.0))
    smoothed, stopped = smooth(losses, 0.98, 4.0)
    assert stopped is not None and stopped.startswith("diverged") and len(smoothed) < N
    n = len(smoothed)
    cut = suggest(LRS[:n], losses[:n], N)
    assert cut.lr is not None and cut.min_loss_step is not None and cut.min_loss_step < n
    # A trailing non-finite loss (the step that stopped it) is left out, not read as a value.
    assert suggest(LRS[: n + 1], [*losses[:n], math.nan], N).lr == cut.lr


def test_a_curve_that_never_diverges_still_gets_a_suggestion_and_a_warning() -> None:
    still_falling = 2.3 - 2.0 / (1 + np.exp(-(X - 0.5) / 0.4))
    assert smooth(list(still_falling), 0.98, 4.0)[1] is None
    s = suggest(LRS, list(still_falling))
    assert s.lr is not None and s.min_loss_step is not None and s.min_loss_step >= N - 6
    assert s.lr == pytest.approx(s.min_loss_lr / 10)  # type: ignore[operator]
    assert "still falling at the end" in s.rule and "higher max_lr" in s.rule


def test_too_few_points_give_no_suggestion_and_say_why() -> None:
    _, w_slope = windows(N)
    s = suggest(LRS[:15], list(curve(X)[:15]), N)
    assert s.lr is None and s.min_loss_lr is None
    assert f"only {15 - skip_steps(N)} usable steps" in s.rule and f"{w_slope}" in s.rule
    assert suggest([], [], N).lr is None
    short = suggest(LRS[:3], [2.3, 2.2, math.nan], N)
    assert short.lr is None and "only 0 usable steps" in short.rule


def test_a_flat_curve_asks_for_a_higher_max_lr() -> None:
    rng = np.random.default_rng(1)
    flat = 2.3 + 0.02 * rng.standard_normal(N)
    s = suggest(LRS, list(flat))
    assert s.lr is None and "max_lr is too low" in s.rule


def test_a_curve_that_only_rises_asks_for_a_lower_min_lr() -> None:
    rising = 0.5 + 0.05 * np.exp(1.2 * (X + 5))
    s = suggest(LRS, list(rising))
    assert s.lr is None and "min_lr is already too high" in s.rule


def test_windows_scale_with_the_planned_steps() -> None:
    assert windows(10) == (7, 7)
    assert windows(100) == (7, 11)
    assert windows(200) == (11, 21)
    assert windows(10_000) == (501, 1001)

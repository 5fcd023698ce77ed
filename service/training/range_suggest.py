"""The LR range test's arithmetic, pure (DESIGN.md): the LR ramp, the smoothed loss and the
divergence stop the worker records step by step, and the suggested LR read from the trace.

Why the suggestion does not read the recorded smoothed loss: a bias-corrected EMA with beta 0.98
averages about the last 50 steps, so it lags the batch loss by tens of steps, and on a ramp of
100 steps over 6 decades that is 1 to 2 decades of LR. Its minimum and its steepest point sit
at LRs 2 to 4 times too high (measured on digits), which is why popular tools' suggestions run
hot. The suggestion reads the batch losses through centred (zero-lag) filters instead:

1. ignore the first 10% of the steps: at the bottom of the ramp nothing is learnt yet and a few
   unlucky batches there (the known failure: a spike in the first steps reads as the steepest
   descent) say nothing about the LR;
2. median-filter the losses (a window of ~5% of the steps, at least 7): removes spikes of up to
   3 consecutive batches, and, unlike a mean, keeps a monotone descent exactly where it is;
3. the minimum of that curve after a centred moving average (~10% of the steps): where a larger
   LR stops helping. Everything after it is the divergence and is ignored;
4. the steepest descent between the two: the most negative least-squares slope of the filtered
   loss against log10(lr) over a centred window (~10% of the steps), so no single point decides;
5. suggest the smaller of the steepest-descent LR and a tenth of the LR at the minimum. On a
   sharp curve the steepest descent sits right at the cliff (on digits with SGD it is 0.43× the
   minimum's LR), so it alone leaves no margin; a tenth of the minimum keeps 10× from where a
   larger LR stops helping. On a long, slow descent the steepest point is the lower one and wins.
   The smaller one trains digits well with SGD and with Adam, and stayed put under early spikes
   over 36 seeds/batch sizes/lengths (tests/integration/test_lr_range.py,
   docs/lr-range-test.md).
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np

SKIP_FRACTION = 0.1  # leading share of the steps the suggestion and the divergence stop ignore
MEDIAN_FRACTION = 0.05  # median filter window, as a share of the planned steps
SLOPE_FRACTION = 0.1  # slope and moving-average window, as a share of the planned steps
MIN_WINDOW = 7  # the median window removes up to (7 - 1) / 2 = 3 consecutive spikes
MIN_DROP = 0.05  # a descent must take off at least 5% of the loss where the analysis starts
MIN_LR_DIVISOR = 10.0  # the suggestion never exceeds the minimum's LR / 10


def lr_ramp(min_lr: float, max_lr: float, steps: int) -> list[float]:
    """lr_i = min_lr·(max_lr/min_lr)^(i/(steps-1)), i = 0..steps-1, computed in log space so
    that extreme ratios cannot overflow; the ends are exactly min_lr and max_lr."""
    lo, hi = math.log(min_lr), math.log(max_lr)
    lrs = [math.exp(lo + (hi - lo) * i / (steps - 1)) for i in range(steps)]
    lrs[0], lrs[-1] = min_lr, max_lr
    return lrs


def skip_steps(steps: int) -> int:
    return math.ceil(SKIP_FRACTION * steps)


def _odd(n: int) -> int:
    return n if n % 2 else n + 1


def windows(steps: int) -> tuple[int, int]:
    """(median window, slope window) in steps for a test of `steps` planned steps."""
    median = _odd(max(MIN_WINDOW, round(MEDIAN_FRACTION * steps)))
    slope = _odd(max(MIN_WINDOW, round(SLOPE_FRACTION * steps)))
    return median, slope


@dataclass
class Tracker:
    """The bias-corrected EMA of the batch loss and the divergence stop, fed one step at a time
    by the worker (and by tests), so the recorded trace and its cut are computed in one place.

    Divergence: a non-finite loss at any step, or, from step `skip` on, a smoothed loss above
    `diverge_factor` × the best smoothed loss since `skip`. Before `skip` the bias-corrected
    average covers only a handful of batches, so one unlucky batch would read as a divergence
    (and would set a best no later step can be compared with fairly)."""

    beta: float
    diverge_factor: float
    skip: int
    step: int = 0  # steps seen
    avg: float = 0.0
    best: float = math.inf
    stopped: str | None = None  # why the test stopped early; None while it goes on

    def add(self, loss: float) -> float | None:
        """Record the batch loss of the next step; return its smoothed value (None when the loss
        is not finite). Sets `stopped` when this step ends the test."""
        assert self.stopped is None, "the test already stopped"
        i = self.step
        self.step += 1
        if not math.isfinite(loss):
            self.stopped = f"non-finite loss at step {i}"
            return None
        self.avg = self.beta * self.avg + (1 - self.beta) * loss
        smoothed = self.avg / (1 - self.beta ** (i + 1))
        if i >= self.skip:
            self.best = min(self.best, smoothed)
            if smoothed > self.diverge_factor * self.best:
                ratio = smoothed / self.best
                self.stopped = (
                    f"diverged at step {i} (smoothed loss {ratio:.1f}× the best, "
                    f"{smoothed:.4g} vs {self.best:.4g})"
                )
        return smoothed


def smooth(
    losses: Sequence[float], beta: float, diverge_factor: float, steps: int | None = None
) -> tuple[list[float | None], str | None]:
    """The smoothed losses of a whole trace, cut after the step that stops it, and why it
    stopped (None: it ran to the end). `steps`: the planned steps (default: all of them)."""
    tracker = Tracker(beta, diverge_factor, skip_steps(steps or len(losses)))
    out: list[float | None] = []
    for loss in losses:
        out.append(tracker.add(loss))
        if tracker.stopped:
            break
    return out, tracker.stopped


@dataclass
class Suggestion:
    lr: float | None  # None: the trace cannot support a suggestion; `rule` says why
    rule: str
    min_loss_lr: float | None = None
    min_loss_step: int | None = None
    steepest_lr: float | None = None
    steepest_step: int | None = None
    details: dict[str, Any] = field(default_factory=dict)


def _median_filter(y: np.ndarray, w: int) -> np.ndarray:
    h, n = w // 2, len(y)
    return np.array([np.median(y[max(0, i - h) : i + h + 1]) for i in range(n)])


def _moving_average(y: np.ndarray, w: int) -> np.ndarray:
    h, n = w // 2, len(y)
    return np.array([y[max(0, i - h) : i + h + 1].mean() for i in range(n)])


def _slopes(x: np.ndarray, y: np.ndarray, w: int) -> np.ndarray:
    """Least-squares slope of y against x over a centred window (shorter at the ends)."""
    h, n = w // 2, len(y)
    out = np.empty(n)
    for i in range(n):
        xs, ys = x[max(0, i - h) : i + h + 1], y[max(0, i - h) : i + h + 1]
        dx = xs - xs.mean()
        spread = float((dx * dx).sum())  # 0 only if the LRs round to one value: no slope
        out[i] = float((dx * (ys - ys.mean())).sum()) / spread if spread > 0 else 0.0
    return out


def _g(v: float) -> str:
    return f"{v:.3g}"


def suggest(
    lrs: Sequence[float], losses: Sequence[float], steps: int | None = None,
    diverged: bool = False,
) -> Suggestion:  # fmt: skip
    """The suggested LR of a range test from its LRs and batch losses (step i = index i), cut at
    the divergence or not. `steps`: the planned steps, which size the windows and the skipped
    start (default: the length of the trace). Non-finite losses end the usable trace.
    `diverged`: the test stopped because its loss diverged (`Tracker.stopped`, or an LR the
    weights could not hold): the step that stopped it is the divergence's, not the descent's, so
    it is left out, and the advice no longer asks for a higher max_lr (the loss went past its
    minimum), but for a ramp that shows the descent before it."""
    n_planned = steps or len(lrs)
    skip = skip_steps(n_planned)
    w_med, w_slope = windows(n_planned)
    usable = next((i for i, v in enumerate(losses) if not math.isfinite(v)), len(losses))
    if diverged and usable == len(losses):  # a finite last step: the one that stopped it
        usable -= 1
    n = min(usable, len(lrs))
    details: dict[str, Any] = {
        "skipped_steps": skip,
        "median_window": w_med,
        "slope_window": w_slope,
        "steps_used": max(0, n - skip),
    }
    if n - skip < w_slope:
        return Suggestion(
            None,
            f"no suggestion: only {max(0, n - skip)} usable steps after the first {skip} "
            f"(at least {w_slope} are needed); run more steps, or lower max_lr if the test "
            "diverged early",
            details=details,
        )
    # The skipped steps are left out before filtering, so that not even a window reaches them.
    x = np.log10(np.asarray(lrs[skip:n], dtype=np.float64))
    y = np.asarray(losses[skip:n], dtype=np.float64)
    med = _median_filter(y, w_med)
    level = _moving_average(med, w_slope)
    k_min = int(np.argmin(level))
    start, drop = float(level[0]), float(level[0] - level[k_min])
    # Robust sd of the batch losses around the filtered curve, up to the minimum (the noise
    # after it is the divergence's, not the descent's).
    noise = 1.4826 * float(np.median(np.abs(y[: k_min + 1] - med[: k_min + 1])))
    details.update(filtered_start_loss=start, filtered_min_loss=float(level[k_min]), noise=noise)
    if k_min == 0:
        return Suggestion(
            None,
            f"no suggestion: the loss never fell below its level at step {skip} "
            f"(lr {_g(lrs[skip])}); min_lr is already too high, lower it",
            details=details,
        )
    if drop <= max(MIN_DROP * abs(start), 2 * noise):
        advice = (
            f"before it diverged at step {len(losses) - 1}: the ramp went from too small to too "
            "large within a few steps; narrow [min_lr, max_lr] or run more steps"
            if diverged
            else "max_lr is too low, raise it"
        )
        return Suggestion(
            None,
            f"no suggestion: the loss fell only {_g(drop)} from {_g(start)} (less than 5% or "
            f"than twice the batch noise {_g(noise)}); {advice}",
            details=details,
        )
    slopes = _slopes(x, med, w_slope)
    k_steep = int(np.argmin(slopes[: k_min + 1]))
    i_min, i_steep = skip + k_min, skip + k_steep
    lr_min, lr_steep = float(lrs[i_min]), float(lrs[i_steep])
    details["steepest_slope_per_decade"] = float(slopes[k_steep])
    capped = lr_min / MIN_LR_DIVISOR < lr_steep
    chosen = lr_min / MIN_LR_DIVISOR if capped else lr_steep
    here = (
        f"{_g(chosen)} = the minimum's LR {_g(lr_min)} (step {i_min}) / 10, below the steepest "
        f"descent at {_g(lr_steep)} (step {i_steep})"
        if capped
        else f"{_g(chosen)} = the steepest descent (step {i_steep}), below the minimum's LR "
        f"{_g(lr_min)} (step {i_min}) / 10"
    )
    rule = (
        f"the smaller of the steepest descent of the loss and a tenth of the LR at its minimum; "
        f"here {here}. Batch losses median-filtered over {w_med} steps, slopes of loss vs "
        f"log10(lr) fitted over {w_slope} steps; the first {skip} steps and everything after the "
        "minimum ignored"
    )
    if i_min >= n - 1 - w_slope // 2:
        rule += (
            f". The loss fell until the test diverged at step {len(losses) - 1}: its minimum is "
            "where the divergence began"
            if diverged
            else ". The loss was still falling at the end: a higher max_lr may show a larger LR"
        )
    return Suggestion(
        chosen,
        rule,
        min_loss_lr=lr_min,
        min_loss_step=i_min,
        steepest_lr=lr_steep,
        steepest_step=i_steep,
        details=details,
    )

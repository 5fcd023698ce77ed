"""Rules that stop a sweep's weak runs early (CONTRACT.md "Sweeps that stop weak runs early"), as
pure functions of the values stored for the sweep's runs: the same inputs give the same decision
on any worker, after any crash. Each returns a `Verdict` with the numbers it compared and the
sentence a person reads; the caller stores it (service/sweeps/pruning.py).

- successive halving (synchronous): at rung epoch e, when every live run of its group has reached
  e or ended, the best max(1, ⌊n/η⌋) of the n that reached it continue (ties: lower id first).
- ASHA (asynchronous): a run reaching a rung continues iff its value is among the best
  max(1, ⌊n/η⌋) of the n values recorded at that rung so far, itself included.
- median: after epoch e ≥ min_epochs, a run stops if its best so far is worse than the median of
  the other runs' best values up to e, over at least `min_runs` runs that reached e.
- hyperband: brackets of successive halving (Li et al. 2018); a trial's bracket is drawn by the
  seeded rule in `bracket_of`, bracket b's rungs start at r·η^b.
"""

from __future__ import annotations

import functools
import math
import random
import statistics
from collections.abc import Sequence
from dataclasses import dataclass

RULES = ("successive_halving", "asha", "median", "hyperband")
SYNCHRONOUS = ("successive_halving", "hyperband")


@dataclass(frozen=True)
class Verdict:
    experiment_id: int
    epoch: int
    rung: int | None  # the rung's index (0: the first), None for the median rule
    value: float | None
    cutoff: float | None  # the worst value that continues (median: the median)
    compared: int  # how many values the rule compared, this run's included
    stop: bool
    reason: str

    @property
    def decision(self) -> str:
        return "stop" if self.stop else "continue"


def rungs(min_epochs: int, eta: int, epochs: int, bracket: int = 0) -> list[int]:
    """Rung epochs r·η^(bracket + k) below `epochs` (the last epoch is the end, not a rung)."""
    out, e = [], min_epochs * eta**bracket
    while e < epochs:
        out.append(e)
        e *= eta
    return out


def brackets(min_epochs: int, eta: int, epochs: int) -> int:
    """Hyperband's s_max + 1: how many brackets a run of `epochs` epochs has room for."""
    return max(1, len(rungs(min_epochs, eta, epochs)) + 1)


def bracket_weights(count: int, eta: int) -> list[int]:
    """Trials per bracket in Li et al.'s proportions: bracket b (s = s_max - b pruning rounds)
    gets ⌈(s_max + 1) / (s + 1) · η^s⌉ shares."""
    s_max = count - 1
    return [math.ceil((s_max + 1) / (s_max - b + 1) * eta ** (s_max - b)) for b in range(count)]


@functools.lru_cache(maxsize=16384)
def bracket_of(index: int, seed: int, count: int, eta: int) -> int:
    """The bracket of a group's `index`-th trial (by id): a draw weighted by `bracket_weights`
    from random.Random(f"{seed}:{index}"), so it never depends on when or where it is asked.
    Kept: a hyperband pruner asks for every trial's bracket at each pause, and 1,000 seeded
    draws cost ~13 ms."""
    rng = random.Random(f"{seed}:{index}")
    return rng.choices(range(count), weights=bracket_weights(count, eta))[0]


def _key(value: float | None, mode: str) -> float:
    """Sort key, best first; a missing or non-finite value ranks last."""
    if value is None or not math.isfinite(value):
        return math.inf
    return value if mode == "min" else -value


def _ranked(
    values: Sequence[tuple[int, float | None]], mode: str
) -> list[tuple[int, float | None]]:
    return sorted(values, key=lambda iv: (_key(iv[1], mode), iv[0]))


def _fmt(x: float | None) -> str:
    return "n/a" if x is None else f"{x:.4g}"


def successive_halving(
    values: Sequence[tuple[int, float | None]], eta: int, mode: str, metric: str, epoch: int,
    rung: int,
) -> list[Verdict]:  # fmt: skip
    """One verdict per run that reached the rung: (experiment_id, its `metric` at `epoch`)."""
    n = len(values)
    keep = max(1, n // eta)
    ranked = _ranked(values, mode)
    cutoff = ranked[keep - 1][1]
    out = []
    for place, (exp_id, value) in enumerate(ranked):
        stop = place >= keep
        among = "is not among" if stop else "is among"
        out.append(Verdict(exp_id, epoch, rung, value, cutoff, n, stop,
                           f"{metric} {_fmt(value)} at epoch {epoch} {among} the best {keep} of "
                           f"{n} at this rung (cutoff {_fmt(cutoff)}): "
                           f"{'stopped' if stop else 'continues'}"))  # fmt: skip
    return sorted(out, key=lambda v: v.experiment_id)


def asha(
    experiment_id: int, value: float | None, before: Sequence[tuple[int, float | None]], eta: int,
    mode: str, metric: str, epoch: int, rung: int,
) -> Verdict:  # fmt: skip
    """`before`: the (experiment_id, value) pairs recorded at this rung before this one."""
    values = [*before, (experiment_id, value)]
    n = len(values)
    keep = max(1, n // eta)
    ranked = _ranked(values, mode)
    cutoff = ranked[keep - 1][1]
    stop = [i for i, _ in ranked].index(experiment_id) >= keep
    among = "is not among" if stop else "is among"
    return Verdict(experiment_id, epoch, rung, value, cutoff, n, stop,
                   f"{metric} {_fmt(value)} at epoch {epoch} {among} the best {keep} of the {n} "
                   f"recorded at this rung so far (cutoff {_fmt(cutoff)}): "
                   f"{'stopped' if stop else 'continues'}")  # fmt: skip


def median(
    experiment_id: int, best: float | None, others: Sequence[float], min_runs: int, mode: str,
    metric: str, epoch: int,
) -> Verdict | None:  # fmt: skip
    """`best`: this run's best `metric` up to `epoch`; `others`: the best up to `epoch` of each
    other run that reached it. None while fewer than `min_runs` runs can be compared."""
    finite = [v for v in others if math.isfinite(v)]
    if len(finite) < min_runs:
        return None
    mid = statistics.median(finite)
    stop = _key(best, mode) > _key(mid, mode)
    word = "worse than" if stop else "no worse than"
    return Verdict(experiment_id, epoch, None, best, mid, len(finite) + 1, stop,
                   f"best {metric} {_fmt(best)} up to epoch {epoch} is {word} the median "
                   f"{_fmt(mid)} of {len(finite)} other runs' best up to epoch {epoch}: "
                   f"{'stopped' if stop else 'continues'}")  # fmt: skip

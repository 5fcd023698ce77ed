"""Pure sweep arithmetic: dotted-path overrides, grid and random expansion, the LR decades of a
coarse scan and the finer scan inside the best decade, and the leaderboard's ordering."""

from __future__ import annotations

import copy
import itertools
import math
import random
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from service.training.status import OK, ExperimentStatus

# Final statuses whose metrics a sweep trusts; a run that diverged, failed or was cancelled
# ranks below every run that finished (its best epoch before blowing up is no recommendation).
FINISHED_WELL = OK


@dataclass(frozen=True)
class Distribution:
    kind: str  # "uniform" | "log_uniform" | "int_uniform"
    low: float
    high: float

    def draw(self, rng: random.Random) -> float | int:
        if self.kind == "log_uniform":
            return math.exp(rng.uniform(math.log(self.low), math.log(self.high)))
        if self.kind == "int_uniform":
            return rng.randint(math.ceil(self.low), math.floor(self.high))
        return rng.uniform(self.low, self.high)


Choice = Sequence[Any] | Distribution


def set_path(spec: dict[str, Any], path: str, value: Any) -> dict[str, Any]:
    """A copy of `spec` with the dotted `path` set (`scheduler.params.gamma`); missing mappings
    on the way are created, so a sweep may set params its base spec leaves out. A number picks
    an existing list element (`scheduler.schedulers.1.params.gamma`: a composition's second)."""
    out = copy.deepcopy(spec)
    node: Any = out
    *parents, leaf = path.split(".")
    for i, key in enumerate(parents):
        if isinstance(node, list):
            child = node[_index(node, key, parents[:i])]
        else:
            child = node.get(key)
            if child is None:
                child = node[key] = {}
        if not isinstance(child, dict | list):
            raise ValueError(f"{'.'.join(parents[: i + 1])} is not a mapping")
        node = child
    if isinstance(node, list):
        node[_index(node, leaf, parents)] = value
    else:
        node[leaf] = value
    return out


def _index(items: list[Any], key: str, where: list[str]) -> int:
    if not key.isdigit() or int(key) >= len(items):
        raise ValueError(f"{'.'.join(where)} is a list of {len(items)}: {key!r} is no index in it")
    return int(key)


def grid(parameters: Mapping[str, Sequence[Any]]) -> list[dict[str, Any]]:
    """Every combination, the last parameter varying fastest."""
    names = list(parameters)
    return [
        dict(zip(names, combo, strict=True)) for combo in itertools.product(*parameters.values())
    ]


def random_trials(parameters: Mapping[str, Choice], trials: int, seed: int) -> list[dict[str, Any]]:
    """`trials` independent draws; a list is a uniform choice. Seeded: the same request always
    gives the same trials."""
    rng = random.Random(seed)
    out = []
    for _ in range(trials):
        trial = {}
        for name, choice in parameters.items():
            if isinstance(choice, Distribution):
                trial[name] = choice.draw(rng)
            else:
                trial[name] = choice[rng.randrange(len(choice))]
        out.append(trial)
    return out


def decade_count(min_lr: float, max_lr: float) -> int:
    """How many decades `decades` gives. The logs are subtracted rather than the LRs divided:
    1.7e308 / 1e-6 overflows to infinity, which no floor turns into an integer."""
    return math.floor(math.log10(max_lr) - math.log10(min_lr) + 1e-9) + 1


def decades(min_lr: float, max_lr: float) -> list[float]:
    """min_lr, 10·min_lr, … up to max_lr (inclusive, within rounding)."""
    return [float(f"{min_lr * 10**k:.6g}") for k in range(decade_count(min_lr, max_lr))]


def fine_range(
    scores: Mapping[float, float | None],
    mode: str,
    pruned: Mapping[float, tuple[int, float | None]] | None = None,
    pruner_mode: str = "min",
) -> tuple[float, float, float]:
    """(best coarse LR, low, high): the decade between the best coarse LR and its better
    neighbour (a missing or unusable neighbour loses); with no usable neighbour, the half decade
    on each side. `scores` maps each coarse LR to its score, None when it did not finish well.
    `pruned`: the coarse runs a pruner stopped, (the epoch, the pruner's value there), by LR.
    With a pruner most neighbours of the best run are pruned, and they are still told apart as
    the pruner told them: one that finished well beats one pruned, one pruned later beats one
    pruned earlier, and at the same epoch the better value (`pruner_mode`) wins."""
    usable = {lr: s for lr, s in scores.items() if s is not None}
    if not usable:
        raise ValueError("no coarse run finished well")
    best = min(usable, key=lambda lr: usable[lr] if mode == "min" else -usable[lr])
    lrs = sorted(scores)
    i = lrs.index(best)
    ranked = {lr: _neighbour_rank(lr, usable, pruned or {}, mode, pruner_mode) for lr in lrs}
    below = ranked[lrs[i - 1]] if i > 0 else None
    above = ranked[lrs[i + 1]] if i + 1 < len(lrs) else None
    if below is None and above is None:
        return best, best / math.sqrt(10), best * math.sqrt(10)
    if below is None or (above is not None and above > below):
        return best, best, lrs[i + 1]
    return best, lrs[i - 1], best


def _neighbour_rank(lr: float, usable: Mapping[float, float],
                    pruned: Mapping[float, tuple[int, float | None]], mode: str,
                    pruner_mode: str) -> tuple[int, float, float] | None:  # fmt: skip
    """Larger is better; None: no use as a neighbour (failed, diverged, cancelled)."""
    if lr in usable:
        return 2, 0.0, -usable[lr] if mode == "min" else usable[lr]
    if lr in pruned:
        epoch, value = pruned[lr]
        if value is None or not math.isfinite(value):
            return 1, float(epoch), -math.inf
        return 1, float(epoch), -value if pruner_mode == "min" else value
    return None


def log_interior(low: float, high: float, points: int) -> list[float]:
    """`points` LRs log-spaced strictly inside (low, high): the ends were run already."""
    step = math.log(high / low) / (points + 1)
    return [float(f"{low * math.exp(step * k):.6g}") for k in range(1, points + 1)]


def better(a: float, b: float, mode: str) -> bool:
    return a < b if mode == "min" else a > b


def rank_key(status: str, score: float | None, mode: str) -> tuple[int, float]:
    """Order of the leaderboard: runs that finished well by score, then runs still going (by
    their best so far), then the rest."""
    if score is None or not math.isfinite(score):
        group = 3
    elif status in FINISHED_WELL:
        group = 0
    elif status in (ExperimentStatus.QUEUED, ExperimentStatus.RUNNING, ExperimentStatus.WAITING):
        group = 1
    else:
        group = 2
    value = 0.0 if score is None or not math.isfinite(score) else score
    return group, value if mode == "min" else -value

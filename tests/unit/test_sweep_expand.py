"""Sweep arithmetic, pure: overrides, grid and random expansion, decades and the fine range."""

from __future__ import annotations

import itertools
import math

import pytest

from service.sweeps import expand


def test_set_path_creates_missing_mappings_and_leaves_the_base_alone() -> None:
    base = {"scheduler": {"type": "StepLR", "params": {"step_size": 5}}}
    out = expand.set_path(base, "scheduler.params.gamma", 0.5)
    assert out["scheduler"]["params"] == {"step_size": 5, "gamma": 0.5}
    assert base["scheduler"]["params"] == {"step_size": 5}
    assert expand.set_path({}, "solver.params.momentum", 0.9) == {
        "solver": {"params": {"momentum": 0.9}}
    }
    with pytest.raises(ValueError, match="base_lr is not a mapping"):
        expand.set_path({"base_lr": 0.1}, "base_lr.x", 1)


def test_set_path_indexes_a_compositions_elements() -> None:
    base = {"scheduler": {"type": "SequentialLR", "schedulers": [{"type": "LinearLR"},
                                                                 {"type": "StepLR"}]}}  # fmt: skip
    out = expand.set_path(base, "scheduler.schedulers.1.params.gamma", 0.5)
    assert out["scheduler"]["schedulers"][1] == {"type": "StepLR", "params": {"gamma": 0.5}}
    assert expand.set_path(base, "scheduler.schedulers.0", {"type": "ConstantLR"})["scheduler"][
        "schedulers"
    ] == [{"type": "ConstantLR"}, {"type": "StepLR"}]
    with pytest.raises(ValueError, match=r"scheduler\.schedulers is a list of 2: '2' is no index"):
        expand.set_path(base, "scheduler.schedulers.2.params.gamma", 0.5)


def test_grid_is_the_cartesian_product_last_varying_fastest() -> None:
    trials = expand.grid({"base_lr": [0.1, 0.01], "scheduler.type": ["StepLR", "none", "x"]})
    assert len(trials) == 6
    assert trials[0] == {"base_lr": 0.1, "scheduler.type": "StepLR"}
    assert trials[1] == {"base_lr": 0.1, "scheduler.type": "none"}
    assert trials[3] == {"base_lr": 0.01, "scheduler.type": "StepLR"}


def test_random_is_seeded_and_log_uniform_covers_decades_evenly() -> None:
    params = {
        "base_lr": expand.Distribution("log_uniform", 1e-5, 1.0),
        "solver.type": ["SGD", "Adam"],
        "batch_size": expand.Distribution("int_uniform", 16, 128),
    }
    a = expand.random_trials(params, 2000, seed=7)
    assert a == expand.random_trials(params, 2000, seed=7)
    assert a != expand.random_trials(params, 2000, seed=8)
    lrs = [t["base_lr"] for t in a]
    assert all(1e-5 <= x <= 1.0 for x in lrs)
    per_decade = [sum(1 for x in lrs if 10**-k > x >= 10 ** -(k + 1)) for k in range(5)]
    assert min(per_decade) > 300  # uniform in log10: ~400 each; uniform in lr would put ~0 low
    assert all(isinstance(t["batch_size"], int) and 16 <= t["batch_size"] <= 128 for t in a)
    assert {t["solver.type"] for t in a} == {"SGD", "Adam"}


def test_decades_span_min_to_max_inclusive() -> None:
    assert expand.decades(1e-6, 1.0) == [1e-6, 1e-5, 1e-4, 1e-3, 1e-2, 0.1, 1.0]
    assert expand.decades(3e-4, 0.5) == [3e-4, 3e-3, 3e-2, 0.3]


def test_fine_range_is_the_decade_towards_the_better_neighbour() -> None:
    # best 0.1 (0.3); its neighbours score 0.4 (below) and 0.35 (above): the upper decade
    scores = {1e-3: 0.9, 1e-2: 0.4, 1e-1: 0.3, 1.0: 0.35, 10.0: None}
    assert expand.fine_range(scores, "min") == (0.1, 0.1, 1.0)
    scores = {1e-3: 0.9, 1e-2: 0.35, 1e-1: 0.3, 1.0: 0.5}
    assert expand.fine_range(scores, "min") == (0.1, 0.01, 0.1)
    # mode max (accuracy): the higher neighbour wins
    assert expand.fine_range({0.01: 0.8, 0.1: 0.95, 1.0: 0.9}, "max") == (0.1, 0.1, 1.0)
    # a diverged neighbour (None) is never chosen; the best at an end uses its only neighbour
    assert expand.fine_range({0.1: 0.2, 1.0: None}, "min") == (0.1, 0.1 / math.sqrt(10),
                                                              0.1 * math.sqrt(10))  # fmt: skip
    assert expand.fine_range({1e-3: 0.5, 1e-2: 0.2}, "min") == (0.01, 0.001, 0.01)
    with pytest.raises(ValueError):
        expand.fine_range({0.1: None}, "min")


def test_log_interior_excludes_the_ends() -> None:
    lrs = expand.log_interior(0.01, 0.1, 4)
    assert len(lrs) == 4 and 0.01 < lrs[0] < lrs[-1] < 0.1
    ratios = [b / a for a, b in itertools.pairwise(lrs)]
    assert max(ratios) == pytest.approx(min(ratios), rel=1e-4)  # evenly spaced in log
    assert lrs[0] == pytest.approx(0.01 * 10**0.2, rel=1e-5)


def test_rank_key_orders_finished_then_running_then_the_rest() -> None:
    rows = [
        ("diverged", 0.01),
        ("running", 0.2),
        ("succeeded", 0.5),
        ("early_stopped", 0.3),
        ("failed", math.nan),
    ]
    ordered = sorted(rows, key=lambda r: expand.rank_key(r[0], r[1], "min"))
    assert [r[0] for r in ordered] == ["early_stopped", "succeeded", "running", "diverged",
                                       "failed"]  # fmt: skip


def test_pruned_neighbours_are_told_apart_as_the_pruner_told_them() -> None:
    """With a pruner, the best coarse run's neighbours were mostly pruned: the one pruned at a
    later rung is the better (it was kept longer), at the same rung the better value, and one
    that finished well beats any pruned one. Without that, stage 2 fell back to half a decade
    each side however clearly one neighbour led."""
    scores = {0.01: None, 0.1: 0.2, 1.0: None}
    assert expand.fine_range(scores, "min") == (0.1, 0.1 / math.sqrt(10), 0.1 * math.sqrt(10))
    later_above = {0.01: (1, 0.9), 1.0: (3, 0.5)}
    assert expand.fine_range(scores, "min", later_above) == (0.1, 0.1, 1.0)
    later_below = {0.01: (9, 0.9), 1.0: (3, 0.5)}
    assert expand.fine_range(scores, "min", later_below) == (0.1, 0.01, 0.1)
    same_rung = {0.01: (3, 0.4), 1.0: (3, 0.5)}
    assert expand.fine_range(scores, "min", same_rung) == (0.1, 0.01, 0.1)
    assert expand.fine_range(scores, "min", same_rung, "max") == (0.1, 0.1, 1.0)
    # A neighbour that finished well beats one pruned; one that failed (absent) loses to both.
    assert expand.fine_range({0.01: 0.9, 0.1: 0.2, 1.0: None}, "min", {1.0: (9, 0.1)}) == (
        0.1, 0.01, 0.1)  # fmt: skip
    assert expand.fine_range(scores, "min", {1.0: (1, float("nan"))}) == (0.1, 0.1, 1.0)

"""Properties of the train/val/test split a user relies on: the sizes the API reports at submit
time are the sizes of the index arrays, leftovers go to train, every class keeps its share of the
whole dataset in each part (largest-remainder rounding, never shares of what earlier parts left),
and no class is asked for more samples than it has."""

from __future__ import annotations

import math

import numpy as np
import pytest
from hypothesis import HealthCheck, example, given, settings
from hypothesis import strategies as st

from service.training.split import split_indices, split_sizes, steps_per_epoch

SETTINGS = settings(max_examples=120, deadline=None, suppress_health_check=[HealthCheck.too_slow])

FRACTION = st.one_of(
    st.sampled_from([0.0, 0.05, 0.1, 0.15, 0.2, 0.25, 0.3, 1 / 3, 0.45]),
    st.floats(0.0, 0.45, allow_nan=False),
)
CLASS_COUNTS = st.lists(st.one_of(st.integers(1, 4), st.integers(1, 120)), min_size=1, max_size=7)


def labels(counts: list[int]) -> np.ndarray:
    # Interleave the classes so that class c is not simply one block of indices.
    y = np.repeat(np.arange(len(counts)), counts)
    return np.random.default_rng(123).permutation(y)


def per_class(y: np.ndarray, idx: np.ndarray, k: int) -> list[int]:
    return np.bincount(y[idx], minlength=k).tolist()


def assert_largest_remainder(got: list[int], counts: list[int], size: int) -> None:
    """`got` is `size` shared out in proportion to the whole class counts: each class gets the
    floor or the ceiling of its exact share, and a class rounded up never has a smaller remainder
    than one rounded down."""
    n = sum(counts)
    raw = [c * size / n for c in counts]
    assert sum(got) == size
    up, down = [], []
    for g, r in zip(got, raw, strict=True):
        assert math.floor(r + 1e-9) <= g <= math.ceil(r - 1e-9), (got, raw)
        frac = r - math.floor(r + 1e-9)
        if g > r + 1e-9:
            up.append(frac)
        elif g < r - 1e-9:
            down.append(frac)
    if up and down:
        assert min(up) >= max(down) - 1e-9, (got, raw)


def fractions_strategy() -> st.SearchStrategy[tuple[float, float, float, bool]]:
    """(train, val, test, sums_to_one): val > 0 as the spec requires, train > 0."""

    @st.composite
    def build(draw: st.DrawFn) -> tuple[float, float, float, bool]:
        val = draw(FRACTION.filter(lambda v: v > 0))
        test = draw(FRACTION)
        whole = draw(st.booleans())
        train = 1.0 - val - test if whole else draw(st.floats(0.05, 1.0 - val - test))
        return train, val, test, whole

    return build()


@SETTINGS
@given(counts=CLASS_COUNTS, fractions=fractions_strategy(), seed=st.integers(0, 3))
# 90/7/3 classes: with shares of what val left, the test part took class 1 twice and class 2 never.
@example(counts=[90, 7, 3], fractions=(0.6, 0.2, 0.2, True), seed=0)
# Tiny classes: rounding up in val and test would ask a one-sample class for two.
@example(counts=[1, 1, 1, 1, 1, 5], fractions=(0.4, 0.3, 0.3, True), seed=0)
@example(counts=[2, 2, 2], fractions=(0.34, 0.33, 0.33, True), seed=1)
# Caps bind so hard in train that largest remainders leave it short: the fill must go to the
# class with room left, not to the class that had the most.
@example(counts=[8, 20, 5, 5], fractions=(1 - 0.33 - 0.3, 0.33, 0.3, True), seed=0)
# Fractions below one: train is rounded on its own, the rest is left out.
@example(counts=[50, 30, 20], fractions=(0.5, 0.2, 0.2, False), seed=0)
def test_stratified_split_properties(
    counts: list[int], fractions: tuple[float, float, float, bool], seed: int
) -> None:
    train, val, test, whole = fractions
    y = labels(counts)
    n, k = len(y), len(counts)
    sizes = split_sizes(n, train, val, test)
    parts = split_indices(y, n, train, val, test, seed=seed, stratify=True)

    # The sizes reported at submit time are the rows the worker uses.
    assert {name: len(idx) for name, idx in parts.items()} == sizes
    union = np.concatenate([parts["val"], parts["test"], parts["train"]])
    assert len(np.unique(union)) == len(union)  # disjoint
    assert len(union) == 0 or (union.min() >= 0 and union.max() < n)
    for idx in parts.values():
        assert np.all(np.diff(idx) > 0)  # sorted, no repeats
    if whole:
        assert len(union) == n  # every leftover sample went to train
    got = {name: per_class(y, idx, k) for name, idx in parts.items()}
    for c in range(k):  # no class gives more than it has
        assert got["val"][c] + got["test"][c] + got["train"][c] <= counts[c]

    # val shares out the whole dataset's class proportions.
    assert_largest_remainder(got["val"], counts, sizes["val"])
    # So does test, wherever what val took leaves every class room for its rounded-up share.
    raw_test = [c * sizes["test"] / n for c in counts]
    if all(math.ceil(r) <= c - v for r, c, v in zip(raw_test, counts, got["val"], strict=True)):
        assert_largest_remainder(got["test"], counts, sizes["test"])

    # The per-class counts depend on the labels only; the seed picks which samples.
    other = split_indices(y, n, train, val, test, seed=seed + 10, stratify=True)
    assert {name: per_class(y, idx, k) for name, idx in other.items()} == got


@pytest.mark.parametrize(
    ("counts", "fractions", "expected"),
    [
        # 90/7/3, 60/20/20: val and test each get 18/1/1 (shares of 90, 7, 3 of 20 samples:
        # 18, 1.4, 0.6 → the 0.6 is rounded up before the 0.4); train gets the rest.
        (
            [90, 7, 3],
            (0.6, 0.2, 0.2),
            {"val": [18, 1, 1], "test": [18, 1, 1], "train": [54, 5, 1]},
        ),
        # 90/7/3, 70/15/15: 13.5, 1.05, 0.45 → 14, 1, 0 twice; train takes all that is left.
        (
            [90, 7, 3],
            (0.7, 0.15, 0.15),
            {"val": [14, 1, 0], "test": [14, 1, 0], "train": [62, 5, 3]},
        ),
        # Fractions below one: train is round(0.5 · 100) = 50, shared 45, 3.5, 1.5 → 45, 4, 1
        # (remainders tie at 0.5; class order breaks the tie).
        (
            [90, 7, 3],
            (0.5, 0.2, 0.2),
            {"val": [18, 1, 1], "test": [18, 1, 1], "train": [45, 4, 1]},
        ),
        # Caps bind: five one-sample classes and one of five. val 3 = 1.5 → 2 for the big class,
        # then the first single; test can no longer take class 0, so its share goes to class 1;
        # train gets exactly what is left.
        (
            [1, 1, 1, 1, 1, 5],
            (0.4, 0.3, 0.3),
            {"val": [1, 0, 0, 0, 0, 2], "test": [0, 1, 0, 0, 0, 2], "train": [0, 0, 1, 1, 1, 1]},
        ),
        # Balanced 2/2/2 in thirds: 0.67 each, ties by class order; train holds what is left.
        ([2, 2, 2], (0.34, 0.33, 0.33), {"val": [1, 1, 0], "test": [1, 1, 0], "train": [0, 0, 2]}),
    ],
)
@pytest.mark.parametrize("seed", [0, 5])
def test_stratified_counts_per_class(
    counts: list[int],
    fractions: tuple[float, float, float],
    expected: dict[str, list[int]],
    seed: int,
) -> None:
    y = labels(counts)
    parts = split_indices(y, len(y), *fractions, seed=seed, stratify=True)
    assert {name: per_class(y, idx, len(counts)) for name, idx in parts.items()} == expected


@pytest.mark.parametrize(
    ("n", "fractions", "expected"),
    [
        # round(4.5) is 4: the leftover sample goes to train, not nowhere.
        (10, (0.45, 0.45, 0.1), {"train": 5, "val": 4, "test": 1}),
        (6, (0.34, 0.33, 0.33), {"train": 2, "val": 2, "test": 2}),
        (7, (0.5, 0.25, 0.25), {"train": 3, "val": 2, "test": 2}),
        # Below one: train is rounded too, capped by what val and test leave.
        (10, (0.45, 0.35, 0.1), {"train": 4, "val": 4, "test": 1}),
        (10, (0.56, 0.35, 0.05), {"train": 6, "val": 4, "test": 0}),
        (3, (0.4, 0.3, 0.29), {"train": 1, "val": 1, "test": 1}),
    ],
)
def test_split_sizes_edges(
    n: int, fractions: tuple[float, float, float], expected: dict[str, int]
) -> None:
    assert split_sizes(n, *fractions) == expected
    parts = split_indices(None, n, *fractions, seed=0, stratify=False)
    assert {k: len(v) for k, v in parts.items()} == expected
    y = np.arange(n) % 2
    parts = split_indices(y, n, *fractions, seed=0, stratify=True)
    assert {k: len(v) for k, v in parts.items()} == expected


@SETTINGS
@given(n=st.integers(1, 3000), fractions=fractions_strategy(), seed=st.integers(0, 3))
@example(n=10, fractions=(0.45, 0.45, 0.1, True), seed=0)
def test_unstratified_split_properties(
    n: int, fractions: tuple[float, float, float, bool], seed: int
) -> None:
    train, val, test, whole = fractions
    sizes = split_sizes(n, train, val, test)
    assert sizes["val"] == round(n * val) and sizes["test"] == round(n * test)
    assert 0 <= sizes["train"] <= n - sizes["val"] - sizes["test"]
    if whole:
        assert sum(sizes.values()) == n
    else:
        assert abs(sizes["train"] - n * train) <= 0.5 + 1e-9 or sum(sizes.values()) == n
    parts = split_indices(None, n, train, val, test, seed=seed, stratify=False)
    assert {k: len(v) for k, v in parts.items()} == sizes
    union = np.concatenate(list(parts.values()))
    assert len(np.unique(union)) == len(union)


def test_split_indices_are_int64_arrays() -> None:
    y = np.array([0, 1] * 10)
    for stratify in (True, False):
        for idx in split_indices(y, 20, 0.5, 0.3, 0.2, seed=0, stratify=stratify).values():
            assert idx.dtype == np.int64


def test_zero_sized_parts_are_empty() -> None:
    y = np.array([0, 1] * 10)
    parts = split_indices(y, 20, 0.8, 0.2, 0.0, seed=0, stratify=True)
    assert len(parts["test"]) == 0 and len(parts["val"]) == 4 and len(parts["train"]) == 16


@pytest.mark.parametrize(("train", "batch", "steps"), [(0, 32, 1), (1, 32, 1), (33, 32, 2)])
def test_steps_per_epoch_never_zero(train: int, batch: int, steps: int) -> None:
    assert steps_per_epoch(train, batch) == steps

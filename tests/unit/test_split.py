"""The train/val/test split: sizes, determinism, disjointness, stratification, steps per epoch."""

from __future__ import annotations

import numpy as np
import pytest

from service.datasets.builtin import load
from service.training.split import split_indices, split_sizes, steps_per_epoch


@pytest.mark.parametrize(
    ("n", "fractions", "expected"),
    [
        (1797, (0.8, 0.2, 0.0), {"train": 1438, "val": 359, "test": 0}),
        (1797, (0.7, 0.2, 0.1), {"train": 1258, "val": 359, "test": 180}),
        (1797, (0.8, 0.1, 0.1), {"train": 1437, "val": 180, "test": 180}),
        (150, (0.8, 0.2, 0.0), {"train": 120, "val": 30, "test": 0}),
        (150, (0.6, 0.2, 0.2), {"train": 90, "val": 30, "test": 30}),
        (10, (0.5, 0.5, 0.0), {"train": 5, "val": 5, "test": 0}),
    ],
)
def test_split_sizes_fractions_summing_to_one(
    n: int, fractions: tuple[float, float, float], expected: dict[str, int]
) -> None:
    sizes = split_sizes(n, *fractions)
    assert sizes == expected
    assert sum(sizes.values()) == n  # every leftover sample goes to train


@pytest.mark.parametrize(
    ("n", "fractions", "expected"),
    [
        (1797, (0.5, 0.2, 0.0), {"train": 898, "val": 359, "test": 0}),
        (1797, (0.6, 0.2, 0.1), {"train": 1078, "val": 359, "test": 180}),
        (100, (0.5, 0.1, 0.0), {"train": 50, "val": 10, "test": 0}),
    ],
)
def test_split_sizes_fractions_below_one_leave_samples_out(
    n: int, fractions: tuple[float, float, float], expected: dict[str, int]
) -> None:
    sizes = split_sizes(n, *fractions)
    assert sizes == expected
    assert sum(sizes.values()) <= n


def test_split_sizes_tiny_val_rounds_to_zero() -> None:
    assert split_sizes(150, 0.8, 0.001, 0.0)["val"] == 0


@pytest.mark.parametrize(
    ("n", "fractions"),
    [
        (5, (0.3, 0.3, 0.3)),  # 1.5 rounds to 2 three times: 6 of 5 samples
        (150, (74.51 / 150, 74.51 / 150, 0.51 / 150)),  # iris: 75 + 75 + 1 = 151
    ],
)
def test_split_sizes_never_exceed_n(n: int, fractions: tuple[float, float, float]) -> None:
    assert sum(fractions) <= 1  # a spec the API accepts
    sizes = split_sizes(n, *fractions)
    assert sum(sizes.values()) <= n
    parts = split_indices(None, n, *fractions, seed=0, stratify=False)
    assert {k: len(v) for k, v in parts.items()} == sizes


CASES = [
    (0.8, 0.2, 0.0),
    (0.7, 0.2, 0.1),
    (0.5, 0.2, 0.1),  # fractions below 1: some samples are left out
]


@pytest.fixture(scope="module")
def digits_y() -> np.ndarray:
    y: np.ndarray = load("digits").y
    return y


def _stratify_ids(stratify: bool) -> str:
    return "stratified" if stratify else "random"


@pytest.mark.parametrize("stratify", [True, False], ids=_stratify_ids)
@pytest.mark.parametrize("fractions", CASES)
def test_split_indices_sizes_disjoint_and_in_range(
    digits_y: np.ndarray, fractions: tuple[float, float, float], stratify: bool
) -> None:
    n = len(digits_y)
    parts = split_indices(digits_y, n, *fractions, seed=0, stratify=stratify)
    sizes = split_sizes(n, *fractions)
    assert set(parts) == {"train", "val", "test"}
    assert {k: len(v) for k, v in parts.items()} == sizes
    union = np.concatenate([parts["train"], parts["val"], parts["test"]])
    assert len(np.unique(union)) == len(union) == sum(sizes.values())  # disjoint
    assert union.min() >= 0 and union.max() < n
    for idx in parts.values():
        assert np.issubdtype(idx.dtype, np.integer)


@pytest.mark.parametrize("stratify", [True, False], ids=_stratify_ids)
def test_split_indices_deterministic_for_a_seed(digits_y: np.ndarray, stratify: bool) -> None:
    n = len(digits_y)
    a = split_indices(digits_y, n, 0.7, 0.2, 0.1, seed=7, stratify=stratify)
    b = split_indices(digits_y, n, 0.7, 0.2, 0.1, seed=7, stratify=stratify)
    c = split_indices(digits_y, n, 0.7, 0.2, 0.1, seed=8, stratify=stratify)
    for part in ("train", "val", "test"):
        np.testing.assert_array_equal(a[part], b[part])
    assert not np.array_equal(a["val"], c["val"])
    assert not np.array_equal(a["train"], c["train"])


@pytest.mark.parametrize("seed", [0, 1, 42])
@pytest.mark.parametrize("fractions", [(0.8, 0.2, 0.0), (0.7, 0.2, 0.1), (0.6, 0.3, 0.1)])
def test_stratification_keeps_class_shares(
    digits_y: np.ndarray, fractions: tuple[float, float, float], seed: int
) -> None:
    n = len(digits_y)
    parts = split_indices(digits_y, n, *fractions, seed=seed, stratify=True)
    classes, totals = np.unique(digits_y, return_counts=True)
    for part in ("val", "test", "train"):
        size = len(parts[part])
        if size == 0:
            continue
        got = np.array([(digits_y[parts[part]] == c).sum() for c in classes])
        proportional = totals / n * size
        assert np.all(np.abs(got - proportional) <= 1.0), (part, got, proportional)


def test_stratified_split_of_small_dataset() -> None:
    # 30 samples, 3 balanced classes: a 0.2 val part holds exactly 2 of each class.
    y = np.repeat(np.arange(3), 10)
    parts = split_indices(y, 30, 0.8, 0.2, 0.0, seed=3, stratify=True)
    assert np.bincount(y[parts["val"]], minlength=3).tolist() == [2, 2, 2]
    assert np.bincount(y[parts["train"]], minlength=3).tolist() == [8, 8, 8]


@pytest.mark.parametrize("stratify", [True, False], ids=_stratify_ids)
def test_non_stratified_works_without_labels(stratify: bool) -> None:
    # y=None means no labels (regression): stratify is ignored and a plain shuffle is used.
    n = 442
    parts = split_indices(None, n, 0.8, 0.2, 0.0, seed=0, stratify=stratify)
    sizes = split_sizes(n, 0.8, 0.2, 0.0)
    assert {k: len(v) for k, v in parts.items()} == sizes
    union = np.concatenate(list(parts.values()))
    assert len(np.unique(union)) == n
    again = split_indices(None, n, 0.8, 0.2, 0.0, seed=0, stratify=stratify)
    np.testing.assert_array_equal(parts["val"], again["val"])


def test_non_stratified_ignores_labels(digits_y: np.ndarray) -> None:
    n = len(digits_y)
    with_y = split_indices(digits_y, n, 0.8, 0.2, 0.0, seed=5, stratify=False)
    without_y = split_indices(None, n, 0.8, 0.2, 0.0, seed=5, stratify=False)
    for part in ("train", "val", "test"):
        np.testing.assert_array_equal(with_y[part], without_y[part])


@pytest.mark.parametrize(
    ("train_size", "batch_size", "expected"),
    [
        (1438, 64, 23),  # 22 full batches + one of 30: the last partial batch is kept
        (1408, 64, 22),  # exact multiple
        (1409, 64, 23),
        (63, 64, 1),
        (64, 64, 1),
        (65, 64, 2),
        (120, 1, 120),
        (120, 1000, 1),
    ],
)
def test_steps_per_epoch_is_ceil(train_size: int, batch_size: int, expected: int) -> None:
    assert steps_per_epoch(train_size, batch_size) == expected

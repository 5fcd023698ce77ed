"""The train/val/test split: a pure, deterministic function of (labels, fractions, seed).

Sizes depend only on n and the fractions, so the API reports them at submit time without loading
data, and the worker's indices always agree with them.
"""

from __future__ import annotations

import math

import numpy as np


def split_sizes(n: int, train: float, val: float, test: float) -> dict[str, int]:
    n_val = round(n * val)
    n_test = round(n * test)
    # Fractions that add up to 1 give every leftover sample to train; otherwise train is rounded
    # too (never past what val and test leave) and the rest is left out.
    rest = n - n_val - n_test
    n_train = rest if math.isclose(train + val + test, 1.0) else min(round(n * train), rest)
    return {"train": n_train, "val": n_val, "test": n_test}


def _largest_remainder(weights: np.ndarray, total: int, cap: np.ndarray) -> np.ndarray:
    """Integers proportional to `weights` that sum to `total`, each at most `cap`."""
    raw = weights / weights.sum() * total if weights.sum() > 0 else np.zeros_like(weights)
    out = np.minimum(np.floor(raw).astype(np.int64), cap)
    remainder = raw - out
    # Hand out what is left by largest remainder; ties by class order, so it is deterministic.
    for i in np.lexsort((np.arange(len(raw)), -remainder)):
        if out.sum() >= total:
            break
        if out[i] < cap[i]:
            out[i] += 1
    while out.sum() < total:  # caps bit: fill wherever there is room
        i = int(np.argmax(cap - out))
        out[i] += 1
    return out


def split_indices(
    y: np.ndarray | None,
    n: int,
    train: float,
    val: float,
    test: float,
    seed: int,
    stratify: bool,
) -> dict[str, np.ndarray]:
    """Index arrays for train/val/test. With `stratify` (and class labels), each part keeps the
    class proportions of the whole as closely as integer counts allow."""
    sizes = split_sizes(n, train, val, test)
    rng = np.random.default_rng(seed)
    if not stratify or y is None:
        perm = rng.permutation(n)
        a, b = sizes["val"], sizes["val"] + sizes["test"]
        return {
            "val": np.sort(perm[:a]),
            "test": np.sort(perm[a:b]),
            "train": np.sort(perm[b : b + sizes["train"]]),
        }
    classes, inverse = np.unique(y, return_inverse=True)
    members = [rng.permutation(np.flatnonzero(inverse == c)) for c in range(len(classes))]
    counts = np.array([len(m) for m in members], dtype=np.int64)
    taken = np.zeros_like(counts)
    parts: dict[str, np.ndarray] = {}
    for part in ("val", "test", "train"):
        per_class = _largest_remainder(counts.astype(float), sizes[part], counts - taken)
        parts[part] = np.sort(
            np.concatenate(
                [m[t : t + k] for m, t, k in zip(members, taken, per_class, strict=True)]
            )
        ).astype(np.int64)
        taken += per_class
    return parts


def steps_per_epoch(train_size: int, batch_size: int) -> int:
    """ceil(train / batch): the last, smaller batch is kept (CONTRACT.md)."""
    return max(1, math.ceil(train_size / batch_size))

"""A generated image dataset: the dataset factory's contract is `factory(**params)` returning an
object with `x` (N, *shape) floats and `y` (N,) labels, optionally `task`."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np


@dataclass
class Shapes:
    x: np.ndarray
    y: np.ndarray
    task: str = "classification"


def shapes(n: int = 600, size: int = 8, noise: float = 0.3, seed: int = 0) -> Shapes:
    """1×size×size images of three classes (a horizontal bar, a vertical bar, a square outline)
    at random positions, with Gaussian noise: learnable, but not in one epoch."""
    if n < 3 or size < 4:
        raise ValueError(f"need n >= 3 and size >= 4; got n={n}, size={size}")
    rng = np.random.default_rng(seed)
    y = np.arange(n) % 3
    x = rng.normal(0.0, noise, size=(n, 1, size, size)).astype(np.float32)
    for i, label in enumerate(y):
        r, c = rng.integers(0, size - 3, size=2)
        if label == 0:
            x[i, 0, r + 1, c : c + 4] += 1.0
        elif label == 1:
            x[i, 0, r : r + 4, c + 1] += 1.0
        else:
            x[i, 0, r : r + 4, c] += 1.0
            x[i, 0, r : r + 4, c + 3] += 1.0
            x[i, 0, r, c : c + 4] += 1.0
            x[i, 0, r + 3, c : c + 4] += 1.0
    return Shapes(x=x, y=y.astype(np.int64))

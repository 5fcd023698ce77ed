"""Built-in datasets: scikit-learn's shipped data sets, loaded from disk, never downloaded."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from functools import cache

import numpy as np
from sklearn import datasets as skd


@dataclass(frozen=True)
class Arrays:
    x: np.ndarray  # float32, (n, *feature_shape)
    y: np.ndarray  # int64 class ids (classification) or float32 targets (regression)


@dataclass(frozen=True)
class DatasetInfo:
    name: str
    task: str  # "classification" | "regression"
    n_samples: int
    feature_shape: tuple[int, ...]
    n_classes: int | None
    image_shape: tuple[int, int, int] | None  # (C, H, W) when a CNN can read it
    description: str


def _sklearn(loader: Callable[..., tuple[np.ndarray, np.ndarray]], task: str) -> Arrays:
    x, y = loader(return_X_y=True)
    y = y.astype(np.int64) if task == "classification" else y.astype(np.float32)
    return Arrays(x=np.ascontiguousarray(x, dtype=np.float32), y=y)


def _digits() -> Arrays:
    arrays = _sklearn(skd.load_digits, "classification")
    # Pixels are 0..16; scaling to 0..1 keeps default learning rates sensible.
    return Arrays(x=arrays.x / 16.0, y=arrays.y)


def _standardized(
    loader: Callable[..., tuple[np.ndarray, np.ndarray]], task: str
) -> Callable[[], Arrays]:
    def load() -> Arrays:
        arrays = _sklearn(loader, task)
        x = (arrays.x - arrays.x.mean(0)) / (arrays.x.std(0) + 1e-8)
        return Arrays(x=x.astype(np.float32), y=arrays.y)

    return load


_LOADERS: dict[str, tuple[Callable[[], Arrays], str, tuple[int, int, int] | None, str]] = {
    "digits": (_digits, "classification", (1, 8, 8), "8×8 handwritten digits, 10 classes"),
    "iris": (
        _standardized(skd.load_iris, "classification"),
        "classification",
        None,
        "iris flowers, 3 classes (standardized features)",
    ),
    "wine": (
        _standardized(skd.load_wine, "classification"),
        "classification",
        None,
        "wine cultivars, 3 classes (standardized features)",
    ),
    "breast_cancer": (
        _standardized(skd.load_breast_cancer, "classification"),
        "classification",
        None,
        "Wisconsin breast cancer, 2 classes (standardized features)",
    ),
    "diabetes": (
        _standardized(skd.load_diabetes, "regression"),
        "regression",
        None,
        "diabetes progression, regression (standardized features)",
    ),
}

NAMES = tuple(_LOADERS)


@cache
def load(name: str) -> Arrays:
    arrays = _LOADERS[name][0]()
    arrays.x.setflags(write=False)
    arrays.y.setflags(write=False)
    return arrays


@cache
def info(name: str) -> DatasetInfo:
    _, task, image_shape, description = _LOADERS[name]
    arrays = load(name)
    n_classes = int(arrays.y.max()) + 1 if task == "classification" else None
    return DatasetInfo(
        name=name,
        task=task,
        n_samples=int(arrays.x.shape[0]),
        feature_shape=tuple(int(d) for d in arrays.x.shape[1:]),
        n_classes=n_classes,
        image_shape=image_shape,
        description=description,
    )

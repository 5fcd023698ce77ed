"""Built-in datasets: scikit-learn's shipped data sets, loaded from disk, never downloaded, and
seeded synthetic ones (the same generators serve `POST /v1/datasets` with a JSON body)."""

from __future__ import annotations

import math
from collections.abc import Callable
from functools import cache, partial
from typing import Any, NamedTuple

import numpy as np

from service.training.datasets import Arrays, DatasetInfo


def _skd() -> Any:
    """sklearn.datasets, imported on first use: it costs ~2 s at import (scipy), which every
    API process and CLI start would pay before serving anything, most of them never loading a
    built-in dataset."""
    from sklearn import datasets

    return datasets


def _sklearn(loader: str, task: str) -> Arrays:
    x, y = getattr(_skd(), loader)(return_X_y=True)
    y = y.astype(np.int64) if task == "classification" else y.astype(np.float32)
    return Arrays(x=np.ascontiguousarray(x, dtype=np.float32), y=y)


def _digits() -> Arrays:
    arrays = _sklearn("load_digits", "classification")
    # Pixels are 0..16; scaling to 0..1 keeps default learning rates sensible.
    return Arrays(x=arrays.x / 16.0, y=arrays.y)


def _standardized(loader: str, task: str) -> Callable[[], Arrays]:
    def load() -> Arrays:
        arrays = _sklearn(loader, task)
        x = (arrays.x - arrays.x.mean(0)) / (arrays.x.std(0) + 1e-8)
        return Arrays(x=x.astype(np.float32), y=arrays.y)

    return load


GENERATORS = ("classification", "regression")


def synthetic(
    generator: str,
    *,
    n_samples: int = 1000,
    n_features: int = 20,
    n_classes: int = 2,
    noise: float = 0.1,
    seed: int = 0,
) -> Arrays:
    """Seeded synthetic data: the same parameters give identical arrays.

    classification: scikit-learn's `make_classification` with half the features informative (at
    least enough to place `n_classes` clusters on a hypercube), one cluster per class, and
    `noise` as the fraction of labels assigned at random (`flip_y`, 0..1).
    regression: `make_regression` with up to 10 informative features and `noise` as the standard
    deviation of the Gaussian noise on the target; the target is then standardized."""
    if generator == "classification":
        n_informative = min(n_features, max(2, math.ceil(math.log2(n_classes)), n_features // 2))
        x, y = _skd().make_classification(
            n_samples=n_samples,
            n_features=n_features,
            n_informative=n_informative,
            n_redundant=0,
            n_repeated=0,
            n_classes=n_classes,
            n_clusters_per_class=1,
            flip_y=noise,
            random_state=seed,
        )
        return Arrays(x=np.ascontiguousarray(x, dtype=np.float32), y=y.astype(np.int64))
    if generator == "regression":
        x, y = _skd().make_regression(
            n_samples=n_samples,
            n_features=n_features,
            n_informative=min(n_features, 10),
            noise=noise,
            random_state=seed,
        )
        y = (y - y.mean()) / (y.std() + 1e-12)
        return Arrays(x=np.ascontiguousarray(x, dtype=np.float32), y=y.astype(np.float32))
    raise ValueError(f"unknown generator {generator!r}; allowed: {', '.join(GENERATORS)}")


class _Builtin(NamedTuple):
    load: Callable[[], Arrays]
    task: str
    n_samples: int
    n_features: int
    n_classes: int | None
    image_shape: tuple[int, int, int] | None
    description: str


# The sizes are the data's own (tests/unit/test_builtin_datasets.py loads each and compares):
# the API checks a spec against them without loading anything, so a process's first POST of a
# built-in dataset no longer imports scikit-learn and scipy (~1 s; a 200-spec batch took 1.6 s).
_LOADERS: dict[str, _Builtin] = {
    "digits": _Builtin(_digits, "classification", 1797, 64, 10, (1, 8, 8),
                       "8×8 handwritten digits, 10 classes"),
    "iris": _Builtin(_standardized("load_iris", "classification"), "classification", 150, 4, 3,
                     None, "iris flowers, 3 classes (standardized features)"),
    "wine": _Builtin(_standardized("load_wine", "classification"), "classification", 178, 13, 3,
                     None, "wine cultivars, 3 classes (standardized features)"),
    "breast_cancer": _Builtin(
        _standardized("load_breast_cancer", "classification"), "classification", 569, 30, 2,
        None, "Wisconsin breast cancer, 2 classes (standardized features)",
    ),
    "diabetes": _Builtin(_standardized("load_diabetes", "regression"), "regression", 442, 10,
                         None, None, "diabetes progression, regression (standardized features)"),
    "synthetic_classification": _Builtin(
        partial(synthetic, "classification"), "classification", 1000, 20, 2, None,
        "synthetic: 1000 samples, 20 features, 2 classes, label noise 0.1 (seed 0)",
    ),
    "synthetic_regression": _Builtin(
        partial(synthetic, "regression"), "regression", 1000, 20, None, None,
        "synthetic: 1000 samples, 20 features, noise 0.1, standardized target (seed 0)",
    ),
}  # fmt: skip

NAMES = tuple(_LOADERS)


@cache
def load(name: str) -> Arrays:
    arrays = _LOADERS[name].load()
    arrays.x.setflags(write=False)
    arrays.y.setflags(write=False)
    return arrays


def info(name: str) -> DatasetInfo:
    b = _LOADERS[name]
    return DatasetInfo(
        name=name,
        task=b.task,
        n_samples=b.n_samples,
        feature_shape=(b.n_features,),
        n_classes=b.n_classes,
        image_shape=b.image_shape,
        description=b.description,
    )

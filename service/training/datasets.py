"""What the training core knows of a dataset: its arrays and its description. Where the arrays
come from (scikit-learn, a generator, an upload) is `service/datasets/`'s business."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np


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

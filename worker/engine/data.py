"""Split a dataset's arrays and put each part on the device once for the whole run. Where
the arrays come from (a built-in, or an upload found through the catalogue) is
`worker/runs/datasets.py`."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch

from service.training.datasets import Arrays, DatasetInfo
from service.training.spec import ExperimentSpec
from service.training.split import split_indices


@dataclass
class Part:
    x: torch.Tensor
    y: torch.Tensor

    def __len__(self) -> int:
        return int(self.x.shape[0])


@dataclass
class DeviceData:
    train: Part
    val: Part
    test: Part | None
    info: DatasetInfo


def to_device(
    spec: ExperimentSpec, arrays: Arrays, info: DatasetInfo, device: torch.device
) -> DeviceData:
    labels = arrays.y if info.task == "classification" else None
    idx = split_indices(
        labels,
        len(arrays.x),
        spec.split.train,
        spec.split.val,
        spec.split.test,
        spec.split.seed,
        spec.split.stratify,
    )

    # Samples go to the device flat, (n, features), as the built-ins are: the models flatten
    # anyway, and `cnn` restores (C, H, W) from info.image_shape.
    flat = arrays.x.reshape(len(arrays.x), -1)

    def part(i: np.ndarray) -> Part:
        x = torch.from_numpy(np.ascontiguousarray(flat[i])).to(device)
        y = torch.from_numpy(np.ascontiguousarray(arrays.y[i])).to(device)
        return Part(x, y)

    return DeviceData(
        train=part(idx["train"]),
        val=part(idx["val"]),
        test=part(idx["test"]) if len(idx["test"]) else None,
        info=info,
    )

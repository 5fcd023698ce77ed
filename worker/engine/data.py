"""Load a dataset, split it, and put each part on the device once for the whole run."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch

from service.datasets import builtin
from service.datasets.builtin import Arrays, DatasetInfo
from service.datasets.split import split_indices
from service.experiments.spec import ExperimentSpec


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


def load_arrays(name: str) -> tuple[Arrays, DatasetInfo]:
    # Uploaded datasets arrive with issue #3; the spec check only lets known names through.
    return builtin.load(name), builtin.info(name)


def to_device(spec: ExperimentSpec, device: torch.device) -> DeviceData:
    arrays, info = load_arrays(spec.dataset)
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

    def part(i: np.ndarray) -> Part:
        x = torch.from_numpy(np.ascontiguousarray(arrays.x[i])).to(device)
        y = torch.from_numpy(np.ascontiguousarray(arrays.y[i])).to(device)
        return Part(x, y)

    return DeviceData(
        train=part(idx["train"]),
        val=part(idx["val"]),
        test=part(idx["test"]) if len(idx["test"]) else None,
        info=info,
    )

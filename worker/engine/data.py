"""Load a dataset, split it, and put each part on the device once for the whole run."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch

from service.config import settings
from service.datasets import builtin, storage
from service.datasets import service as datasets
from service.datasets.builtin import Arrays, DatasetInfo
from service.datasets.split import split_indices
from service.experiments.spec import ExperimentSpec
from service.kit.db import session_scope


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


class DatasetMissing(LookupError):
    """The run names a dataset that is neither built in nor in the catalogue."""


def load_arrays(name: str) -> tuple[Arrays, DatasetInfo]:
    """A built-in, or an upload: its catalogue row says where the file is (relative to DATA_DIR),
    and the file is read with allow_pickle=False. The arrays keep their stored shape."""
    if name in builtin.NAMES:
        return builtin.load(name), builtin.info(name)
    with session_scope() as session:
        row = datasets.find(session, name)
        if row is None:
            raise DatasetMissing(f"dataset {name!r} does not exist")
        info, path = datasets.info_of(row), row.path
    arrays = storage.read(settings.data_dir / path, info.task)
    if arrays.x.shape[1:] != info.feature_shape or len(arrays.x) != info.n_samples:
        raise ValueError(
            f"dataset {name!r}: the file holds x of shape {arrays.x.shape}, the catalogue says "
            f"({info.n_samples}, {', '.join(map(str, info.feature_shape))})"
        )
    return arrays, info


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

"""A run's dataset: a built-in, or an upload found through the catalogue."""

from __future__ import annotations

from service.config import settings
from service.datasets import builtin, storage
from service.datasets import service as datasets
from service.datasets.repository import DatasetRepository
from service.kit.db import session_scope
from service.training.datasets import Arrays, DatasetInfo


class DatasetMissing(LookupError):
    """The run names a dataset that is neither built in nor in the catalogue."""


def load_arrays(name: str) -> tuple[Arrays, DatasetInfo]:
    """A built-in, or an upload: its catalogue row says where the file is (relative to DATA_DIR),
    and the file is read with allow_pickle=False. The arrays keep their stored shape."""
    if name in builtin.NAMES:
        return builtin.load(name), builtin.info(name)
    with session_scope() as session:
        row = DatasetRepository(session).by_name(name)
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

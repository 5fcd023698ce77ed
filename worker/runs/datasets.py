"""A run's dataset: a built-in, an upload found through the catalogue, or a plugin's factory."""

from __future__ import annotations

from functools import partial
from pathlib import Path

from service.artifacts import service as artifacts
from service.artifacts.store import CorruptArtifact, sha256_file
from service.config import settings
from service.datasets import builtin, storage
from service.datasets import service as datasets
from service.datasets.repository import DatasetRepository
from service.kit.db import session_scope
from service.training.checks import check_spec, derived_sizes
from service.training.datasets import Arrays, DatasetInfo
from service.training.spec import DatasetRef, ExperimentSpec
from worker.engine import plugins as engine_plugins
from worker.engine.plugins import Plugin
from worker.runs.artifacts import with_store_retry
from worker.runs.plugins import here
from worker.runs.retry import with_db_retry


class DatasetMissing(LookupError):
    """The run names a dataset that is neither built in, nor in the catalogue, nor a plugin."""


def load_arrays(ref: DatasetRef) -> tuple[Arrays, DatasetInfo, Plugin | None]:
    """The arrays, their description, and the plugin that made them (None unless a plugin's).
    The same order as the API resolves a name: built-in, upload, plugin. An upload's file is
    read with allow_pickle=False; the arrays keep their stored shape."""
    name = ref.type
    if not ref.params:
        if name in builtin.NAMES:
            return builtin.load(name), builtin.info(name), None
        found = with_db_retry(partial(_uploaded, name), f"dataset {name!r}")
        if found is not None:
            info, key, sha = found
            arrays = storage.read(local_copy(key, sha), info.task)
            if arrays.x.shape[1:] != info.feature_shape or len(arrays.x) != info.n_samples:
                raise ValueError(
                    f"dataset {name!r}: the file holds x of shape {arrays.x.shape}, the "
                    f"catalogue says ({info.n_samples}, {', '.join(map(str, info.feature_shape))})"
                )
            return arrays, info, None
    plugin = here().datasets.get(name)
    if plugin is None:
        raise DatasetMissing(f"dataset {name!r} is not built in, not uploaded, and no plugin "
                             "installed on this worker offers it")  # fmt: skip
    arrays, info = engine_plugins.load_dataset(plugin, ref.params)
    return arrays, info, plugin


def _uploaded(name: str) -> tuple[DatasetInfo, str, str | None] | None:
    """An uploaded dataset's catalogue entry: its description, file key and checksum."""
    with session_scope() as session:
        row = DatasetRepository(session).by_name(name)
        if row is None:
            return None
        return datasets.info_of(row), row.path, artifacts.sha256_of(session, row.path)


_verified: set[tuple[str, str, int, float]] = set()


def local_copy(key: str, sha256: str | None) -> Path:
    """A dataset's file on this machine, to memory-map: the store's own file when the store is
    a local folder (its sha256 checked once per process and file version), else a copy in
    DATA_DIR/cache named by its sha256 (checked when downloaded). A row without an artifact
    record is an upload from before the artifact store: its path is under DATA_DIR."""
    if sha256 is None:
        return settings.data_dir / key
    store = artifacts.store()
    local = store.local_path(key)
    if local is not None:
        stat = local.stat() if local.exists() else None
        version = (key, sha256, stat.st_size, stat.st_mtime) if stat else None
        if version not in _verified:
            if stat is None or sha256_file(local) != sha256:
                raise CorruptArtifact(f"artifact {key!r}: missing, or its sha256 is not the one "
                                      "recorded")  # fmt: skip
            _verified.add(version)  # type: ignore[arg-type]
        return local
    cached = settings.cache_dir / "datasets" / f"{sha256}.npz"
    if not cached.exists():
        with_store_retry(lambda: store.get_file(key, cached, sha256), f"dataset {key}")
    return cached


class SpecDoesNotFit(ValueError):
    """A plugin dataset's data turned out not to fit the spec (checked here, not at submit)."""


def check_fits(spec: ExperimentSpec, info: DatasetInfo, plugin: Plugin | None) -> dict[str, int]:
    """The split sizes. A plugin dataset's size and task are known only once its factory ran,
    here: the checks the API could not make (empty split parts, the task's metrics, image-shaped
    data for cnn/resnet) are made now, and fail the run with the same messages."""
    if plugin is not None:
        errors = check_spec(spec, info)
        if errors:
            raise SpecDoesNotFit(
                "; ".join(f"{'.'.join(map(str, e['loc']))}: {e['msg']}" for e in errors)
            )
    return derived_sizes(spec, info)[0]

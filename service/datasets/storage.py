"""Where user datasets live: one `.npz` per dataset under DATA_DIR/datasets, written to a
temporary file and published by an atomic rename, read back without unpickling. What is stored
is always two plain numeric arrays written by `np.savez` (see `files.py`)."""

from __future__ import annotations

import os
import tempfile
from pathlib import Path

import numpy as np

from service.datasets.files import name_problem
from service.training.datasets import Arrays

FOLDER = "datasets"  # under DATA_DIR


def relative_path(name: str) -> str:
    """Where a dataset's file lives, relative to DATA_DIR (what the catalogue row records)."""
    if name_problem(name):
        raise ValueError(f"invalid dataset name {name!r}")
    return f"{FOLDER}/{name}.npz"


def write_temp(data_dir: Path, arrays: Arrays) -> Path:
    """Write the arrays to a temporary file in the datasets folder (same file system, so
    `publish` is an atomic rename)."""
    folder = data_dir / FOLDER
    folder.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=".upload-", suffix=".npz", dir=folder)
    try:
        os.fchmod(fd, 0o644)  # mkstemp's 0600 would hide it from a worker running as another user
        with os.fdopen(fd, "wb") as f:
            np.savez(f, x=arrays.x, y=arrays.y)
            f.flush()
            os.fsync(f.fileno())
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
    return Path(tmp)


def publish(tmp: Path, data_dir: Path, name: str) -> Path:
    final = data_dir / relative_path(name)
    os.replace(tmp, final)
    return final


def read(path: Path, task: str) -> Arrays:
    """Load a stored dataset (never unpickling): x float32, y int64 or float32 by task."""
    with np.load(path, allow_pickle=False) as npz:
        x = np.ascontiguousarray(npz["x"], dtype=np.float32)
        y_dtype = np.int64 if task == "classification" else np.float32
        y = np.ascontiguousarray(npz["y"], dtype=y_dtype)
    return Arrays(x=x, y=y)

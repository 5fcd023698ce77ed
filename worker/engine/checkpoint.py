"""Checkpoint bytes: everything a run needs to continue bit-for-bit on another worker.

Written atomically (temp file, fsync, rename) to the path the caller gives (where artifacts live
is `worker/runs/artifacts.py`'s business); read with `weights_only=True`: only tensors and plain
containers, never pickled objects. Shuffling and dropout are seeded per epoch
(loop.epoch_generator), so no RNG state is needed; the decision state lives with the epoch rows
in the database.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

import torch

FORMAT = 1


def _atomic_save(obj: Any, path: Path) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    with tmp.open("wb") as f:
        torch.save(obj, f)
        f.flush()
        os.fsync(f.fileno())
    os.replace(tmp, path)


def save(state: dict[str, Any], attempt: int, path: Path) -> None:
    """`state`: `RunState.state_dict()` (model, optimizer, scheduler, best weights,
    hypergradient, epoch)."""
    _atomic_save({"format": FORMAT, "attempt": attempt, **state}, path)


def load(path: Path) -> dict[str, Any] | None:
    """The checkpoint at `path`, or None when there is none (or it is of another format)."""
    if not path.exists():
        return None
    data: dict[str, Any] = torch.load(path, map_location="cpu", weights_only=True)
    return data if data.get("format") == FORMAT else None


def save_model(weights: dict[str, torch.Tensor], path: Path) -> Path:
    """The final model (the best epoch's with restore_best)."""
    _atomic_save({k: v.detach().cpu() for k, v in weights.items()}, path)
    return path

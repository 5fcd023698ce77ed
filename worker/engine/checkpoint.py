"""Checkpoint bytes: everything a run needs to continue bit-for-bit on another worker.

Written atomically (temp file, fsync, rename) to the path the caller gives (where artifacts live
is `worker/runs/artifacts.py`'s business); read with `weights_only=True`: only tensors and plain
containers, never pickled objects. Shuffling and dropout are seeded per epoch
(loop.epoch_generator), so no RNG state is needed; the decision state lives with the epoch rows
in the database.
"""

from __future__ import annotations

import io
import os
from pathlib import Path
from typing import Any

import safetensors.torch
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


def dumps(state: dict[str, Any], attempt: int) -> bytes:
    """`save`'s bytes, for a store that is not a local path (the copy is taken now, so training
    may go on while the bytes upload)."""
    buf = io.BytesIO()
    torch.save({"format": FORMAT, "attempt": attempt, **state}, buf)
    return buf.getvalue()


def loads(data: bytes) -> dict[str, Any] | None:
    """A checkpoint from its bytes (`weights_only=True`); None when it is of another format.
    Raises on bytes that are not a checkpoint at all (truncated, corrupt)."""
    obj: dict[str, Any] = torch.load(io.BytesIO(data), map_location="cpu", weights_only=True)
    return obj if isinstance(obj, dict) and obj.get("format") == FORMAT else None


def model_bytes(weights: dict[str, torch.Tensor], metadata: dict[str, str]) -> bytes:
    """The final model as safetensors (tensors only, no code), with `metadata` (strings) in its
    header: what anyone can load with `safetensors.torch.load`."""
    tensors = {k: v.detach().to("cpu").contiguous().clone() for k, v in weights.items()}
    return safetensors.torch.save(tensors, metadata=metadata)


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

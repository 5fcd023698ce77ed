"""Checkpoint bytes: everything a run needs to continue bit-for-bit on another worker.

Bytes only: where they are kept, atomically and with their sha256, is the artifact store's
business (`worker/runs/artifacts.py`). Read with `weights_only=True`: only tensors and plain
containers, never pickled objects. Shuffling and dropout are seeded per epoch
(loop.epoch_generator), so no RNG state is needed; the decision state lives with the epoch rows
in the database.
"""

from __future__ import annotations

import io
from typing import Any

import safetensors.torch
import torch

FORMAT = 1


def dumps(state: dict[str, Any], attempt: int) -> bytes:
    """The checkpoint's bytes (`torch.save`): `state` is `RunState.state_dict()` (model,
    optimizer, scheduler, best weights, hypergradient, epoch). The copy is taken now, so training
    may go on while the bytes upload."""
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

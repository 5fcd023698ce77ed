"""Checkpoints: everything a run needs to continue bit-for-bit on another worker.

Written atomically (temp file, fsync, rename) under DATA_DIR, which every worker must share;
read with `weights_only=True`: only tensors and plain containers, never pickled objects.
Shuffling and dropout are seeded per epoch (loop.epoch_generator), so no RNG state is needed;
the decision state lives with the epoch rows in the database.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

import torch

from service.config import settings

FORMAT = 1


def path_for(experiment_id: int) -> Path:
    return (settings.data_dir / "checkpoints" / f"{experiment_id}.pt").resolve()


def model_path(experiment_id: int) -> Path:
    return (settings.data_dir / "models" / f"{experiment_id}.pt").resolve()


def _atomic_save(obj: Any, path: Path) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    with tmp.open("wb") as f:
        torch.save(obj, f)
        f.flush()
        os.fsync(f.fileno())
    os.replace(tmp, path)


def save(experiment_id: int, epoch: int, attempt: int, model: torch.nn.Module,
         optimizer: torch.optim.Optimizer, scheduler: Any | None,
         best_weights: dict[str, torch.Tensor] | None,
         hypergradient: dict[str, Any] | None = None) -> None:  # fmt: skip
    """`hypergradient`: `Hypergradient.state_dict()` (the last step's snapshot and the LR)."""
    _atomic_save({
        "format": FORMAT, "epoch": epoch, "attempt": attempt,
        "model": model.state_dict(), "optimizer": optimizer.state_dict(),
        "scheduler": scheduler.state_dict() if scheduler is not None else None,
        "best_weights": best_weights, "hypergradient": hypergradient,
    }, path_for(experiment_id))  # fmt: skip


def load(experiment_id: int) -> dict[str, Any] | None:
    path = path_for(experiment_id)
    if not path.exists():
        return None
    data: dict[str, Any] = torch.load(path, map_location="cpu", weights_only=True)
    return data if data.get("format") == FORMAT else None


def save_model(experiment_id: int, weights: dict[str, torch.Tensor]) -> Path:
    """The final model (the best epoch's with restore_best)."""
    path = model_path(experiment_id)
    _atomic_save({k: v.detach().cpu() for k, v in weights.items()}, path)
    return path

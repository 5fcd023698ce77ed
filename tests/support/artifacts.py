"""Where the default (local) artifact store keeps a run's files, for tests that look at them:
DATA_DIR/artifacts/{models,checkpoints}/ (service/artifacts/service.py names the keys)."""

from __future__ import annotations

from pathlib import Path

import safetensors.torch
import torch


def model_file(data_dir: Path, experiment_id: int) -> Path:
    return data_dir / "artifacts" / "models" / f"{experiment_id}.safetensors"


def checkpoint_files(data_dir: Path, experiment_id: int) -> list[Path]:
    """Oldest epoch first."""
    return sorted((data_dir / "artifacts" / "checkpoints" / str(experiment_id)).glob("*.pt"))


def load_model(data_dir: Path, experiment_id: int) -> dict[str, torch.Tensor]:
    return safetensors.torch.load_file(model_file(data_dir, experiment_id))

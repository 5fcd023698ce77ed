"""Where a run's files live: checkpoints and final models under DATA_DIR, which every worker
must share today. The one place that turns an experiment id into a path."""

from __future__ import annotations

from pathlib import Path

from service.config import settings


def checkpoint_path(experiment_id: int) -> Path:
    return (settings.data_dir / "checkpoints" / f"{experiment_id}.pt").resolve()


def model_path(experiment_id: int) -> Path:
    return (settings.data_dir / "models" / f"{experiment_id}.pt").resolve()

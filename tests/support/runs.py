"""Ending runs through the repository calls a worker makes (claim, one row per epoch, finish),
for API tests that need known metrics without training."""

from __future__ import annotations

from typing import Any

from service.experiments.repository import ExperimentRepository
from service.kit.db import session_scope


def end_run(
    experiment_id: int,
    val_losses: list[float],
    status: str = "succeeded",
    lrs: list[float] | None = None,
    decisions: dict[int, dict[str, Any]] | None = None,
) -> None:
    with session_scope() as s:
        repo = ExperimentRepository(s)
        attempt = repo.claim(experiment_id, "test-worker", 60)
        assert attempt is not None
        for epoch, v in enumerate(val_losses, start=1):
            event = (decisions or {}).get(epoch)
            row = {"experiment_id": experiment_id, "epoch": epoch,
                   "lr": lrs[epoch - 1] if lrs else 0.1, "duration_s": 0.01,
                   "decision": event["kind"] if event else None, "attempt": attempt,
                   "state": None, "train_loss": v, "val_loss": v, "val_accuracy": 0.5}  # fmt: skip
            events = [{"experiment_id": experiment_id, "epoch": epoch, **event}] if event else []
            repo.write_epoch(row, events)
        assert repo.finish(experiment_id, attempt, status)

"""What the events carry (docs/events.md). `epoch` and `decision` events carry the rows as
GET /v1/experiments/{id}/metrics and /decisions give them (`EpochOut`, `DecisionOut`)."""

from __future__ import annotations

from typing import Any

from pydantic import BaseModel, Field

from service.training.status import ExperimentStatus


class RunStatus(BaseModel):
    """A `status` event's data: where one run stands."""

    experiment_id: int
    status: ExperimentStatus
    epochs_run: int
    epochs: int = Field(description="the epochs its spec asks for")
    attempt: int = Field(description="the current attempt (a worker's claim of the run)")
    best_epoch: int | None
    best_value: float | None
    stop_reason: str | None
    error: str | None
    cancel_requested: bool

    @classmethod
    def of(cls, row: Any, epochs: int) -> RunStatus:
        """`row`: an experiments row's columns (`EventsRepository.STATUS_COLUMNS`)."""
        return cls(
            experiment_id=row.id,
            status=row.status,
            epochs_run=row.epochs_run,
            epochs=epochs,
            attempt=row.attempt,
            best_epoch=row.best_epoch,
            best_value=row.best_value,
            stop_reason=row.stop_reason,
            error=row.error,
            cancel_requested=row.cancel_requested,
        )


class GroupEnd(BaseModel):
    """The `end` event of GET /v1/events: every run of the batch (or the sweep, once it has
    ended) is final, or none is left (deleted runs leave the group); the stream closes after
    it."""

    runs: int
    counts: dict[str, int] = Field(description="runs per status")

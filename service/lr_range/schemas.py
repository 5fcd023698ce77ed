"""Request and response bodies of `/v1/lr-range-tests`. The spec is the experiment spec
(`service/training/spec.py`) unchanged, so a training spec can be pasted in as it is."""

from __future__ import annotations

from datetime import datetime
from typing import Annotated, Any

from pydantic import BaseModel, Field, field_serializer

from service.experiments.models import Experiment, RangePoint
from service.experiments.schemas import dataset_name
from service.kit.time import as_utc
from service.training.range_spec import RangeParams
from service.training.spec import ExperimentSpec
from service.training.status import RangeTestStatus


class RangeTestRequest(RangeParams):
    spec: Annotated[
        ExperimentSpec,
        Field(
            description="The model, data, solver, batch size and seed to test; its scheduler, "
            "warmup, early stopping and epochs are ignored (the test drives the LR itself)"
        ),
    ]

    def params(self) -> RangeParams:
        return RangeParams.model_validate(self.model_dump(exclude={"spec"}))


class PointOut(BaseModel):
    step: int = Field(description="0-based; the LR ramp's index i")
    lr: float
    loss: float | None = Field(description="The batch loss of this step; null when not finite")
    smoothed_loss: float | None = Field(description="Bias-corrected EMA of the batch losses")

    @classmethod
    def of(cls, p: RangePoint) -> PointOut:
        return cls(step=p.step, lr=p.lr, loss=p.loss, smoothed_loss=p.smoothed_loss)


class RangeTestOut(BaseModel):
    id: int
    status: RangeTestStatus
    name: str
    spec: dict[str, Any]
    min_lr: float
    max_lr: float
    steps: int
    smoothing: float
    diverge_factor: float
    steps_run: int = Field(description="Points recorded so far (all of them once finished)")
    points: list[PointOut] = Field(description="Points with step >= `from_step`, in step order")
    next_from_step: int = Field(description="Pass as `from_step` to get only newer points")
    suggested_lr: float | None = Field(description="null until finished, or when `rule` says why")
    rule: str | None = Field(description="How `suggested_lr` was chosen, in words and numbers")
    min_loss_lr: float | None = Field(description="The LR at the filtered loss minimum")
    steepest_lr: float | None = Field(description="The LR of the steepest filtered descent")
    stopped: str | None = Field(
        description="'completed all N steps', 'diverged at step …' or 'non-finite loss at step "
        "…' once finished; the reason it was cancelled otherwise"
    )
    result: dict[str, Any] | None = Field(description="The suggestion's details (windows, noise)")
    error: str | None
    device: str | None
    attempt: int
    worker: str | None = Field(description="host:pid of the worker holding the run's lease")
    cancel_requested: bool
    created_by: str | None = Field(
        default=None, description="the name of the token that created it; null if the API was open"
    )
    created_at: datetime
    started_at: datetime | None
    finished_at: datetime | None

    @field_serializer("created_at", "started_at", "finished_at")
    def _times(self, dt: datetime | None) -> datetime | None:
        return as_utc(dt)

    @classmethod
    def of(
        cls, e: Experiment, points: list[RangePoint], steps_run: int, from_step: int
    ) -> RangeTestOut:
        params = e.range_test or {}
        result = e.range_result or {}
        return cls(
            id=e.id,
            status=e.status,
            name=e.name,
            spec=e.spec,
            min_lr=params["min_lr"],
            max_lr=params["max_lr"],
            steps=params["steps"],
            smoothing=params["smoothing"],
            diverge_factor=params["diverge_factor"],
            steps_run=steps_run,
            points=[PointOut.of(p) for p in points],
            next_from_step=points[-1].step + 1 if points else from_step,
            suggested_lr=result.get("suggested_lr"),
            rule=result.get("rule"),
            min_loss_lr=result.get("min_loss_lr"),
            steepest_lr=result.get("steepest_lr"),
            stopped=e.stop_reason,
            result=result or None,
            error=e.error,
            device=e.device,
            attempt=e.attempt,
            worker=e.lease_owner,
            cancel_requested=e.cancel_requested,
            created_by=e.created_by,
            created_at=e.created_at,
            started_at=e.started_at,
            finished_at=e.finished_at,
        )


class RangeTestSummary(BaseModel):
    """One row of the list: what the test ran on, how far it got and what it suggests; its
    points are on `GET /v1/lr-range-tests/{id}`."""

    id: int
    name: str
    status: RangeTestStatus
    dataset: str = Field(description="The spec's dataset: a built-in's or a plugin's name")
    model: str = Field(description="The spec's model type")
    min_lr: float
    max_lr: float
    steps: int
    steps_run: int = Field(description="Points recorded so far")
    suggested_lr: float | None = Field(description="null until finished, or when `rule` says why")
    rule: str | None = Field(description="How `suggested_lr` was chosen, in words and numbers")
    stopped: str | None = Field(description="Why it ended (as on the test itself); null before")
    created_by: str | None = Field(
        default=None, description="the name of the token that created it; null if the API was open"
    )
    created_at: datetime
    finished_at: datetime | None

    @field_serializer("created_at", "finished_at")
    def _times(self, dt: datetime | None) -> datetime | None:
        return as_utc(dt)

    @classmethod
    def of(cls, e: Experiment, steps_run: int) -> RangeTestSummary:
        params = e.range_test or {}
        result = e.range_result or {}
        model = e.spec.get("model") or {}
        return cls(
            id=e.id,
            name=e.name,
            status=e.status,
            dataset=dataset_name(e.spec),
            model=str(model.get("type", "")) if isinstance(model, dict) else str(model),
            min_lr=params["min_lr"],
            max_lr=params["max_lr"],
            steps=params["steps"],
            steps_run=steps_run,
            suggested_lr=result.get("suggested_lr"),
            rule=result.get("rule"),
            stopped=e.stop_reason,
            created_by=e.created_by,
            created_at=e.created_at,
            finished_at=e.finished_at,
        )


class RangeTestPage(BaseModel):
    items: list[RangeTestSummary] = Field(description="Newest first")
    next_cursor: str | None = Field(description="Pass as `cursor` for the next (older) page.")

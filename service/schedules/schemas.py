"""Request and response bodies of `POST /v1/schedules/preview`.

The schedule fields are the experiment spec's own (`service/training/spec.py`), so a spec's
`base_lr`, `solver`, `scheduler`, `warmup` and `early_stopping` can be pasted in unchanged.
"""

from __future__ import annotations

from typing import Annotated, Literal

from pydantic import BaseModel, Field, ValidationInfo, field_validator
from pydantic_core import PydanticCustomError

from service.training.spec import (
    WHOLE,
    EarlyStoppingSpec,
    PositiveFloat,
    SchedulerSpec,
    SolverSpec,
    Strict,
    WarmupSpec,
)

MAX_EPOCHS = 10_000
MAX_STEPS_PER_EPOCH = 10_000
MAX_TOTAL_STEPS = 1_000_000  # epochs × steps_per_epoch: bounds the work of one request
MAX_POINTS = 100_000  # per-step points returned, at most (`max_points`)


def _default_solver() -> SolverSpec:
    # CyclicLR and OneCycleLR cycle the momentum by default: the solver must have one.
    return SolverSpec(type="SGD", params={"momentum": 0.9})


class PreviewRequest(Strict):
    base_lr: PositiveFloat
    scheduler: SchedulerSpec | None = None
    warmup: WarmupSpec | None = None
    epochs: Annotated[int, Field(ge=1, le=MAX_EPOCHS), WHOLE]
    steps_per_epoch: Annotated[
        int,
        Field(
            ge=1,
            le=MAX_STEPS_PER_EPOCH,
            description="Batches per epoch: what `step`-interval schedulers and warmups count",
        ),
        WHOLE,
    ] = 1
    solver: SolverSpec = Field(default_factory=_default_solver)
    monitor_values: Annotated[
        # NaN and the infinities are values here (a run that diverged), unlike the rest of a body.
        list[Annotated[float, Field(allow_inf_nan=True)] | None] | None,
        Field(
            min_length=1,
            max_length=MAX_EPOCHS,
            description=(
                "The monitored metric, one value per epoch (ReduceLROnPlateau's `monitor`, else "
                "early stopping's). Fewer values than epochs end the preview after the last one. "
                "null, NaN, Infinity and -Infinity are a non-finite value: the run diverges there."
            ),
        ),
    ] = None
    early_stopping: EarlyStoppingSpec | None = None
    resolution: Literal["epoch", "step"] = Field(
        default="epoch",
        description=(
            "`step` adds `steps`: the LR at every optimizer step of the epochs run (OneCycleLR's "
            "peak, a per-step warmup), downsampled to `max_points`"
        ),
    )
    max_points: Annotated[
        int,
        Field(
            ge=2,
            le=MAX_POINTS,
            description=(
                "With resolution `step`: at most this many points, the first and last steps and "
                "each bucket's minimum and maximum LR (as GET /v1/experiments/{id}/lr)"
            ),
        ),
        WHOLE,
    ] = 2000

    @field_validator("steps_per_epoch")
    @classmethod
    def _total_steps(cls, v: int, info: ValidationInfo) -> int:
        epochs = info.data.get("epochs")
        if epochs is not None and epochs * v > MAX_TOTAL_STEPS:
            raise PydanticCustomError(
                "too_many_steps",
                "epochs × steps_per_epoch = {total} exceeds {limit}",
                {"total": epochs * v, "limit": MAX_TOTAL_STEPS},
            )
        return v

    @field_validator("monitor_values")
    @classmethod
    def _one_per_epoch(
        cls, v: list[float | None] | None, info: ValidationInfo
    ) -> list[float | None] | None:
        epochs = info.data.get("epochs")
        if v is not None and epochs is not None and len(v) > epochs:
            raise PydanticCustomError(
                "too_long",
                "{n} monitor_values for {epochs} epochs: at most one value per epoch",
                {"n": len(v), "epochs": epochs},
            )
        return v


class PreviewDecision(BaseModel):
    epoch: int
    kind: Literal["reduce_lr", "early_stop", "diverged"]
    monitor: str | None
    old_lr: float | None
    new_lr: float | None
    reason: str


class PreviewStep(BaseModel):
    step: int = Field(description="the optimizer step, counted over the whole run from 0")
    epoch: int
    lr: float = Field(description="param group 0's LR that step uses")


class PreviewOut(BaseModel):
    lr: list[float] = Field(description="Param group 0's LR for each epoch run, as a run records")
    steps: list[PreviewStep] | None = Field(
        default=None, description="resolution `step` only: the LR per optimizer step"
    )
    total_steps: int | None = Field(
        default=None, description="resolution `step` only: steps before downsampling"
    )
    epochs_run: int
    decisions: list[PreviewDecision]
    stop: Literal["early_stopped", "diverged"] | None = Field(
        description="The status a run would end with here; null when it runs to the end"
    )
    stop_reason: str | None
    notes: list[str] = Field(description="What the preview assumed or left out, in words")

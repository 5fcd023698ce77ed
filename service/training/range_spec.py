"""The LR range test's parameters: what the API accepts and the worker runs with (stored as the
run's `range_test`)."""

from __future__ import annotations

from typing import Annotated

from pydantic import Field, ValidationInfo, field_validator
from pydantic_core import PydanticCustomError

from service.training.spec import WHOLE, PositiveFloat, Strict

MIN_STEPS, MAX_STEPS = 10, 10_000


class RangeParams(Strict):
    """What the worker runs with; stored as the row's `range_test`."""

    min_lr: Annotated[PositiveFloat, Field(description="The LR of step 0")]
    max_lr: Annotated[PositiveFloat, Field(description="The LR of the last step; > min_lr")]
    steps: Annotated[
        int,
        Field(
            ge=MIN_STEPS,
            le=MAX_STEPS,
            description="Optimizer steps (one batch each); the LR of step i is "
            "min_lr·(max_lr/min_lr)^(i/(steps-1))",
        ),
        WHOLE,
    ]
    smoothing: Annotated[
        float,
        Field(ge=0, lt=1, allow_inf_nan=False, description="EMA beta of `smoothed_loss`"),
    ] = 0.98
    diverge_factor: Annotated[
        float,
        Field(
            gt=1,
            allow_inf_nan=False,
            description="Stop once the smoothed loss exceeds this many times its best",
        ),
    ] = 4.0

    @field_validator("max_lr")
    @classmethod
    def _above_min(cls, v: float, info: ValidationInfo) -> float:
        low = info.data.get("min_lr")
        if low is not None and v <= low:
            raise PydanticCustomError(
                "max_lr_not_above_min_lr",
                "max_lr ({max_lr}) must be greater than min_lr ({min_lr})",
                {"max_lr": v, "min_lr": low},
            )
        return v

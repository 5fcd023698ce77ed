"""Request and response bodies of the batches API."""

from __future__ import annotations

from datetime import datetime
from typing import Annotated, Literal

from pydantic import BaseModel, ConfigDict, Field

from service.training.spec import ExperimentSpec

MAX_BATCH = 10_000


class BatchIn(BaseModel):
    model_config = ConfigDict(extra="forbid")

    name: Annotated[str, Field(max_length=200)] = ""
    experiments: Annotated[list[ExperimentSpec], Field(min_length=1, max_length=MAX_BATCH)]


class BatchCreated(BaseModel):
    batch_id: str
    ids: list[int]


class BatchOut(BaseModel):
    batch_id: str
    name: str
    size: int = Field(description="the specs submitted; runs deleted since still count here")
    ids: list[int] = Field(description="its runs that remain (a deleted run is left out)")
    counts: dict[str, int] = Field(description="its remaining runs per status")
    status: Literal["running", "finished"] = Field(
        description="finished once every remaining run has a final status (or none is left)"
    )
    created_at: datetime

"""Request and response bodies of the sweeps API."""

from __future__ import annotations

from datetime import datetime
from typing import Annotated, Any, Literal

from pydantic import BaseModel, ConfigDict, Field, model_validator

from service.training.status import ExperimentStatus

FiniteFloat = Annotated[float, Field(allow_inf_nan=False)]
PositiveFloat = Annotated[float, Field(gt=0, allow_inf_nan=False)]
MAX_TRIALS = 1000


class Strict(BaseModel):
    model_config = ConfigDict(extra="forbid")


class DistributionIn(Strict):
    distribution: Literal["uniform", "log_uniform", "int_uniform"]
    low: FiniteFloat
    high: FiniteFloat

    @model_validator(mode="after")
    def _bounds(self) -> DistributionIn:
        if self.high < self.low or (self.high == self.low and self.distribution != "int_uniform"):
            raise ValueError("high must be greater than low")
        if self.distribution == "log_uniform" and self.low <= 0:
            raise ValueError("log_uniform needs low > 0")
        return self


class SweepIn(Strict):
    name: Annotated[str, Field(max_length=200)] = ""
    base: dict[str, Any] = Field(
        default_factory=dict, description="An experiment spec; `parameters` override its fields"
    )
    strategy: Literal["grid", "random", "lr_coarse_to_fine"]
    # Values are a list or a DistributionIn, told apart in trials.choices so an error's `loc`
    # is the path itself rather than a Pydantic union branch.
    parameters: dict[Annotated[str, Field(min_length=1, max_length=200)], Any] = Field(
        default_factory=dict,
        description="Dotted spec paths (`base_lr`, `scheduler.params.gamma`) to a list of values "
        "(grid; a uniform choice for random) or a distribution (random only)",
    )
    trials: Annotated[int, Field(ge=1, le=MAX_TRIALS)] | None = Field(
        default=None, description="random: how many draws"
    )
    seed: int = Field(default=0, description="random: the draws' seed")
    min_lr: PositiveFloat = Field(default=1e-6, description="lr_coarse_to_fine: first decade")
    max_lr: PositiveFloat = Field(default=1.0, description="lr_coarse_to_fine: last decade")
    fine_points: Annotated[int, Field(ge=1, le=50)] = Field(
        default=4, description="lr_coarse_to_fine: LRs in the finer scan"
    )
    metric: str = Field(default="val_loss", description="what ranks the runs")
    mode: Literal["min", "max"] | None = Field(
        default=None, description="default: max for val_accuracy, else min"
    )


class SweepCreated(BaseModel):
    sweep_id: int
    ids: list[int]


class SweepRun(BaseModel):
    experiment_id: int
    name: str
    status: ExperimentStatus
    stage: int
    params: dict[str, Any] = Field(description="the swept fields' values in this run")
    score: float | None = Field(description="the run's best `metric` so far")
    epochs_run: int
    epochs: int


class LeaderboardEntry(SweepRun):
    rank: int


class SweepOut(BaseModel):
    id: int
    name: str
    strategy: str
    status: Literal["running", "finished", "cancelled"]
    stage: int
    metric: str
    mode: str
    rule: str = Field(description="how runs are ranked and, for lr_coarse_to_fine, stage 2 chosen")
    note: str | None = Field(description="what the last stage decided")
    counts: dict[str, int]
    experiments: list[SweepRun]
    leaderboard: list[LeaderboardEntry]
    best: LeaderboardEntry | None = Field(description="the top run, once one has finished well")
    request: dict[str, Any]
    created_at: datetime
    finished_at: datetime | None


class SweepSummary(BaseModel):
    id: int
    name: str
    strategy: str
    status: str
    stage: int
    counts: dict[str, int]
    created_at: datetime


class SweepPage(BaseModel):
    items: list[SweepSummary]

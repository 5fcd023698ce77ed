"""Request and response bodies of the sweeps API."""

from __future__ import annotations

from datetime import datetime
from typing import Annotated, Any, Literal

from pydantic import AfterValidator, BaseModel, Field, model_validator

from service.training.spec import MAX_EPOCHS, MAX_SEED, WHOLE, Monitor, Strict, plain_json
from service.training.status import ExperimentStatus

FiniteFloat = Annotated[float, Field(allow_inf_nan=False)]
PositiveFloat = Annotated[float, Field(gt=0, allow_inf_nan=False)]
MAX_TRIALS = 1000


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


class PrunerIn(Strict):
    """Stops weak runs early, from the sweep's stored histories (CONTRACT.md; the rules in
    service/training/pruning.py)."""

    type: Literal["successive_halving", "asha", "median", "hyperband"]
    metric: Monitor | None = Field(default=None, description="default: the sweep's metric")
    mode: Literal["min", "max"] | None = Field(
        default=None, description="default: the sweep's mode for its metric"
    )
    min_epochs: Annotated[int, Field(ge=1, le=MAX_EPOCHS), WHOLE] = Field(
        default=1, description="r: the first rung (median: the first epoch it may stop)"
    )
    reduction_factor: Annotated[int, Field(ge=2, le=100), WHOLE] = Field(
        default=3, description="η: rungs at r·η^k; the best max(1, ⌊n/η⌋) of n continue"
    )
    min_runs: Annotated[int, Field(ge=1, le=MAX_TRIALS), WHOLE] = Field(
        default=5, description="median: other runs that must have reached the epoch"
    )
    seed: Annotated[int, Field(ge=-MAX_SEED, le=MAX_SEED), WHOLE] = Field(
        default=0, description="hyperband: the seed of the bracket draw"
    )


class SweepIn(Strict):
    name: Annotated[str, Field(max_length=200)] = ""
    # Stored as the sweep's request: plain JSON only (no NaN, no integer past 64 bits).
    base: Annotated[dict[str, Any], AfterValidator(plain_json)] = Field(
        default_factory=dict, description="An experiment spec; `parameters` override its fields"
    )
    strategy: Literal["grid", "random", "lr_coarse_to_fine"]
    # Values are a list or a DistributionIn, told apart in trials.choices so an error's `loc`
    # is the path itself rather than a Pydantic union branch.
    parameters: Annotated[
        dict[Annotated[str, Field(min_length=1, max_length=200)], Any],
        AfterValidator(plain_json),
    ] = Field(
        default_factory=dict,
        description="Dotted spec paths (`base_lr`, `scheduler.params.gamma`) to a list of values "
        "(grid; a uniform choice for random) or a distribution (random only)",
    )
    trials: Annotated[int, Field(ge=1, le=MAX_TRIALS), WHOLE] | None = Field(
        default=None, description="random: how many draws"
    )
    seed: Annotated[int, Field(ge=-MAX_SEED, le=MAX_SEED), WHOLE] = Field(
        default=0, description="random: the draws' seed"
    )
    min_lr: PositiveFloat = Field(default=1e-6, description="lr_coarse_to_fine: first decade")
    max_lr: PositiveFloat = Field(default=1.0, description="lr_coarse_to_fine: last decade")
    fine_points: Annotated[int, Field(ge=1, le=50), WHOLE] = Field(
        default=4, description="lr_coarse_to_fine: LRs in the finer scan"
    )
    metric: Monitor = Field(default="val_loss", description="what ranks the runs")
    mode: Literal["min", "max"] | None = Field(
        default=None, description="default: max for val_accuracy, else min"
    )
    pruner: PrunerIn | None = Field(default=None, description="stop weak runs early")


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


class SweepDecisionOut(BaseModel):
    """A pruner's decision about one run, with what it compared."""

    experiment_id: int
    epoch: int
    stage: int
    bracket: int = Field(description="hyperband's bracket; 0 for the other rules")
    rung: int | None = Field(description="the rung's index (0: the first); None for median")
    value: float | None = Field(description="the run's metric at the rung (median: its best)")
    cutoff: float | None = Field(description="the worst value that continues (median: the median)")
    compared: int = Field(description="how many values were compared, the run's own included")
    decision: Literal["continue", "stop"]
    reason: str
    created_at: datetime


class RungOut(BaseModel):
    stage: int
    bracket: int
    epoch: int
    reached: int
    continued: int
    decided_at: datetime


class PruningOut(BaseModel):
    type: str
    metric: str
    mode: str
    rule: str = Field(description="the rule in words, with its parameters")
    rungs: list[RungOut] = Field(description="synchronous rungs decided so far")
    pruned: int = Field(description="runs the pruner stopped")
    epochs_run: int = Field(description="epochs the sweep's runs have trained")
    epochs_unpruned: int = Field(description="epochs the same sweep unpruned would train")
    epochs_saved: int = Field(description="epochs the pruned runs did not train")


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
    pruning: PruningOut | None = Field(default=None, description="with a pruner: what it did")
    request: dict[str, Any]
    created_by: str | None = Field(
        default=None, description="the name of the token that created it; null if the API was open"
    )
    created_at: datetime
    finished_at: datetime | None


class SweepBest(BaseModel):
    """A sweep's top run, as in the detail's `best`: by its best `metric` among the runs that
    finished well (succeeded, early_stopped), ties to the lower id."""

    experiment_id: int
    score: float = Field(description="the run's best value of the sweep's `metric`")


class SweepSummary(BaseModel):
    id: int
    name: str
    strategy: str
    status: str
    stage: int
    metric: str = Field(description="what ranks the runs")
    mode: Literal["min", "max"] = Field(description="min: lower `metric` is better")
    parameters: list[str] = Field(description="the swept fields (dotted spec paths)")
    pruner: str | None = Field(description="the pruner's type; null without one")
    best: SweepBest | None = Field(description="the top run, once one has finished well")
    counts: dict[str, int]
    created_by: str | None = Field(
        default=None, description="the name of the token that created it; null if the API was open"
    )
    created_at: datetime


class SweepPage(BaseModel):
    items: list[SweepSummary]

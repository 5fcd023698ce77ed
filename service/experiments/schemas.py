"""Response bodies of the experiments API (the request body is `spec.ExperimentSpec`)."""

from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, field_serializer, model_serializer
from sqlalchemy import Row

from service.artifacts.models import Artifact
from service.experiments.models import Attempt, Decision, EpochRow, Experiment
from service.kit.time import as_utc
from service.training.decisions import stored_best_criterion
from service.training.spec import stored_epochs
from service.training.status import FINAL, ExperimentStatus


class Progress(BaseModel):
    epochs_run: int
    epochs: int
    fraction: float
    stopped: str | None = Field(
        default=None,
        description="why a run that ended early stopped, in a sentence: 'stopped early at epoch "
        "12 of 50: val_loss has not improved…' (early_stopped, diverged, pruned, cancelled, "
        "failed); null while it runs and when it succeeded",
    )


# How a final status that is not success reads in front of "at epoch N of M".
STOPPED: dict[str, str] = {
    ExperimentStatus.EARLY_STOPPED: "stopped early",
    ExperimentStatus.DIVERGED: "diverged",
    ExperimentStatus.PRUNED: "pruned",
    ExperimentStatus.CANCELLED: "stopped",
    ExperimentStatus.FAILED: "failed",
}


def stopped(status: str, epochs_run: int, epochs: int, reason: str | None) -> str | None:
    """`Progress.stopped`: the status, where it stopped and the stored reason (the decision's
    sentence, the pruner's, or how it was cancelled; a failure's error is the run's `error`)."""
    phrase = STOPPED.get(status)
    if phrase is None:
        return None
    where = (
        f"{phrase} at epoch {epochs_run} of {epochs}" if epochs_run else f"{phrase} before epoch 1"
    )
    return f"{where}: {reason}" if reason and status != ExperimentStatus.FAILED else where


class Best(BaseModel):
    """The run's best epoch so far, named by the metric that defines it: early stopping's monitor
    and mode when it is on, else the ReduceLROnPlateau monitor's, else the lowest val_loss."""

    metric: str
    mode: Literal["min", "max"]
    value: float
    epoch: int

    @classmethod
    def of(cls, spec: dict[str, Any], value: float | None, epoch: int | None) -> Best | None:
        if value is None or epoch is None:
            return None
        metric, mode = stored_best_criterion(spec)
        return cls(metric=metric, mode="max" if mode == "max" else "min", value=value, epoch=epoch)


class AttemptOut(BaseModel):
    """One attempt at the run: a worker's claim of it, from start to how it ended."""

    attempt: int
    worker: str = Field(description="host:pid of the worker that ran it")
    started_at: datetime
    ended_at: datetime | None
    resumed_from_epoch: int | None = Field(
        description="the checkpoint's epoch it resumed from (0: from the start); null until "
        "it has loaded one"
    )
    outcome: str | None = Field(
        description="a final status, handed_back (worker shutdown) or lost (its lease expired); "
        "null while it runs"
    )

    @field_serializer("started_at", "ended_at")
    def _times(self, dt: datetime | None) -> datetime | None:
        return as_utc(dt)

    @classmethod
    def of(cls, a: Attempt | Row[Any]) -> AttemptOut:
        return cls(
            attempt=a.attempt,
            worker=a.worker,
            started_at=a.started_at,
            ended_at=a.ended_at,
            resumed_from_epoch=a.resumed_from_epoch,
            outcome=a.outcome,
        )


class ModelOut(BaseModel):
    """The run's final model (safetensors), once it has ended with one."""

    size: int = Field(description="bytes")
    sha256: str = Field(description="also the download's ETag")
    url: str = Field(description="GET it for the file: /v1/experiments/{id}/model")

    @classmethod
    def of(cls, experiment_id: int, a: Artifact | Row[Any]) -> ModelOut:
        return cls(size=a.size, sha256=a.sha256, url=f"/v1/experiments/{experiment_id}/model")


class ExperimentOut(BaseModel):
    model_config = ConfigDict(from_attributes=True)

    id: int
    kind: str = Field(description="train, or lr_range_test (see /v1/lr-range-tests/{id})")
    name: str
    status: ExperimentStatus
    dataset: str
    spec: dict[str, Any]
    tags: dict[str, str]
    batch_id: str | None
    sweep_id: int | None
    progress: Progress
    split_sizes: dict[str, int] | None
    steps_per_epoch: int | None
    device: str | None
    param_count: int | None = Field(description="the model's trainable parameters, once it runs")
    plugins: dict[str, Any] | None = Field(
        description="the plugins it trains with: {model|dataset: {name, package, version}}"
    )
    attempt: int
    worker: str | None = Field(description="host:pid of the worker holding the run's lease")
    epochs_run: int
    best_epoch: int | None
    best_value: float | None
    best: Best | None = Field(
        default=None, description="best_value and best_epoch with the metric they are the best of"
    )
    stop_reason: str | None
    test_metrics: dict[str, float] | None
    error: str | None
    cancel_requested: bool
    created_by: str | None = Field(
        default=None, description="the name of the token that created it; null if the API was open"
    )
    created_at: datetime
    started_at: datetime | None
    finished_at: datetime | None
    attempts: list[AttemptOut] = Field(
        default_factory=list, description="every worker's attempt at the run, oldest first"
    )
    model: ModelOut | None = Field(
        default=None, description="the final model, once the run has ended with one"
    )

    @field_serializer("created_at", "started_at", "finished_at")
    def _times(self, dt: datetime | None) -> datetime | None:
        return as_utc(dt)

    @classmethod
    def of(
        cls,
        e: Experiment | Row[Any],
        tags: dict[str, str],
        attempts: Sequence[Attempt | Row[Any]] = (),
        model: Artifact | Row[Any] | None = None,
    ) -> ExperimentOut:
        """`model`: the run's model artifact row; shown only once the run has ended (as the
        download serves it). Rows are ORM objects or Core rows of the same columns."""
        epochs = stored_epochs(e.spec)
        return cls(
            id=e.id,
            kind=e.kind,
            name=e.name,
            status=e.status,
            dataset=dataset_name(e.spec),
            spec=e.spec,
            tags=tags,
            batch_id=e.batch_id,
            sweep_id=e.sweep_id,
            progress=Progress(
                epochs_run=e.epochs_run,
                epochs=epochs,
                fraction=round(e.epochs_run / epochs, 4) if epochs else 0.0,
                stopped=stopped(e.status, e.epochs_run, epochs, e.stop_reason),
            ),
            split_sizes=e.split_sizes,
            steps_per_epoch=e.steps_per_epoch,
            device=e.device,
            param_count=e.param_count,
            plugins=e.plugins,
            attempt=e.attempt,
            worker=e.lease_owner,
            epochs_run=e.epochs_run,
            best_epoch=e.best_epoch,
            best_value=e.best_value,
            best=Best.of(e.spec, e.best_value, e.best_epoch),
            stop_reason=e.stop_reason,
            test_metrics=e.test_metrics,
            error=e.error,
            cancel_requested=e.cancel_requested,
            created_by=e.created_by,
            created_at=e.created_at,
            started_at=e.started_at,
            finished_at=e.finished_at,
            attempts=[AttemptOut.of(a) for a in attempts],
            model=ModelOut.of(e.id, model) if model is not None and e.status in FINAL else None,
        )


def dataset_name(spec: dict[str, Any]) -> str:
    """A stored spec's dataset: a name, or a plugin dataset's {type, params}."""
    dataset = spec.get("dataset", "")
    return str(dataset.get("type", "")) if isinstance(dataset, dict) else str(dataset)


class ExperimentPage(BaseModel):
    items: list[ExperimentOut]
    next_cursor: str | None = Field(description="Pass as `cursor` for the next (older) page.")


def unset_keys(row: Any) -> list[str]:
    """The keys an epoch row leaves out (`row`: anything with `.get`): skipped_steps where it
    was not counted (fp16 only), and the other task's validation metric (a row carries
    val_accuracy for classification, val_mae for regression). A row with neither (a regression
    epoch that diverged: its NaN MAE is stored as null on SQLite) keeps both, null, so the key
    a client reads for its task is always there."""
    out = [] if row.get("skipped_steps") is not None else ["skipped_steps"]
    no_accuracy, no_mae = row.get("val_accuracy") is None, row.get("val_mae") is None
    if no_accuracy != no_mae:
        out.append("val_accuracy" if no_accuracy else "val_mae")
    return out


class EpochOut(BaseModel):
    epoch: int
    lr: float = Field(description="param group 0's LR at the epoch's first optimizer step")
    lr_min: float | None = Field(
        default=None,
        description="its minimum over the epoch's optimizer steps (null in rows recorded "
        "before it was kept)",
    )
    lr_max: float | None = Field(default=None, description="its maximum over the epoch's steps")
    train_loss: float | None
    val_loss: float | None
    val_accuracy: float | None = None
    val_mae: float | None = None
    duration_s: float
    decision: str | None
    skipped_steps: int | None = Field(
        default=None, description="precision fp16: steps the GradScaler skipped this epoch"
    )

    @model_serializer(mode="wrap")
    def _one_val_metric(self, handler: Any) -> dict[str, Any]:
        data: dict[str, Any] = handler(self)
        for key in unset_keys(data):
            del data[key]
        return data

    @classmethod
    def of(cls, r: EpochRow) -> EpochOut:
        return cls(
            epoch=r.epoch,
            lr=r.lr,
            lr_min=r.lr_min,
            lr_max=r.lr_max,
            train_loss=r.train_loss,
            val_loss=r.val_loss,
            val_accuracy=r.val_accuracy,
            val_mae=r.val_mae,
            duration_s=r.duration_s,
            decision=r.decision,
            skipped_steps=r.skipped_steps,
        )


class MetricsPage(BaseModel):
    experiment_id: int
    status: ExperimentStatus
    epochs: list[EpochOut]
    next_after_epoch: int = Field(description="Pass as `after_epoch` to get only newer rows.")


class EpochLRPoint(BaseModel):
    epoch: int
    lr: float = Field(description="param group 0's LR at the epoch's first optimizer step")
    lr_min: float | None = Field(description="the minimum over the epoch's steps")
    lr_max: float | None = Field(description="the maximum over the epoch's steps")


class StepLRPoint(BaseModel):
    step: int = Field(description="the optimizer step, counted over the whole run from 0")
    epoch: int
    lr: float = Field(description="param group 0's LR that step used")


class LRTrace(BaseModel):
    """GET /v1/experiments/{id}/lr: the run's LR per epoch or per optimizer step so far."""

    experiment_id: int
    status: ExperimentStatus
    resolution: Literal["epoch", "step"]
    source: Literal["recorded", "computed"] = Field(
        description="recorded: as the worker stored it (every epoch row; per step for runs whose "
        "LR depends on data or the optimizer: hypergradient descent, schedule-free, fp16 with a "
        "per-step scheduler); computed: per step from the spec by the worker's schedule code "
        "(per-epoch schedules: each step has its epoch's recorded LR)"
    )
    steps_per_epoch: int | None
    total_points: int = Field(description="points before downsampling")
    downsampled: bool = Field(
        description="max_points was smaller than total_points: the first and last points, and "
        "each bucket's minimum and maximum"
    )
    points: list[StepLRPoint] | list[EpochLRPoint]


class DecisionOut(BaseModel):
    model_config = ConfigDict(from_attributes=True)

    epoch: int
    kind: str = Field(
        description="reduce_lr | early_stop | diverged | pruned (a sweep's pruner "
        "stopped the run: `monitor` its metric, `value` at `epoch`)"
    )
    monitor: str | None
    value: float | None
    best: float | None
    best_epoch: int | None
    old_lr: float | None
    new_lr: float | None
    reason: str


class DecisionList(BaseModel):
    experiment_id: int
    status: ExperimentStatus
    decisions: list[DecisionOut]

    @classmethod
    def of(cls, e: Experiment, rows: list[Decision]) -> DecisionList:
        return cls(
            experiment_id=e.id,
            status=e.status,
            decisions=[DecisionOut.model_validate(r) for r in rows],
        )


class SeriesOut(BaseModel):
    """One experiment's per-epoch values, index i being epoch i + 1 (null where it has none)."""

    experiment_id: int
    name: str
    status: ExperimentStatus
    spec: dict[str, Any]
    tags: dict[str, str]
    lr: list[float | None]
    train_loss: list[float | None]
    val_loss: list[float | None]
    val_accuracy: list[float | None]
    val_mae: list[float | None]
    duration_s: list[float | None] = Field(
        default_factory=list,
        description="each epoch's wall-clock seconds (their running sum "
        "is the time since the run started training)",
    )
    steps_per_epoch: int | None = Field(
        default=None,
        description="optimizer steps per epoch, once it runs (epoch × this is the step count)",
    )
    decisions: list[DecisionOut]


class CompareOut(BaseModel):
    epochs: list[int] = Field(description="1..N, the longest run's epochs; every series aligns")
    series: list[SeriesOut]

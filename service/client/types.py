"""What the API answers, as TypedDicts: the JSON bodies as they come, typed for mypy and editors.

Fields a newer or older server may leave out are `NotRequired`; read them with `.get()`.
"""

from __future__ import annotations

from typing import Any, NotRequired, TypedDict

from service.training.status import FINAL, OK, ExperimentStatus

# The service's own vocabulary (an enum in the OpenAPI), not a copy kept here.
STATUSES: tuple[str, ...] = tuple(ExperimentStatus)
FINAL_STATUSES: frozenset[str] = frozenset(FINAL)
# What a script waiting on runs counts as a good ending: a run its sweep's pruner stopped ended
# as designed (CONTRACT.md), not in failure.
OK_STATUSES: frozenset[str] = frozenset(OK) | {ExperimentStatus.PRUNED}


class ErrorDetail(TypedDict):
    """One entry of an error body's `detail`: the field path, a message and a machine type."""

    loc: list[str | int]
    msg: str
    type: str


class Progress(TypedDict):
    epochs_run: int
    epochs: int
    fraction: float
    # Why a run that ended early stopped: "stopped early at epoch 12 of 50: val_loss has not…"
    stopped: NotRequired[str | None]


class Best(TypedDict):
    """A run's best epoch so far, by the metric that defines it (early stopping's monitor, else
    the plateau monitor's, else val_loss)."""

    metric: str
    mode: str  # min | max
    value: float
    epoch: int


class Attempt(TypedDict):
    """One worker's attempt at a run (oldest first in `Experiment.attempts`)."""

    attempt: int
    worker: str
    started_at: str
    ended_at: str | None
    resumed_from_epoch: int | None  # the checkpoint's epoch (0: from the start)
    outcome: str | None  # a final status, handed_back or lost; None while it runs


class ModelInfo(TypedDict):
    """An ended run's final model: GET `url` (`Client.download_model`) for the file."""

    size: int
    sha256: str
    url: str


class Experiment(TypedDict):
    id: int
    name: str
    status: str
    dataset: str
    spec: dict[str, Any]
    tags: dict[str, str]
    batch_id: str | None
    sweep_id: NotRequired[int | None]
    kind: NotRequired[str]
    progress: Progress
    split_sizes: dict[str, int] | None
    steps_per_epoch: int | None
    device: str | None
    attempt: int
    worker: str | None
    param_count: NotRequired[int | None]
    plugins: NotRequired[dict[str, Any] | None]
    epochs_run: int
    best_epoch: int | None
    best_value: float | None
    best: NotRequired[Best | None]
    stop_reason: str | None
    test_metrics: dict[str, float] | None
    error: str | None
    cancel_requested: bool
    created_by: NotRequired[str | None]  # the token's name; None when the API was open
    created_at: str
    started_at: str | None
    finished_at: str | None
    attempts: NotRequired[list[Attempt]]
    model: NotRequired[ModelInfo | None]


class ExperimentPage(TypedDict):
    items: list[Experiment]
    next_cursor: str | None


class EpochRow(TypedDict):
    epoch: int
    lr: float
    lr_min: NotRequired[float | None]  # over the epoch's optimizer steps (None in older rows)
    lr_max: NotRequired[float | None]
    train_loss: float | None
    val_loss: float | None
    val_accuracy: NotRequired[float | None]  # classification
    val_mae: NotRequired[float | None]  # regression
    duration_s: float
    decision: str | None


class MetricsPage(TypedDict):
    experiment_id: int
    status: str
    epochs: list[EpochRow]
    next_after_epoch: int


class LRPoint(TypedDict):
    """One point of `LRTrace.points`: per epoch (lr_min, lr_max) or per step (step)."""

    epoch: int
    lr: float
    step: NotRequired[int]  # resolution step: the optimizer step over the run, from 0
    lr_min: NotRequired[float | None]  # resolution epoch
    lr_max: NotRequired[float | None]


class LRTrace(TypedDict):
    """GET /v1/experiments/{id}/lr (`Client.lr`)."""

    experiment_id: int
    status: str
    resolution: str  # epoch | step
    source: str  # recorded | computed
    steps_per_epoch: int | None
    total_points: int  # before downsampling
    downsampled: bool
    points: list[LRPoint]


class Decision(TypedDict):
    epoch: int
    kind: str  # reduce_lr | early_stop | diverged | pruned
    monitor: str | None
    value: float | None
    best: float | None
    best_epoch: int | None
    old_lr: float | None
    new_lr: float | None
    reason: str


class DecisionList(TypedDict):
    experiment_id: int
    status: str
    decisions: list[Decision]


class BatchCreated(TypedDict):
    batch_id: str
    ids: list[int]


class Batch(TypedDict):
    batch_id: str
    name: str
    ids: list[int]
    counts: dict[str, int]
    status: str  # running | finished
    size: NotRequired[int]
    created_at: NotRequired[str]


class SweepCreated(TypedDict):
    sweep_id: int
    ids: list[int]


class SweepExperiment(TypedDict):
    """A sweep's run; the server names its id `experiment_id` (read it with `sweep_run_id`)."""

    experiment_id: NotRequired[int]
    id: NotRequired[int]
    name: str
    status: str
    stage: int
    params: dict[str, Any]
    score: float | None
    best_epoch: NotRequired[int | None]
    epochs_run: int
    epochs: int


class LeaderboardEntry(TypedDict):
    rank: int
    experiment_id: int
    id: NotRequired[int]
    name: str
    status: str
    stage: int
    params: dict[str, Any]
    score: float | None


class SweepRung(TypedDict):
    """A synchronous rung the pruner decided (successive halving, hyperband): of the runs of
    its stage and bracket that `reached` it, `continued` went on."""

    stage: int
    bracket: int
    epoch: int
    reached: int
    continued: int
    decided_at: str


class SweepPruning(TypedDict):
    """`Sweep.pruning`: what a sweep's pruner did (None for a sweep without one)."""

    type: str  # successive_halving | asha | median | hyperband
    metric: str
    mode: str
    rule: str  # the rule in words, with its parameters
    rungs: list[SweepRung]
    pruned: int  # runs the pruner stopped
    epochs_run: int  # epochs the sweep's runs have trained
    epochs_unpruned: int  # epochs the same sweep would train unpruned
    epochs_saved: int  # epochs the pruned runs did not train


class SweepDecision(TypedDict):
    """A pruner's decision about one run at one epoch (`Client.sweep_decisions`), with what it
    compared and its reason in a sentence."""

    experiment_id: int
    epoch: int
    stage: int
    bracket: int  # hyperband's bracket; 0 for the other rules
    rung: int | None  # the rung's index (0: the first); None for median
    value: float | None  # the run's metric at the rung (median: its best so far)
    cutoff: float | None  # the worst value that continues (median: the median)
    compared: int  # how many values were compared, the run's own included
    decision: str  # continue | stop
    reason: str
    created_at: str


class Sweep(TypedDict):
    """GET /v1/sweeps/{id}; `list_sweeps()` items carry only id, name, strategy, status,
    stage, metric, mode, counts, created_at, created_by, `parameters` (the swept fields),
    `pruner` (its type or None) and a `best` of only `{experiment_id, score}`."""

    id: int
    name: str
    strategy: str
    status: str  # running | finished | cancelled
    stage: int
    metric: NotRequired[str]
    mode: NotRequired[str]
    created_at: NotRequired[str]
    rule: NotRequired[str]
    note: NotRequired[str | None]
    counts: dict[str, int]
    experiments: NotRequired[list[SweepExperiment]]
    leaderboard: NotRequired[list[LeaderboardEntry]]
    best: NotRequired[LeaderboardEntry | None]
    pruning: NotRequired[SweepPruning | None]  # with a pruner: what it did


class RangeTestCreated(TypedDict):
    id: int
    status: str


class RangePoint(TypedDict):
    step: int
    lr: float
    loss: float | None
    smoothed_loss: float | None


class RangeTest(TypedDict):
    id: int
    status: str
    name: NotRequired[str]
    points: list[RangePoint]  # with step >= the `from_step` asked for
    next_from_step: NotRequired[int]
    steps: int
    steps_run: NotRequired[int]
    suggested_lr: float | None
    rule: str | None
    min_loss_lr: NotRequired[float | None]
    steepest_lr: NotRequired[float | None]
    stopped: NotRequired[str | None]
    error: NotRequired[str | None]
    min_lr: NotRequired[float]
    max_lr: NotRequired[float]


class RangeTestSummary(TypedDict):
    """An item of GET /v1/lr-range-tests: a test without its points."""

    id: int
    name: str
    status: str
    dataset: str
    model: str
    min_lr: float
    max_lr: float
    steps: int
    steps_run: int
    suggested_lr: float | None
    rule: str | None
    stopped: str | None
    created_by: str | None
    created_at: str
    finished_at: str | None


class Series(TypedDict):
    experiment_id: int
    name: str
    status: str
    lr: list[float | None]
    train_loss: list[float | None]
    val_loss: list[float | None]
    val_accuracy: list[float | None]
    val_mae: list[float | None]


class Comparison(TypedDict):
    epochs: list[int]
    series: list[Series]


class Worker(TypedDict):
    """A worker's registry row (GET /v1/workers)."""

    id: str
    host: str
    pid: int
    state: str  # alive | lost | stopped
    queues: list[str]
    devices: list[dict[str, Any]]
    # {"models": {NAME: {params, var_keyword, package, version}}, "datasets": {...}, "errors": {}}
    plugins: dict[str, Any]
    current_run: int | None
    started_at: str
    last_seen: str


class Dataset(TypedDict):
    """A dataset (GET /v1/datasets, or the answer to an upload)."""

    name: str
    task: str  # classification | regression
    n_samples: int
    feature_shape: list[int]
    n_classes: int | None
    image_shape: list[int] | None
    builtin: bool
    description: str
    source: dict[str, Any] | None  # an upload's format, file name, sha256, label_column, …
    created_at: str | None


class Readiness(TypedDict):
    status: str  # ready | unavailable
    checks: dict[str, dict[str, Any]]


def sweep_run_id(run: SweepExperiment | LeaderboardEntry) -> int:
    """A sweep run's experiment id, whichever key the server used."""
    value = run.get("experiment_id", run.get("id"))
    if value is None:
        raise KeyError("experiment_id")
    return int(value)

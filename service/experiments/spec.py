"""The experiment spec (CONTRACT.md): its shape in Pydantic, its meaning checked against torch.

Shape errors (unknown fields, wrong types, out-of-range numbers) come from Pydantic. Meaning errors
(an optimizer that does not exist, a kwarg its class does not take, a value torch refuses) come
from `check_spec`, which builds the torch objects on a dummy parameter, so what torch would refuse
mid-run is refused at submit time, with the field path.
"""

from __future__ import annotations

import functools
import json
import re
from typing import Annotated, Any, Literal

import torch
from pydantic import BaseModel, ConfigDict, Field, field_validator, model_validator

from service.datasets.builtin import DatasetInfo
from service.datasets.split import split_sizes, steps_per_epoch
from service.experiments import catalog
from service.kit.errors import ErrorItem, item
from worker.engine.hypergradient import SOLVERS as HYPERGRADIENT_SOLVERS
from worker.engine.hypergradient import Hypergradient

FiniteFloat = Annotated[float, Field(allow_inf_nan=False)]
PositiveFloat = Annotated[float, Field(gt=0, allow_inf_nan=False)]
Fraction = Annotated[float, Field(ge=0, le=1, allow_inf_nan=False)]

MAX_EPOCHS = 100_000
METRICS_CLASSIFICATION = ("train_loss", "val_loss", "val_accuracy")
METRICS_REGRESSION = ("train_loss", "val_loss", "val_mae")
METRICS_ANY = ("train_loss", "val_loss", "val_accuracy", "val_mae")  # no dataset: either task's


class Strict(BaseModel):
    model_config = ConfigDict(extra="forbid")


class SplitSpec(Strict):
    train: Fraction = 0.8
    val: Annotated[float, Field(gt=0, le=1, allow_inf_nan=False)] = 0.2
    test: Fraction = 0.0
    seed: int = 0
    stratify: bool = True

    @model_validator(mode="after")
    def _fractions_fit(self) -> SplitSpec:
        if self.train <= 0:
            raise ValueError("train fraction must be > 0")
        if self.train + self.val + self.test > 1 + 1e-9:
            raise ValueError(
                f"train + val + test = {self.train + self.val + self.test:g} exceeds 1"
            )
        return self


class ModelSpec(Strict):
    type: Literal["linear", "mlp", "cnn"] = "mlp"
    hidden: list[Annotated[int, Field(ge=1, le=65536)]] = Field(default=[64], max_length=16)
    activation: Literal["relu", "tanh", "gelu", "sigmoid", "silu", "leaky_relu", "elu"] = "relu"
    dropout: Annotated[float, Field(ge=0, lt=1)] = 0.0
    channels: list[Annotated[int, Field(ge=1, le=1024)]] = Field(default=[16, 32], max_length=6)


class HypergradientSpec(Strict):
    """Hypergradient descent (docs/hypergradient.md): the LR adapts itself online."""

    hyper_lr: PositiveFloat  # β in Baydin et al. (2018)


class SolverSpec(Strict):
    type: str = "SGD"
    params: dict[str, Any] = Field(default_factory=dict)
    # Left out of dumps when absent, so specs without it store and hash as before.
    hypergradient: HypergradientSpec | None = Field(default=None, exclude_if=lambda v: v is None)


class SchedulerSpec(Strict):
    type: str
    params: dict[str, Any] = Field(default_factory=dict)
    monitor: str = "val_loss"  # read by ReduceLROnPlateau only
    interval: Literal["epoch", "step"] | None = None  # None: CONTRACT.md's default per type

    @property
    def effective_interval(self) -> str:
        if self.interval is not None:
            return self.interval
        return "step" if self.type in catalog.STEP_INTERVAL_DEFAULT else "epoch"


class WarmupSpec(Strict):
    epochs: Annotated[int, Field(ge=1, le=MAX_EPOCHS)]
    start_factor: Annotated[float, Field(gt=0, le=1)] = 0.1


class EarlyStoppingSpec(Strict):
    monitor: str = "val_loss"
    mode: Literal["min", "max"] = "min"
    patience: Annotated[int, Field(ge=1, le=MAX_EPOCHS)] = 10
    min_delta: Annotated[float, Field(ge=0, allow_inf_nan=False)] = 0.0
    baseline: FiniteFloat | None = None
    restore_best: bool = True


class ExperimentSpec(Strict):
    name: Annotated[str, Field(max_length=200)] = ""
    dataset: Annotated[str, Field(min_length=1, max_length=100)] = "digits"
    split: SplitSpec = Field(default_factory=SplitSpec)
    model: ModelSpec = Field(default_factory=ModelSpec)
    solver: SolverSpec = Field(default_factory=SolverSpec)
    base_lr: PositiveFloat = 0.01
    scheduler: SchedulerSpec | None = None
    warmup: WarmupSpec | None = None
    early_stopping: EarlyStoppingSpec | None = None
    epochs: Annotated[int, Field(ge=1, le=MAX_EPOCHS)] = 20
    batch_size: Annotated[int, Field(ge=1, le=1_000_000)] = 64
    seed: int = 0
    device: str = "auto"
    checkpoint_every: Annotated[int, Field(ge=1, le=MAX_EPOCHS)] | None = None
    tags: dict[
        Annotated[str, Field(min_length=1, max_length=100)], Annotated[str, Field(max_length=200)]
    ] = Field(default_factory=dict, max_length=50)

    @field_validator("device")
    @classmethod
    def _device(cls, v: str) -> str:
        if not re.fullmatch(r"auto|cpu|cuda(:\d+)?", v):
            raise ValueError("device must be 'auto', 'cpu', 'cuda' or 'cuda:N'")
        return v

    @property
    def is_constant_schedule(self) -> bool:
        return self.scheduler is None or self.scheduler.type == catalog.CONSTANT


def metrics_for(task: str) -> tuple[str, ...]:
    return METRICS_CLASSIFICATION if task == "classification" else METRICS_REGRESSION


def _allowed(names: Any) -> str:
    return ", ".join(sorted(names))


def _check_solver(spec: ExperimentSpec) -> list[ErrorItem]:
    loc: list[str | int] = ["solver"]
    if spec.solver.type not in catalog.SOLVERS:
        return [
            item(
                [*loc, "type"],
                f"unknown solver {spec.solver.type!r}; allowed: {_allowed(catalog.SOLVERS)}",
                "unknown_solver",
            )
        ]
    errors = _check_kwargs(
        "solver", spec.solver.type, spec.solver.params, catalog.solver_kwargs(spec.solver.type)
    )
    if errors:
        return errors
    hyper_lr = spec.solver.hypergradient.hyper_lr if spec.solver.hypergradient else None
    failure = _solver_failure(
        spec.solver.type, json.dumps(spec.solver.params, sort_keys=True), hyper_lr
    )
    if failure:
        return [item([*loc, "params"], failure, "invalid_params")]
    return []


@functools.lru_cache(maxsize=4096)
def _solver_failure(type_: str, params_json: str, hyper_lr: float | None) -> str | None:
    """A dry run of the solver on a dummy parameter, remembered per (type, params): a batch or
    sweep of 1,000 specs varying base_lr or seeds builds each distinct optimizer once. base_lr is
    not part of the key: any positive LR (all Pydantic lets through) passes torch's checks alike.

    torch checks values in __init__ and some only on the first step: do both. Whatever it raises
    on the user's kwargs is their input error, never ours: asserts (capturable=True on CPU),
    overflows (10**400 as a float), KeyError/IndexError (`betas: {}` or `[]`)."""
    try:
        p = torch.zeros(2, requires_grad=True)
        opt = catalog.solver_class(type_)([p], lr=1e-3, **json.loads(params_json))
        hd = None
        if hyper_lr is not None and type_ in HYPERGRADIENT_SOLVERS:
            hd = Hypergradient(opt, hyper_lr)
        for _ in range(1 if hd is None else 2):  # hypergradient descent acts from step 2 on
            p.sum().backward()
            if hd is not None:
                hd.before_step()
            opt.step()
    except Exception as exc:
        return f"{type_} rejects these params: {exc}"
    return None


def _check_hypergradient(spec: ExperimentSpec) -> list[ErrorItem]:
    """Hypergradient descent owns the LR: only solvers whose step is linear in it, and nothing
    else that sets it."""
    if spec.solver.hypergradient is None:
        return []
    errors = []
    if spec.solver.type in catalog.SOLVERS and spec.solver.type not in HYPERGRADIENT_SOLVERS:
        errors.append(
            item(
                ["solver", "hypergradient"],
                f"hypergradient descent is not available for {spec.solver.type}; "
                f"allowed solvers: {_allowed(HYPERGRADIENT_SOLVERS)}",
                "unsupported",
            )
        )
    if not spec.is_constant_schedule:
        assert spec.scheduler is not None
        errors.append(
            item(
                ["scheduler", "type"],
                f"hypergradient descent adapts the LR itself; it cannot be combined with "
                f"{spec.scheduler.type} (allowed: {catalog.CONSTANT} or no scheduler)",
                "conflict",
            )
        )
    if spec.warmup is not None:
        errors.append(
            item(
                ["warmup"],
                "hypergradient descent adapts the LR itself; it cannot be combined with a warmup",
                "conflict",
            )
        )
    return errors


def _check_kwargs(
    kind: str, type_: str, params: dict[str, Any], allowed: dict[str, Any]
) -> list[ErrorItem]:
    errors = []
    for key in params:
        reason = catalog.reserved_reason(kind, key)
        if reason:
            errors.append(
                item(
                    [kind, "params", key],
                    f"{key!r} is not settable here: {reason}",
                    "reserved_param",
                )
            )
        elif key not in allowed:
            errors.append(
                item(
                    [kind, "params", key],
                    f"{type_} has no parameter {key!r}; allowed: {_allowed(allowed)}",
                    "unknown_param",
                )
            )
    return errors


def _check_scheduler(
    spec: ExperimentSpec, task: str, metrics: tuple[str, ...], steps: int
) -> list[ErrorItem]:
    sched = spec.scheduler
    if sched is None or sched.type == catalog.CONSTANT:
        if sched is not None and sched.params:
            return [
                item(
                    ["scheduler", "params"],
                    "the constant schedule takes no params",
                    "unknown_param",
                )
            ]
        return []
    if sched.type not in catalog.SCHEDULERS:
        return [
            item(
                ["scheduler", "type"],
                f"unknown scheduler {sched.type!r}; allowed: "
                f"{_allowed((*catalog.SCHEDULERS, catalog.CONSTANT))}",
                "unknown_scheduler",
            )
        ]
    allowed = catalog.scheduler_kwargs(sched.type)
    errors = _check_kwargs("scheduler", sched.type, sched.params, allowed)
    for key in catalog.required_scheduler_kwargs(sched.type):
        if key not in sched.params:
            errors.append(
                item(
                    ["scheduler", "params", key], f"{sched.type} requires {key!r}", "missing_param"
                )
            )
    if sched.type == "ReduceLROnPlateau":
        if sched.interval == "step":
            errors.append(
                item(
                    ["scheduler", "interval"],
                    "ReduceLROnPlateau decides once per "
                    "epoch, after validation; interval must be 'epoch'",
                    "invalid",
                )
            )
        if sched.monitor not in metrics:
            errors.append(
                item(
                    ["scheduler", "monitor"],
                    f"{sched.monitor!r} is not recorded for {task}; allowed: {_allowed(metrics)}",
                    "unknown_metric",
                )
            )
    if errors:
        return errors
    # Let the engine build it exactly as a run would and walk the whole schedule, so values torch
    # accepts at construction but fails on mid-run (T_max=0, ...) are caught here.
    from worker.engine.schedule import ScheduleError, check_walk

    try:
        check_walk(spec, steps)
    except ScheduleError as exc:
        errors.append(item(["scheduler", *exc.loc], str(exc), "invalid_params"))
    return errors


def _check_monitors(spec: ExperimentSpec, task: str, metrics: tuple[str, ...]) -> list[ErrorItem]:
    if spec.early_stopping is None:
        return []
    if spec.early_stopping.monitor not in metrics:
        return [
            item(
                ["early_stopping", "monitor"],
                f"{spec.early_stopping.monitor!r} is not "
                f"recorded for {task}; allowed: {_allowed(metrics)}",
                "unknown_metric",
            )
        ]
    return []


def _check_warmup(spec: ExperimentSpec) -> list[ErrorItem]:
    if spec.warmup is not None and spec.warmup.epochs >= spec.epochs:
        return [
            item(
                ["warmup", "epochs"],
                f"warmup ({spec.warmup.epochs} epochs) must be "
                f"shorter than the run ({spec.epochs} epochs)",
                "invalid",
            )
        ]
    return []


def _check_model(spec: ExperimentSpec, info: DatasetInfo) -> list[ErrorItem]:
    if spec.model.type == "cnn" and info.image_shape is None:
        return [
            item(
                ["model", "type"],
                f"cnn needs image-shaped data; {info.name!r} is tabular",
                "invalid",
            )
        ]
    return []


def derived_sizes(spec: ExperimentSpec, info: DatasetInfo) -> tuple[dict[str, int], int]:
    sizes = split_sizes(info.n_samples, spec.split.train, spec.split.val, spec.split.test)
    return sizes, steps_per_epoch(sizes["train"], spec.batch_size)


def check_spec(spec: ExperimentSpec, info: DatasetInfo) -> list[ErrorItem]:
    """Everything Pydantic cannot know: torch names, kwargs and values; metrics of the task."""
    errors: list[ErrorItem] = []
    sizes, steps = derived_sizes(spec, info)
    for part in ("train", "val"):
        if sizes[part] < 1:
            errors.append(
                item(
                    ["split", part],
                    f"{info.name!r} has {info.n_samples} samples: the {part} part would be empty",
                    "empty_split",
                )
            )
    errors += _check_warmup(spec)
    errors += _check_model(spec, info)
    metrics = metrics_for(info.task)
    errors += _check_monitors(spec, info.task, metrics)
    errors += _check_hypergradient(spec)
    solver_errors = _check_solver(spec)
    errors += solver_errors
    if not solver_errors and not errors:
        errors += _check_scheduler(spec, info.task, metrics, steps)
    return errors


def check_schedule(spec: ExperimentSpec, steps: int) -> list[ErrorItem]:
    """`check_spec`'s checks of what shapes the LR (warmup, monitors, solver, scheduler) without
    a dataset, for the schedule preview: a monitor may be a metric of either task."""
    errors = _check_warmup(spec) + _check_monitors(spec, "any task", METRICS_ANY)
    if spec.solver.hypergradient is not None:
        errors.append(
            item(
                ["solver", "hypergradient"],
                "with hypergradient descent the LR follows the gradients of training; "
                "it cannot be previewed",
                "unsupported",
            )
        )
    errors += _check_solver(spec)
    if not errors:
        errors += _check_scheduler(spec, "any task", METRICS_ANY, steps)
    return errors

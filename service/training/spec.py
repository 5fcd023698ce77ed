"""The experiment spec (CONTRACT.md): its shape in Pydantic.

Shape errors (unknown fields, wrong types, out-of-range numbers) come from Pydantic here. Meaning
errors (an optimizer that does not exist, a kwarg its class does not take, a value torch refuses)
come from `checks.check_spec`, kept apart so the shape can be read without torch's rules.
"""

from __future__ import annotations

import re
from typing import Annotated, Any, Literal

from pydantic import BaseModel, ConfigDict, Field, field_validator, model_validator

from service.training import catalog

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

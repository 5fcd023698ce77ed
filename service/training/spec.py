"""The experiment spec (CONTRACT.md): its shape in Pydantic.

Shape errors (unknown fields, wrong types, out-of-range numbers) come from Pydantic here. Meaning
errors (an optimizer that does not exist, a kwarg its class does not take, a value torch refuses)
come from `checks.check_spec`, kept apart so the shape can be read without torch's rules.
"""

from __future__ import annotations

import re
from typing import Annotated, Any, Literal

from pydantic import (
    BaseModel,
    ConfigDict,
    Field,
    SerializerFunctionWrapHandler,
    field_validator,
    model_serializer,
    model_validator,
)

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


BUILTIN_MODELS = ("linear", "mlp", "cnn", "resnet")
# A plugin's entry-point name: letters, digits, `_` and `-`. No dots or colons, so no import path
# (`os:system`, `mypkg.models.Net`) can even be spelt; only declared entry points ever run.
_PLUGIN_NAME = re.compile(r"[A-Za-z0-9_][A-Za-z0-9_\-]{0,99}")
PLUGIN_NAME_RULE = "1-100 letters, digits, '_' or '-'"
Params = Annotated[
    dict[Annotated[str, Field(min_length=1, max_length=100)], Any], Field(max_length=100)
]


def _plugin_name(kind: str, v: str) -> str:
    if not _PLUGIN_NAME.fullmatch(v):
        raise ValueError(
            f"{v!r} is not a {kind} name: a built-in {kind} or the entry-point name a plugin "
            f"declares ({PLUGIN_NAME_RULE}); import paths are never accepted"
        )
    return v


class ModelSpec(Strict):
    """A built-in model with its fields (`{"type": "mlp", "hidden": [64]}`), or a plugin's model
    with its factory's keyword arguments (`{"type": "tiny_resnet", "params": {"width": 8}}`)."""

    type: str = "mlp"
    # mlp, cnn (its head): hidden widths, activation, dropout; mlp: normalisation between layers
    hidden: list[Annotated[int, Field(ge=1, le=65536)]] = Field(default=[64], max_length=16)
    activation: Literal["relu", "tanh", "gelu", "sigmoid", "silu", "leaky_relu", "elu"] = "relu"
    dropout: Annotated[float, Field(ge=0, lt=1)] = 0.0
    norm: Literal["none", "batch", "layer"] = "none"
    # cnn: 3×3 convolutions of these widths, each optionally batch-normed and 2×2-pooled
    channels: list[Annotated[int, Field(ge=1, le=1024)]] = Field(default=[16, 32], max_length=6)
    batchnorm: bool = False
    pool: Literal["none", "max", "avg"] = "none"
    # resnet: CIFAR-style (He et al. 2016, section 4.2): depth 6n+2, widths w, 2w, 4w
    depth: Annotated[int, Field(ge=8, le=1202)] = 20
    width: Annotated[int, Field(ge=1, le=256)] = 16
    # a plugin model: its factory's keyword arguments (checked against the workers' manifests)
    params: Params = Field(default_factory=dict)

    @field_validator("type")
    @classmethod
    def _type(cls, v: str) -> str:
        return v if v in BUILTIN_MODELS else _plugin_name("model", v)

    @model_validator(mode="after")
    def _fields_of_its_kind(self) -> ModelSpec:
        if self.is_plugin:
            builtin = sorted(self.model_fields_set - {"type", "params"})
            if builtin:
                raise ValueError(
                    f"{', '.join(builtin)}: fields of the built-in models; a plugin model "
                    f"({self.type!r}) takes its factory's arguments in `params`"
                )
        elif self.params:
            raise ValueError(
                f"`params` is for plugin models; the built-in {self.type!r} takes its fields "
                f'directly, e.g. {{"type": "mlp", "hidden": [64]}}'
            )
        return self

    @field_validator("depth")
    @classmethod
    def _depth(cls, v: int) -> int:
        if (v - 2) % 6:
            raise ValueError(f"depth must be 6n+2 (8, 14, 20, 32, 44, 56, 110, ...); got {v}")
        return v

    @model_serializer(mode="wrap")
    def _dump(self, handler: SerializerFunctionWrapHandler) -> dict[str, Any]:
        data: dict[str, Any] = handler(self)
        if self.is_plugin:  # a plugin model is its name and its arguments, nothing else
            return {"type": data["type"], "params": data["params"]}
        data.pop("params", None)
        return data

    @property
    def is_plugin(self) -> bool:
        return self.type not in BUILTIN_MODELS


class DatasetRef(Strict):
    """`"dataset": "digits"` (a built-in, an upload or a plugin without arguments), or
    `{"type": NAME, "params": {...}}` for a plugin dataset's factory arguments."""

    type: Annotated[str, Field(min_length=1, max_length=100)]
    params: Params = Field(default_factory=dict)

    @field_validator("type")
    @classmethod
    def _type(cls, v: str) -> str:
        return _plugin_name("dataset", v)

    @model_serializer(mode="wrap")
    def _dump(self, handler: SerializerFunctionWrapHandler) -> str | dict[str, Any]:
        # Without arguments it is stored (and hashed) as the plain name it always was.
        return self.type if not self.params else handler(self)


class HypergradientSpec(Strict):
    """Hypergradient descent (docs/hypergradient.md): the LR adapts itself online."""

    hyper_lr: PositiveFloat  # β in Baydin et al. (2018)


class SolverSpec(Strict):
    type: str = "SGD"
    params: dict[str, Any] = Field(default_factory=dict)
    # Left out of dumps when absent, so specs without it store and hash as before.
    hypergradient: HypergradientSpec | None = Field(default=None, exclude_if=lambda v: v is None)


MAX_COMPOSED = 10


class SchedulerSpec(Strict):
    type: str
    params: dict[str, Any] = Field(default_factory=dict)
    monitor: str = "val_loss"  # read by ReduceLROnPlateau only
    interval: Literal["epoch", "step"] | None = None  # None: CONTRACT.md's default per type
    # SequentialLR / ChainedScheduler: the schedulers they compose (checks.py says which may be
    # there). Left out of dumps when absent, so other specs store and hash as before.
    schedulers: list[SchedulerSpec] | None = Field(
        default=None, min_length=1, max_length=MAX_COMPOSED, exclude_if=lambda v: v is None
    )

    @property
    def effective_interval(self) -> str:
        """The spec's interval, else CONTRACT.md's default: per step for the per-batch schedulers
        (and a composition holding one), per epoch otherwise."""
        if self.interval is not None:
            return self.interval
        return "step" if set(self.types) & catalog.STEP_INTERVAL_DEFAULT else "epoch"

    @property
    def types(self) -> list[str]:
        """Its type and its elements' types."""
        return [self.type, *(t for s in self.schedulers or [] for t in s.types)]

    @property
    def is_composite(self) -> bool:
        return self.type in catalog.COMPOSITES


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
    dataset: DatasetRef = Field(default_factory=lambda: DatasetRef(type="digits"))
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
    precision: Literal["fp32", "bf16", "fp16"] = "fp32"  # torch.autocast; fp16 adds a GradScaler
    checkpoint_every: Annotated[int, Field(ge=1, le=MAX_EPOCHS)] | None = None
    tags: dict[
        Annotated[str, Field(min_length=1, max_length=100)], Annotated[str, Field(max_length=200)]
    ] = Field(default_factory=dict, max_length=50)

    @field_validator("dataset", mode="before")
    @classmethod
    def _dataset_name(cls, v: Any) -> Any:
        if isinstance(v, str):
            return {"type": v}
        if not isinstance(v, dict | DatasetRef):
            raise ValueError('a dataset is a name ("digits") or {"type": NAME, "params": {...}}')
        return v

    @field_validator("device")
    @classmethod
    def _device(cls, v: str) -> str:
        if not re.fullmatch(r"auto|cpu|cuda(:\d+)?", v):
            raise ValueError("device must be 'auto', 'cpu', 'cuda' or 'cuda:N'")
        return v

    @property
    def dataset_name(self) -> str:
        return self.dataset.type

    @property
    def is_constant_schedule(self) -> bool:
        return self.scheduler is None or self.scheduler.type == catalog.CONSTANT

    @property
    def plateau(self) -> SchedulerSpec | None:
        """The ReduceLROnPlateau that takes LR decisions: the scheduler itself, or the last of a
        SequentialLR (CONTRACT.md); None when there is none."""
        sched = self.scheduler
        if sched is not None and sched.type == "SequentialLR" and sched.schedulers:
            sched = sched.schedulers[-1]
        return sched if sched is not None and sched.type == "ReduceLROnPlateau" else None

    @property
    def plateau_start(self) -> int:
        """Epochs before the plateau logic takes over: the warmup, plus the last milestone of a
        SequentialLR ending in ReduceLROnPlateau. It sees only the epochs after these."""
        warm = self.warmup.epochs if self.warmup else 0
        sched = self.scheduler
        if sched is None or sched.type != "SequentialLR":
            return warm
        milestones = sched.params.get("milestones")
        last = milestones[-1] if isinstance(milestones, list) and milestones else 0
        return warm + (last if isinstance(last, int) else 0)


def metrics_for(task: str) -> tuple[str, ...]:
    return METRICS_CLASSIFICATION if task == "classification" else METRICS_REGRESSION

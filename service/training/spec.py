"""The experiment spec (CONTRACT.md): its shape in Pydantic.

Shape errors (unknown fields, wrong types, out-of-range numbers) come from Pydantic here. Meaning
errors (an optimizer that does not exist, a kwarg its class does not take, a value torch refuses)
come from `checks.check_spec`, kept apart so the shape can be read without torch's rules.
"""

from __future__ import annotations

import math
import re
from typing import Annotated, Any, Literal

from pydantic import (
    AfterValidator,
    BaseModel,
    BeforeValidator,
    ConfigDict,
    Field,
    SerializerFunctionWrapHandler,
    field_validator,
    model_serializer,
    model_validator,
)
from pydantic_core import PydanticCustomError

from service.training import catalog
from service.training.defaults import DEFAULT_EPOCHS


def _whole(v: Any) -> Any:
    # JSON Schema counts 20.0 as an integer, so a request that says so is taken as 20 (strict
    # mode alone refuses every float); 20.5 is refused as lax mode would, true and "20" by strict.
    if isinstance(v, float) and math.isfinite(v):
        if not v.is_integer():
            raise PydanticCustomError(
                "int_from_float",
                "Input should be a valid integer, got a number with a fractional part",
            )
        return int(v)
    return v


WHOLE = BeforeValidator(_whole)  # after an int's constraints, so the OpenAPI shows them
# Seeds: integers a JSON reader keeps exactly (a JavaScript number; the OpenAPI's bounds are
# floats too), far inside what torch and numpy take.
MAX_SEED = 2**53 - 1
FiniteFloat = Annotated[float, Field(allow_inf_nan=False)]
PositiveFloat = Annotated[float, Field(gt=0, allow_inf_nan=False)]
Fraction = Annotated[float, Field(ge=0, le=1, allow_inf_nan=False)]

MAX_EPOCHS = 100_000


def stored_epochs(spec: dict[str, Any]) -> int:
    """A stored spec's epochs (DEFAULT_EPOCHS where it names none)."""
    return int(spec.get("epochs", DEFAULT_EPOCHS))


METRICS_CLASSIFICATION = ("train_loss", "val_loss", "val_accuracy")
METRICS_REGRESSION = ("train_loss", "val_loss", "val_mae")
METRICS_ANY = ("train_loss", "val_loss", "val_accuracy", "val_mae")  # no dataset: either task's


class Strict(BaseModel):
    """A request body's part. Strict: JSON's types as the OpenAPI states them (a number is not
    "5" or true, a boolean is not 0 or "yes": pydantic's lax mode would take them), no unknown
    field, no infinite or NaN float (JSON has none; Python's parser reads `NaN` and `1e999`)."""

    model_config = ConfigDict(extra="forbid", strict=True, allow_inf_nan=False)


# Free-form values inside a spec (plugin and torch kwargs): JSON that every reader can take back.
MAX_DEPTH = 16
MAX_JSON_INT = 2**63  # |n| below this: torch's int64, PostgreSQL's bigint and numeric both hold it


def _json_problem(value: Any, path: str = "", depth: int = 0) -> str | None:
    """What makes `value` more than plain, bounded JSON (with where), or None. A NaN or an
    infinity would be stored as a token PostgreSQL's jsonb refuses and no response can carry;
    an integer past 64 bits no torch argument takes; nesting is bounded so that nothing
    downstream recurses deep."""
    where = f"{path}: " if path else ""
    if depth > MAX_DEPTH:
        return f"{where}nested deeper than {MAX_DEPTH} levels"
    if isinstance(value, float) and not math.isfinite(value):
        return f"{where}{value} is not a JSON number"
    if isinstance(value, int) and not isinstance(value, bool) and abs(value) >= MAX_JSON_INT:
        return f"{where}an integer past 64 bits (|n| < 2**63)"
    items = (
        value.items()
        if isinstance(value, dict)
        else enumerate(value)
        if isinstance(value, list)
        else ()
    )
    for key, child in items:
        problem = _json_problem(child, f"{path}.{key}" if path else str(key), depth + 1)
        if problem:
            return problem
    return None


def plain_json(v: dict[str, Any]) -> dict[str, Any]:
    problem = _json_problem(v)
    if problem:
        raise PydanticCustomError("not_plain_json", "{problem}", {"problem": problem})
    return v


class SplitSpec(Strict):
    train: Fraction = 0.8
    val: Annotated[float, Field(gt=0, le=1, allow_inf_nan=False)] = 0.2
    test: Fraction = 0.0
    seed: Annotated[int, Field(ge=0, le=MAX_SEED), WHOLE] = 0  # numpy's takes no negative
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
    dict[Annotated[str, Field(min_length=1, max_length=100)], Any],
    Field(max_length=100),
    AfterValidator(plain_json),
]
PLUGIN_NAME_PATTERN = "^" + _PLUGIN_NAME.pattern + "$"  # documents what `_plugin_name` checks


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

    type: Annotated[str, Field(json_schema_extra={"pattern": PLUGIN_NAME_PATTERN})] = "mlp"
    # mlp, cnn (its head): hidden widths, activation, dropout; mlp: normalisation between layers
    hidden: list[Annotated[int, Field(ge=1, le=65536), WHOLE]] = Field(default=[64], max_length=16)
    activation: Literal["relu", "tanh", "gelu", "sigmoid", "silu", "leaky_relu", "elu"] = "relu"
    dropout: Annotated[float, Field(ge=0, lt=1)] = 0.0
    norm: Literal["none", "batch", "layer"] = "none"
    # cnn: 3×3 convolutions of these widths, each optionally batch-normed and 2×2-pooled
    channels: list[Annotated[int, Field(ge=1, le=1024), WHOLE]] = Field(
        default=[16, 32], max_length=6
    )
    batchnorm: bool = False
    pool: Literal["none", "max", "avg"] = "none"
    # resnet: CIFAR-style (He et al. 2016, section 4.2): depth 6n+2, widths w, 2w, 4w
    depth: Annotated[int, Field(ge=8, le=1202, description="6n+2: 8, 14, 20, 32, ..."), WHOLE] = 20
    width: Annotated[int, Field(ge=1, le=256), WHOLE] = 16
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

    type: Annotated[
        str, Field(min_length=1, max_length=100, json_schema_extra={"pattern": PLUGIN_NAME_PATTERN})
    ]
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
    # The enum documents what `checks` accepts (it names the allowed types when one is not).
    type: Annotated[str, Field(json_schema_extra={"enum": list(catalog.SOLVERS)})] = "SGD"
    params: Params = Field(default_factory=dict)
    # Left out of dumps when absent, so specs without it store and hash as before.
    hypergradient: HypergradientSpec | None = Field(default=None, exclude_if=lambda v: v is None)


MAX_COMPOSED = 10
# A metric a run records: which ones a spec may name depends on its dataset's task (`checks`).
Monitor = Annotated[str, Field(json_schema_extra={"enum": list(METRICS_ANY)})]


def mode_for(monitor: Any) -> str:
    """The direction a monitor improves in: up for accuracy, down for a loss or an error (a
    sweep's metric takes the same default)."""
    return "max" if monitor == "val_accuracy" else "min"


class SchedulerSpec(Strict):
    type: Annotated[str, Field(json_schema_extra={"enum": [catalog.CONSTANT, *catalog.SCHEDULERS]})]
    params: Params = Field(default_factory=dict)
    monitor: Monitor = "val_loss"  # read by ReduceLROnPlateau only
    interval: Literal["epoch", "step"] | None = None  # None: CONTRACT.md's default per type
    # SequentialLR / ChainedScheduler: the schedulers they compose (checks.py says which may be
    # there). Left out of dumps when absent, so other specs store and hash as before.
    schedulers: list[SchedulerSpec] | None = Field(
        default=None, min_length=1, max_length=MAX_COMPOSED, exclude_if=lambda v: v is None
    )

    @model_validator(mode="before")
    @classmethod
    def _plateau_mode_follows_monitor(cls, data: Any) -> Any:
        # ReduceLROnPlateau watching val_accuracy without a mode would take torch's "min" and cut
        # the LR while accuracy improves. Written into the params, so the stored spec says the
        # mode it runs with, and torch's semantics apply to it unchanged.
        if (isinstance(data, dict) and data.get("type") == "ReduceLROnPlateau"
                and data.get("monitor") == "val_accuracy"):  # fmt: skip
            params = data.get("params", {})
            if isinstance(params, dict) and "mode" not in params:
                return {**data, "params": {**params, "mode": mode_for(data["monitor"])}}
        return data

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
    epochs: Annotated[int, Field(ge=1, le=MAX_EPOCHS), WHOLE]
    start_factor: Annotated[float, Field(gt=0, le=1)] = 0.1


class EarlyStoppingSpec(Strict):
    monitor: Monitor = "val_loss"
    mode: Literal["min", "max"] = Field(
        default="min", description="default: max for val_accuracy, min for the others"
    )
    patience: Annotated[int, Field(ge=1, le=MAX_EPOCHS), WHOLE] = 10
    min_delta: Annotated[float, Field(ge=0, allow_inf_nan=False)] = 0.0
    baseline: FiniteFloat | None = None
    restore_best: bool = True

    @model_validator(mode="before")
    @classmethod
    def _mode_follows_monitor(cls, data: Any) -> Any:
        # "min" on val_accuracy stopped a run while it improved and kept its worst weights.
        if isinstance(data, dict) and "mode" not in data and "monitor" in data:
            return {**data, "mode": mode_for(data["monitor"])}
        return data


class DivergenceSpec(Strict):
    """The divergence guard (decisions.py): the run ends `diverged` once an epoch's train_loss
    is above `factor` times where it started (the lower of the untrained model's loss, measured
    on epoch 1's first batch before any step, and epoch 1's train_loss) or above `ceiling`."""

    model_config = ConfigDict(frozen=True)  # the default below is one shared instance
    # 10: a run that learns brings its train loss down, and the bumps a normal run shows (noisy
    # SGD, warm restarts, a one-cycle peak) move an epoch's mean by a small factor; ten times
    # worse than the untrained model or than its own first epoch is a run that blew up.
    factor: Annotated[float, Field(gt=1, allow_inf_nan=False)] = 10.0
    ceiling: Annotated[float, Field(gt=0, allow_inf_nan=False)] | None = None


def _name_or_ref(schema: dict[str, Any]) -> None:
    """The dataset's schema: its name alone, or the DatasetRef object (`_dataset_name`)."""
    ref = {k: schema.pop(k) for k in ("$ref", "allOf", "anyOf") if k in schema}
    name = {"type": "string", "minLength": 1, "maxLength": 100, "pattern": PLUGIN_NAME_PATTERN}
    schema["anyOf"] = [name, ref]


class ExperimentSpec(Strict):
    name: Annotated[str, Field(max_length=200)] = ""
    dataset: DatasetRef = Field(
        default_factory=lambda: DatasetRef(type="digits"), json_schema_extra=_name_or_ref
    )
    split: SplitSpec = Field(default_factory=SplitSpec)
    model: ModelSpec = Field(default_factory=ModelSpec)
    solver: SolverSpec = Field(default_factory=SolverSpec)
    base_lr: PositiveFloat = 0.01
    scheduler: SchedulerSpec | None = None
    warmup: WarmupSpec | None = None
    early_stopping: EarlyStoppingSpec | None = None
    # On unless null. The default is left out of dumps, so specs store and hash as before.
    divergence: DivergenceSpec | None = Field(
        default=DivergenceSpec(), exclude_if=lambda v: v == DivergenceSpec()
    )
    epochs: Annotated[int, Field(ge=1, le=MAX_EPOCHS), WHOLE] = DEFAULT_EPOCHS
    batch_size: Annotated[int, Field(ge=1, le=1_000_000), WHOLE] = 64
    seed: Annotated[int, Field(ge=-MAX_SEED, le=MAX_SEED), WHOLE] = 0
    device: Annotated[str, Field(json_schema_extra={"pattern": "^(auto|cpu|cuda(:[0-9]+)?)$"})] = (
        "auto"
    )
    precision: Literal["fp32", "bf16", "fp16"] = "fp32"  # torch.autocast; fp16 adds a GradScaler
    checkpoint_every: Annotated[int, Field(ge=1, le=MAX_EPOCHS), WHOLE] | None = None
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
        if not re.fullmatch(r"auto|cpu|cuda(:[0-9]+)?", v):
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

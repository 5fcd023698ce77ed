"""The experiment spec's meaning, checked against torch (CONTRACT.md): what Pydantic cannot know.

`check_spec` builds the torch objects on a dummy parameter and walks the whole schedule, so what
torch would refuse mid-run is refused at submit time, with the field path.
"""

from __future__ import annotations

import functools
import json
import re
from typing import Any

import torch

from service.training import catalog
from service.training.datasets import DatasetInfo
from service.training.errors import ErrorItem, allowed, item, kwargs_errors
from service.training.hypergradient import SOLVERS as HYPERGRADIENT_SOLVERS
from service.training.hypergradient import Hypergradient
from service.training.scheduler_checks import check_lambda_grammar, check_scheduler
from service.training.spec import METRICS_ANY, ExperimentSpec, SolverSpec, metrics_for
from service.training.split import split_sizes, steps_per_epoch


def warm() -> None:
    """Pay torch's one-time cost of a process's first optimizer now: building one imports
    `torch._dynamo` (~1 s here, 2 s on a busy box), which was otherwise paid by the first
    request that validates a spec (a batch of 200 specs took 2.0 s instead of 0.07 s) or by a
    worker's first run."""
    param = torch.zeros(1, requires_grad=True)
    optimizer = torch.optim.SGD([param], lr=0.1)
    param.grad = torch.zeros(1)
    optimizer.step()


def _check_solver(spec: ExperimentSpec) -> list[ErrorItem]:
    loc: list[str | int] = ["solver"]
    if spec.solver.type not in catalog.SOLVERS:
        return [
            item(
                [*loc, "type"],
                f"unknown solver {spec.solver.type!r}; allowed: {allowed(catalog.SOLVERS)}",
                "unknown_solver",
            )
        ]
    errors = kwargs_errors(
        [*loc, "params"],
        "solver",
        spec.solver.type,
        spec.solver.params,
        catalog.solver_kwargs(spec.solver.type),
        catalog.reserved_reason,
    )
    if errors:
        return errors
    hyper_lr = spec.solver.hypergradient.hyper_lr if spec.solver.hypergradient else None
    failure = _solver_failure(
        spec.solver.type, json.dumps(spec.solver.params, sort_keys=True), hyper_lr
    )
    if failure:
        message, key = failure
        return [item([*loc, "params", *key], message, "invalid_params")]
    return []


# How torch's (and schedulefree's) value checks name the kwarg they refuse: "Invalid momentum
# value: -1", "Invalid beta parameter at index 0: 1.5", "Momentum must be between 0 and 1
# exclusive: 1", "... should be >= 0"; and their words for kwargs named otherwise. ("Invalid
# learning rate" never comes from `params`: lr is base_lr's, a reserved kwarg.)
_NAMED = re.compile(r"(?:Invalid (\w+) (?:value|parameter)|(\w+) (?:must|should) be)\b")
_TORCH_WORDS = {"beta": "betas", "epsilon": "eps", "eta": "etas"}


def _offending_kwarg(message: str, params: dict[str, Any]) -> str | None:
    """The kwarg of `params` that torch's `message` names as the one it refuses, or None where it
    names none of them (a combination: "Nesterov momentum requires a momentum and zero
    dampening"; a malformed value: `betas: {}` raises KeyError 0): the error is then at `params`."""
    found = _NAMED.match(message)
    if found is None:
        return None
    word = next(g for g in found.groups() if g is not None).lower()
    key = _TORCH_WORDS.get(word, word)
    return key if key in params else None


@functools.lru_cache(maxsize=4096)
def _solver_failure(
    type_: str, params_json: str, hyper_lr: float | None
) -> tuple[str, tuple[str, ...]] | None:
    """A dry run of the solver on a dummy parameter, remembered per (type, params): a batch or
    sweep of 1,000 specs varying base_lr or seeds builds each distinct optimizer once. base_lr is
    not part of the key: any positive LR (all Pydantic lets through) passes torch's checks alike.

    torch checks values in __init__ and some only on the first step: do both. Whatever it raises
    on the user's kwargs is their input error, never ours: asserts (capturable=True on CPU),
    overflows (10**400 as a float), KeyError/IndexError (`betas: {}` or `[]`). Returns the
    message and the kwarg it names (`_offending_kwarg`; empty when none)."""
    params = json.loads(params_json)
    try:
        p = torch.zeros(2, requires_grad=True)
        opt = catalog.solver_class(type_)([p], lr=1e-3, **params)
        catalog.training_mode(opt, True)
        hd = None
        if hyper_lr is not None and type_ in HYPERGRADIENT_SOLVERS:
            hd = Hypergradient(opt, hyper_lr)
        for _ in range(1 if hd is None else 2):  # hypergradient descent acts from step 2 on
            p.sum().backward()
            if hd is not None:
                hd.before_step()
            opt.step()
    except Exception as exc:
        key = _offending_kwarg(str(exc), params)
        return f"{type_} rejects these params: {exc}", (key,) if key else ()
    return None


def _check_schedule_free(spec: ExperimentSpec) -> list[ErrorItem]:
    """A schedule-free optimizer schedules the LR itself (its `warmup_steps`): nothing beside it."""
    if spec.solver.type not in catalog.SCHEDULE_FREE:
        return []
    errors = []
    why = f"{spec.solver.type} schedules the LR itself (use its warmup_steps)"
    if not spec.is_constant_schedule:
        assert spec.scheduler is not None
        msg = f"{why}; it cannot be combined with {spec.scheduler.type} (allowed: no scheduler)"
        errors.append(item(["scheduler", "type"], msg, "conflict"))
    if spec.warmup is not None:
        errors.append(item(["warmup"], f"{why}; it cannot be combined with a warmup", "conflict"))
    return errors


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
                f"allowed solvers: {allowed(HYPERGRADIENT_SOLVERS)}",
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
    if spec.precision == "fp16":
        errors.append(
            item(
                ["precision"],
                "hypergradient descent cannot be combined with precision fp16 (a step the "
                "GradScaler skips would still move the LR); use fp32 or bf16",
                "conflict",
            )
        )
    return errors


def _check_monitors(spec: ExperimentSpec, task: str, metrics: tuple[str, ...]) -> list[ErrorItem]:
    if spec.early_stopping is None:
        return []
    if spec.early_stopping.monitor not in metrics:
        return [
            item(
                ["early_stopping", "monitor"],
                f"{spec.early_stopping.monitor!r} is not "
                f"recorded for {task}; allowed: {allowed(metrics)}",
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
    model = spec.model
    # Where batch norm is on: its field and the fewest values per channel it normalises a
    # sample's features over (its smallest feature map, H × W; 1 for an mlp).
    loc: list[str | int] = ["model", "norm"]
    batch_normed, pixels = model.type == "mlp" and model.norm == "batch", 1
    if model.type in ("cnn", "resnet"):
        if info.image_shape is None:
            return [
                item(
                    ["model", "type"],
                    f"{model.type} needs image-shaped data; {info.name!r} is tabular",
                    "invalid",
                )
            ]
        c, h, w = info.image_shape
        n_convs = len(model.channels)
        if model.type == "resnet":  # stride-2 3×3 convs (padding 1) never shrink a side below 1
            loc, batch_normed = ["model", "type"], True
            pixels = ((h + 3) // 4) * ((w + 3) // 4)  # after stages 2 and 3: ceil(side / 4)
        elif model.pool != "none" and (h >> n_convs < 1 or w >> n_convs < 1):
            return [
                item(
                    ["model", "pool"],
                    f"{n_convs} convolutions each followed by a 2×2 pool shrink "
                    f"{info.name!r}'s {c}×{h}×{w} images to {h >> n_convs}×{w >> n_convs}; "
                    f"use at most {min(h, w).bit_length() - 1} convolutions with pool 2×2, "
                    "or pool 'none'",
                    "invalid",
                )
            ]
        else:  # a conv's batch norm comes before its pool: the last one sees n_convs - 1 pools
            last = n_convs - 1 if model.pool != "none" else 0
            loc, batch_normed, pixels = (
                ["model", "batchnorm"],
                model.batchnorm,
                (h >> last) * (w >> last),
            )
    if batch_normed and pixels == 1:
        # torch refuses to batch-norm one value per channel in training, mid-epoch: refuse a
        # spec whose last training batch would hold a single sample.
        train = derived_sizes(spec, info)[0]["train"]
        if train >= 1 and (train % spec.batch_size or spec.batch_size) == 1:
            return [
                item(
                    loc,
                    f"batch norm cannot train on a batch of one sample: {train} training "
                    f"samples in batches of {spec.batch_size} leave a last batch of 1; change "
                    "batch_size or the split",
                    "invalid",
                )
            ]
    return []


def derived_sizes(spec: ExperimentSpec, info: DatasetInfo) -> tuple[dict[str, int], int]:
    sizes = split_sizes(info.n_samples, spec.split.train, spec.split.val, spec.split.test)
    return sizes, steps_per_epoch(sizes["train"], spec.batch_size)


STAND_IN_SOLVER = SolverSpec(type="SGD", params={"momentum": 0.9})


def check_spec(spec: ExperimentSpec, info: DatasetInfo | None) -> list[ErrorItem]:
    """Everything Pydantic cannot know: torch names, kwargs and values; metrics of the task.

    `info` is None for a plugin dataset: only a worker can build it (its size and task depend on
    its params), so the checks that need them (split sizes, the task's metrics, image shape)
    are the worker's when the run starts, and the schedule is walked with one step per epoch."""
    split_errors: list[ErrorItem] = []
    model_errors: list[ErrorItem] = []
    metrics: tuple[str, ...] = METRICS_ANY
    if info is None:
        task, steps = "any task", 1
    else:
        sizes, steps = derived_sizes(spec, info)
        for part in ("train", "val"):
            if sizes[part] < 1:
                split_errors.append(
                    item(
                        ["split", part],
                        f"{info.name!r} has {info.n_samples} samples: the {part} part would be "
                        "empty",
                        "empty_split",
                    )
                )
        model_errors = _check_model(spec, info)
        task, metrics = info.task, metrics_for(info.task)
    errors = _check_warmup(spec)
    errors += _check_monitors(spec, task, metrics)
    errors += _check_hypergradient(spec)
    errors += _check_schedule_free(spec)
    solver_errors = _check_solver(spec)
    # The schedule is walked unless something it reads is wrong (the split's steps per epoch,
    # the warmup, the monitors); a refused model does not hold the scheduler's own errors back,
    # nor does a refused solver: the walk then drives a stand-in (SGD with momentum, which every
    # scheduler can cycle). Every mistake of a spec in one 422.
    if not split_errors and not errors:
        walked = spec.model_copy(update={"solver": STAND_IN_SOLVER}) if solver_errors else spec
        errors += solver_errors + check_scheduler(walked, task, metrics, steps)
    else:  # the walk cannot run; what the scheduler says of itself alone still counts
        errors += solver_errors + check_lambda_grammar(spec.scheduler)
    return split_errors + model_errors + errors


def check_schedule(spec: ExperimentSpec, steps: int) -> list[ErrorItem]:
    """`check_spec`'s checks of what shapes the LR (warmup, monitors, solver, scheduler) without
    a dataset, for the schedule preview: a monitor may be a metric of either task."""
    errors = _check_warmup(spec) + _check_monitors(spec, "any task", METRICS_ANY)
    errors += _check_schedule_free(spec)
    if spec.solver.type in catalog.SCHEDULE_FREE:
        errors.append(
            item(
                ["solver", "type"],
                f"{spec.solver.type} sets the LR itself while it trains (its warmup counts "
                "optimizer steps); it cannot be previewed",
                "unsupported",
            )
        )
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
        errors += check_scheduler(spec, "any task", METRICS_ANY, steps)
    return errors

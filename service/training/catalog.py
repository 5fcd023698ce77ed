"""Which torch classes a spec may name, and the keyword arguments each accepts.

Kwargs are read from the class's own signature, so torch's names and defaults are ours and a new
torch release adds its new kwargs without a change here.
"""

from __future__ import annotations

import inspect
from collections.abc import Callable
from functools import cache
from typing import Any

import torch

SOLVERS = (
    "SGD",
    "Adam",
    "AdamW",
    "RMSprop",
    "Adagrad",
    "Adadelta",
    "Adamax",
    "NAdam",
    "RAdam",
    # Schedule-free (Defazio et al. 2024, the `schedulefree` package): no scheduler beside them
    "SGDScheduleFree",
    "AdamWScheduleFree",
    "RAdamScheduleFree",
)
SCHEDULE_FREE = frozenset({"SGDScheduleFree", "AdamWScheduleFree", "RAdamScheduleFree"})

SCHEDULERS = (
    "StepLR",
    "MultiStepLR",
    "ExponentialLR",
    "LinearLR",
    "ConstantLR",
    "PolynomialLR",
    "CosineAnnealingLR",
    "CosineAnnealingWarmRestarts",
    "CyclicLR",
    "OneCycleLR",
    "ReduceLROnPlateau",
    # lr_lambda: an expression string (lr_lambda.py), made a function when the schedule is built
    "LambdaLR",
    "MultiplicativeLR",
    # compositions of the above (`schedulers`: their elements), as torch composes them
    "SequentialLR",
    "ChainedScheduler",
)
COMPOSITES = frozenset({"SequentialLR", "ChainedScheduler"})
CONSTANT = "none"  # `{"type": "none"}` (or no scheduler at all): the LR stays at base_lr.

# Per-batch schedulers; every other scheduler steps once per epoch unless the spec says otherwise.
STEP_INTERVAL_DEFAULT = frozenset({"CyclicLR", "OneCycleLR"})

# Arguments Glidepath fills in itself, with the reason a user is told.
_SOLVER_RESERVED = {"params": "built from the model", "lr": "set by `base_lr`"}
_SCHEDULER_RESERVED = {
    "optimizer": "built from `solver`",
    "last_epoch": "managed by Glidepath (resume restores it)",
    "verbose": "deprecated in torch",
    "total_steps": "derived from epochs × steps_per_epoch",
    "epochs": "derived from the spec's `epochs`",
    "steps_per_epoch": "derived from the split and batch_size",
    "scale_fn": "a Python callable cannot be sent as JSON; use `mode`",
    "schedulers": "given as the scheduler's `schedulers` list",
}


def solver_class(name: str) -> Callable[..., torch.optim.Optimizer]:
    if name in SCHEDULE_FREE:
        import schedulefree  # the package is a dependency; imported where it is named

        sf: Callable[..., torch.optim.Optimizer] = getattr(schedulefree, name)
        return sf
    cls: Callable[..., torch.optim.Optimizer] = getattr(torch.optim, name)
    return cls


def training_mode(optimizer: torch.optim.Optimizer, training: bool) -> None:
    """Schedule-free optimizers keep two sets of weights: `train()` before optimizer steps,
    `eval()` before validation and checkpoints (as the package requires); others: nothing."""
    switch = getattr(optimizer, "train" if training else "eval", None)
    if switch is not None and type(optimizer).__name__ in SCHEDULE_FREE:
        switch()


def scheduler_class(name: str) -> Callable[..., Any]:
    cls: Callable[..., Any] = getattr(torch.optim.lr_scheduler, name)
    return cls


@cache
def _signature(cls: Callable[..., Any]) -> dict[str, inspect.Parameter]:
    return dict(inspect.signature(cls).parameters)


def solver_kwargs(name: str) -> dict[str, inspect.Parameter]:
    return {k: p for k, p in _signature(solver_class(name)).items() if k not in _SOLVER_RESERVED}


def scheduler_kwargs(name: str) -> dict[str, inspect.Parameter]:
    return {
        k: p for k, p in _signature(scheduler_class(name)).items() if k not in _SCHEDULER_RESERVED
    }


def required_scheduler_kwargs(name: str) -> list[str]:
    # CyclicLR's own base_lr defaults to the spec's base_lr (CONTRACT.md).
    optional = {"base_lr"} if name == "CyclicLR" else set()
    return [
        k
        for k, p in scheduler_kwargs(name).items()
        if p.default is inspect.Parameter.empty and k not in optional
    ]


def reserved_reason(kind: str, key: str) -> str | None:
    table = _SOLVER_RESERVED if kind == "solver" else _SCHEDULER_RESERVED
    return table.get(key)

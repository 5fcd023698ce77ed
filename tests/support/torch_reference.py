"""Plain torch, written the way a user would from CONTRACT.md, sharing no code with the engine:
the per-epoch LR (param group 0 at the first optimizer step of each epoch) of a spec."""

from __future__ import annotations

import functools
import math
from typing import Any

import torch
from torch.optim import lr_scheduler as ls

STEP_DEFAULT = {"CyclicLR", "OneCycleLR"}

# (id, scheduler type, params): sensible values that keep every phase non-empty over the
# shortest run here (EPOCHS - warmup scheduler steps).
SCHEDULER_CASES: list[tuple[str, str, dict[str, Any]]] = [
    ("StepLR", "StepLR", {"step_size": 3, "gamma": 0.5}),
    ("MultiStepLR", "MultiStepLR", {"milestones": [2, 5, 9], "gamma": 0.3}),
    ("ExponentialLR", "ExponentialLR", {"gamma": 0.8}),
    ("LinearLR", "LinearLR", {"start_factor": 0.25, "end_factor": 0.5, "total_iters": 5}),
    ("ConstantLR", "ConstantLR", {"factor": 0.4, "total_iters": 4}),
    ("PolynomialLR", "PolynomialLR", {"total_iters": 8, "power": 2.0}),
    ("CosineAnnealingLR", "CosineAnnealingLR", {"T_max": 7, "eta_min": 0.001}),
    (
        "CosineAnnealingWarmRestarts",
        "CosineAnnealingWarmRestarts",
        {"T_0": 3, "T_mult": 2, "eta_min": 0.001},
    ),
    ("CyclicLR", "CyclicLR", {"max_lr": 0.5, "step_size_up": 3, "step_size_down": 2}),
    (
        "CyclicLR-own-base_lr",
        "CyclicLR",
        {"base_lr": 0.02, "max_lr": 0.3, "step_size_up": 3, "mode": "triangular2"},
    ),
    ("OneCycleLR", "OneCycleLR", {"max_lr": 0.5, "pct_start": 0.3}),
    # lr_lambda in `epoch`; with interval step the tests write it in `step` (`for_interval`)
    ("LambdaLR", "LambdaLR", {"lr_lambda": "0.9 ** epoch"}),
    (
        "LambdaLR-warmup-cosine",
        "LambdaLR",
        {"lr_lambda": "min(1, (epoch + 1) / 3) * 0.5 * (1 + cos(pi * epoch / 40))"},
    ),
    ("MultiplicativeLR", "MultiplicativeLR", {"lr_lambda": "0.8 if epoch < 4 else 0.97"}),
    (
        "OneCycleLR-three-phase",
        "OneCycleLR",
        {"max_lr": 0.4, "pct_start": 0.25, "three_phase": True, "anneal_strategy": "linear"},
    ),
]


def reference_lrs(spec: dict[str, Any], train_size: int) -> list[float]:
    """For an experiment spec: steps per epoch come from the train size and batch size."""
    sched = spec.get("scheduler") or {"type": "none"}
    warmup = spec.get("warmup") or {}
    solver = spec.get("solver", {"type": "SGD", "params": {}})
    return plain_torch_lrs(
        base_lr=spec["base_lr"], kind=sched["type"], params=sched.get("params", {}),
        interval=sched.get("interval"), warmup=warmup.get("epochs", 0),
        start_factor=warmup.get("start_factor", 0.1), epochs=spec["epochs"],
        steps=math.ceil(train_size / spec["batch_size"]),
        solver=solver["type"], solver_params=solver.get("params", {}),
    )  # fmt: skip


LAMBDA_TYPES = ("LambdaLR", "MultiplicativeLR")


def for_interval(type_: str | None, params: dict[str, Any], interval: str) -> dict[str, Any]:
    """A case's params for `interval`: an lr_lambda's variable is `step` with interval step."""
    if type_ in LAMBDA_TYPES and interval == "step":
        return {**params, "lr_lambda": params["lr_lambda"].replace("epoch", "step")}
    return params


def python_lambda(expression: str) -> Any:
    """The lr_lambda as the Python lambda a user would write (not Glidepath's evaluator)."""
    variable = "step" if "step" in expression else "epoch"
    names = {"min": min, "max": max, "abs": abs, "sqrt": math.sqrt, "exp": math.exp,
             "log": math.log, "cos": math.cos, "sin": math.sin, "pi": math.pi}  # fmt: skip
    return eval(f"lambda {variable}: {expression}", names)


def plain_torch_step_lrs(**kwargs: Any) -> list[float]:
    """`plain_torch_lrs` per optimizer step: the LR each step of the run uses."""
    return plain_torch_lrs(**kwargs, per_step=True)


def plain_torch_lrs(
    *, base_lr: float, kind: str | None, params: dict[str, Any], interval: str | None,
    warmup: int, start_factor: float, epochs: int, steps: int, solver: str = "SGD",
    solver_params: dict[str, Any] | None = None, per_step: bool = False,
) -> list[float]:  # fmt: skip
    """Param group 0's LR at the start of each epoch (`per_step`: at each optimizer step, the
    LR that step uses). Warmup is SequentialLR([LinearLR(...), main], milestones=[W·k]), the
    LinearLR built first as torch's docs (and a user's script) do; k = steps per epoch for
    per-step schedulers, else 1."""
    p = torch.zeros(1, requires_grad=True)
    opt = getattr(torch.optim, solver)([p], lr=base_lr, **(solver_params or {"momentum": 0.9}))
    kind = kind or "none"
    interval = interval or ("step" if kind in STEP_DEFAULT else "epoch")
    k = steps if interval == "step" else 1
    ramp = None
    if warmup:
        ramp = ls.LinearLR(opt, start_factor=start_factor, end_factor=1.0, total_iters=warmup * k)
    main = None
    if kind != "none":
        kwargs = dict(params)
        if kind == "CyclicLR":
            kwargs.setdefault("base_lr", base_lr)
        if kind == "OneCycleLR":
            kwargs["total_steps"] = (epochs - warmup) * k
        if kind in LAMBDA_TYPES:
            kwargs["lr_lambda"] = python_lambda(kwargs["lr_lambda"])
        main = getattr(ls, kind)(opt, **kwargs)
    sched = main
    if ramp is not None:
        sched = (
            ramp if main is None else ls.SequentialLR(opt, [ramp, main], milestones=[warmup * k])
        )
    lrs = []
    for _ in range(epochs):
        if not per_step:
            lrs.append(opt.param_groups[0]["lr"])
        for _ in range(steps):
            if per_step:
                lrs.append(opt.param_groups[0]["lr"])
            p.grad = torch.ones_like(p)
            opt.step()
            if sched is not None and interval == "step":
                sched.step()
        if sched is not None and interval == "epoch":
            sched.step()
    return lrs


def _element(opt: torch.optim.Optimizer, s: dict[str, Any], base_lr: float, span: int) -> Any:
    kwargs = dict(s.get("params", {}))
    if s["type"] == "CyclicLR":
        kwargs.setdefault("base_lr", base_lr)
    if s["type"] == "OneCycleLR":
        kwargs["total_steps"] = span
    if s["type"] in LAMBDA_TYPES:
        kwargs["lr_lambda"] = python_lambda(kwargs["lr_lambda"])
    return getattr(ls, s["type"])(opt, **kwargs)


def composed_torch_lrs(
    spec: dict[str, Any], steps: int, monitor_values: list[float] | None = None
) -> list[float]:
    """Param group 0's LR at each epoch's start for a SequentialLR or ChainedScheduler spec
    (warmup and a plateau last included), written from CONTRACT.md as a user would: the warmup's
    LinearLR first in the SequentialLR, milestones shifted by it; where torch cannot (a
    ChainedScheduler after a warmup, a ReduceLROnPlateau after a milestone), the loop sets the
    LR back to base_lr at that point and builds the next scheduler there, a plateau stepped with
    each later epoch's value of `monitor_values`."""
    sched, base_lr, epochs = spec["scheduler"], spec["base_lr"], spec["epochs"]
    elements = list(sched["schedulers"])
    kinds = {e["type"] for e in elements}
    interval = sched.get("interval") or ("step" if kinds & STEP_DEFAULT else "epoch")
    k = steps if interval == "step" else 1
    w = spec.get("warmup", {}).get("epochs", 0) * k
    total = epochs * k
    solver = spec.get("solver", {"type": "SGD", "params": {}})
    p = torch.zeros(1, requires_grad=True)
    opt = getattr(torch.optim, solver["type"])([p], lr=base_lr, **solver.get("params", {}))
    ramp = None
    if w:
        factor = spec["warmup"].get("start_factor", 0.1)
        ramp = ls.LinearLR(opt, start_factor=factor, end_factor=1.0, total_iters=w)
    starts = [w, *(w + m for m in sched.get("params", {}).get("milestones", []))]
    plateau = elements[-1] if elements[-1]["type"] == "ReduceLROnPlateau" else None
    switch, later = None, None  # the counter at which the loop builds `later`
    if sched["type"] == "ChainedScheduler":

        def chained() -> Any:
            return ls.ChainedScheduler(
                [_element(opt, e, base_lr, total - w) for e in elements], optimizer=opt
            )

        first = ramp if ramp is not None else chained()
        if ramp is not None:
            switch, later = w, chained
    else:
        if plateau is not None:
            elements, switch = elements[:-1], starts.pop()
            later = functools.partial(ls.ReduceLROnPlateau, opt, **plateau.get("params", {}))
        ends = [*starts[1:], switch if switch is not None else total]
        built = [ramp] if ramp is not None else []
        built += [
            _element(opt, e, base_lr, b - a) for e, a, b in zip(elements, starts, ends, strict=True)
        ]
        milestones = starts[: len(built) - 1] if ramp is not None else starts[1:]
        first = (
            built[0]
            if len(built) == 1
            else (ls.SequentialLR(opt, built, milestones=milestones) if built else None)
        )
    current, count, lrs = first, 0, []
    for epoch in range(epochs):
        if monitor_values is not None and epoch >= len(monitor_values):
            break
        lrs.append(opt.param_groups[0]["lr"])
        for _ in range(steps):
            p.grad = torch.ones_like(p)
            opt.step()
            if interval == "step":
                count += 1
                if count == switch:
                    opt.param_groups[0]["lr"] = base_lr
                    current = later() if later is not None else None
                elif current is not None:
                    current.step()
        if interval == "epoch":
            count += 1
            if isinstance(current, ls.ReduceLROnPlateau):
                if monitor_values is not None:
                    current.step(monitor_values[epoch])
            elif count == switch:
                opt.param_groups[0]["lr"] = base_lr
                current = later() if later is not None else None
            elif current is not None:
                current.step()
    return lrs

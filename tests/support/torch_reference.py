"""Plain torch, written the way a user would from CONTRACT.md, sharing no code with the engine:
the per-epoch LR (param group 0 at the first optimizer step of each epoch) of a spec."""

from __future__ import annotations

import math
from typing import Any

import torch
from torch.optim import lr_scheduler as ls

STEP_DEFAULT = {"CyclicLR", "OneCycleLR"}


def reference_lrs(spec: dict[str, Any], train_size: int) -> list[float]:
    batch, epochs, base_lr = spec["batch_size"], spec["epochs"], spec["base_lr"]
    steps = math.ceil(train_size / batch)
    solver = spec.get("solver", {"type": "SGD", "params": {}})
    p = torch.zeros(1, requires_grad=True)
    opt = getattr(torch.optim, solver["type"])([p], lr=base_lr, **solver.get("params", {}))
    sched_spec = spec.get("scheduler") or {"type": "none"}
    kind = sched_spec["type"]
    interval = sched_spec.get("interval") or ("step" if kind in STEP_DEFAULT else "epoch")
    k = steps if interval == "step" else 1
    warm = (spec.get("warmup") or {}).get("epochs", 0)
    warmup = None
    if warm:
        factor = spec["warmup"].get("start_factor", 0.1)
        warmup = ls.LinearLR(opt, start_factor=factor, end_factor=1.0, total_iters=warm * k)
    main = None
    if kind != "none":
        params = dict(sched_spec.get("params", {}))
        if kind == "CyclicLR":
            params.setdefault("base_lr", base_lr)
        if kind == "OneCycleLR":
            params["total_steps"] = (epochs - warm) * k
        main = getattr(ls, kind)(opt, **params)
    sched = main
    if warmup is not None:
        sched = (
            warmup if main is None else ls.SequentialLR(opt, [warmup, main], milestones=[warm * k])
        )
    lrs = []
    for _ in range(epochs):
        lrs.append(opt.param_groups[0]["lr"])
        for _ in range(steps):
            opt.step()
            if sched is not None and interval == "step":
                sched.step()
        if sched is not None and interval == "epoch":
            sched.step()
    return lrs

"""Every scheduler type, with and without warmup, per epoch and per step, submitted through the
API and trained by a real worker: the stored per-epoch LR equals plain torch to 1e-12."""

from __future__ import annotations

import random
from typing import Any

import pytest

from tests.support.stack import Stack
from tests.support.torch_reference import reference_lrs

pytestmark = pytest.mark.integration

SCHEDULERS: list[tuple[str, dict[str, Any]]] = [
    ("StepLR", {"step_size": 2, "gamma": 0.5}),
    ("MultiStepLR", {"milestones": [2, 5], "gamma": 0.3}),
    ("ExponentialLR", {"gamma": 0.8}),
    ("LinearLR", {"start_factor": 0.2, "total_iters": 4}),
    ("ConstantLR", {"factor": 0.5, "total_iters": 3}),
    ("PolynomialLR", {"total_iters": 6, "power": 2.0}),
    ("CosineAnnealingLR", {"T_max": 5, "eta_min": 0.001}),
    ("CosineAnnealingWarmRestarts", {"T_0": 3, "T_mult": 2, "eta_min": 0.0}),
    ("CyclicLR", {"max_lr": 0.5, "step_size_up": 5, "mode": "triangular2"}),
    ("OneCycleLR", {"max_lr": 0.4, "pct_start": 0.25}),
]


def _cases() -> list[dict[str, Any]]:
    rng = random.Random(7)
    cases = []
    for kind, params in SCHEDULERS:
        for warm in (0, 2):
            for interval in ("epoch", "step"):
                base_lr = round(rng.uniform(0.01, 0.1), 4)
                cases.append({
                    "name": f"{kind}-w{warm}-{interval}", "dataset": "iris",
                    "split": {"train": 0.8, "val": 0.2, "seed": 1},
                    "model": {"type": "linear"}, "base_lr": base_lr,
                    "solver": {"type": "SGD", "params": {"momentum": 0.9}},
                    "scheduler": {"type": kind, "params": params, "interval": interval},
                    "warmup": {"epochs": warm, "start_factor": 0.25} if warm else None,
                    "epochs": 9, "batch_size": 16,
                })  # fmt: skip
    return cases


# The embedded stack only: the traces are the engine's; storing floats exactly is checked on
# both backends by the API tests.
@pytest.mark.parametrize("stack", ["embedded"], indirect=True)
def test_stored_lr_traces_equal_plain_torch(stack: Stack) -> None:
    cases = _cases()
    with stack.client() as c:
        ids = []
        for spec in cases:
            r = c.post("/v1/experiments", json=spec)
            assert r.status_code == 201, (spec["name"], r.text)
            ids.append(r.json()["id"])
        for spec, exp_id in zip(cases, ids, strict=True):
            final = stack.wait_final(exp_id)
            assert final["status"] == "succeeded", (spec["name"], final)
            lrs = [row["lr"] for row in c.get(f"/v1/experiments/{exp_id}/metrics").json()["epochs"]]
            expected = reference_lrs(spec, final["split_sizes"]["train"])
            assert lrs == pytest.approx(expected, rel=1e-12, abs=0), spec["name"]
            assert len(set(lrs)) > 1, spec["name"]  # the schedule really moved the LR

"""Composed schedules through the API (each backend): runs of a SequentialLR with a warmup per
step, a ChainedScheduler after a warmup and a SequentialLR ending in ReduceLROnPlateau store the
per-epoch LR plain torch gives (tests/support/torch_reference.py); the preview agrees; an error
in an element is a 422 at its path and nothing is stored."""

from __future__ import annotations

from typing import Any

import pytest
from fastapi.testclient import TestClient

from tests.support.torch_reference import composed_torch_lrs
from worker.runs.lifecycle import run_experiment

pytestmark = pytest.mark.filterwarnings("ignore:The epoch parameter:UserWarning")

BASE: dict[str, Any] = {"dataset": "iris", "model": {"type": "mlp", "hidden": [8]},
                        "base_lr": 0.1, "epochs": 9, "batch_size": 32, "device": "cpu"}  # fmt: skip
SCHEDULES: list[dict[str, Any]] = [
    {**BASE, "warmup": {"epochs": 1}, "scheduler": {
        "type": "SequentialLR", "interval": "step", "params": {"milestones": [6, 12]},
        "schedulers": [{"type": "ConstantLR", "params": {"factor": 0.5, "total_iters": 3}},
                       {"type": "OneCycleLR", "params": {"max_lr": 0.4}},
                       {"type": "LambdaLR", "params": {"lr_lambda": "0.97 ** step"}}]}},
    {**BASE, "warmup": {"epochs": 2, "start_factor": 0.2}, "scheduler": {
        "type": "ChainedScheduler",
        "schedulers": [{"type": "ConstantLR", "params": {"factor": 0.5, "total_iters": 2}},
                       {"type": "ExponentialLR", "params": {"gamma": 0.8}}]}},
    {**BASE, "base_lr": 0.5, "scheduler": {
        "type": "SequentialLR", "params": {"milestones": [3]},
        "schedulers": [{"type": "StepLR", "params": {"step_size": 1, "gamma": 0.5}},
                       {"type": "ReduceLROnPlateau", "params": {"patience": 0, "factor": 0.5,
                                                                "threshold": 0.5}}]}},
]  # fmt: skip


def test_runs_store_plain_torchs_lr_and_the_preview_agrees(client: TestClient) -> None:
    for spec in SCHEDULES:
        created = client.post("/v1/experiments", json=spec)
        assert created.status_code == 201, created.text
        exp = created.json()
        assert run_experiment(exp["id"]).status == "succeeded"
        steps = client.get(f"/v1/experiments/{exp['id']}").json()["steps_per_epoch"]
        rows = client.get(f"/v1/experiments/{exp['id']}/metrics").json()["epochs"]
        values = [r["val_loss"] for r in rows] if "ReduceLROnPlateau" in str(spec) else None
        expected = composed_torch_lrs(spec, steps, values)
        assert [r["lr"] for r in rows] == pytest.approx(expected, rel=1e-12, abs=0), spec
        body = {k: spec[k] for k in ("base_lr", "scheduler", "epochs") if k in spec}
        body |= {"steps_per_epoch": steps, "warmup": spec.get("warmup")}
        if values is not None:
            body["monitor_values"] = values
        preview = client.post("/v1/schedules/preview", json=body)
        assert preview.status_code == 200, preview.text
        assert preview.json()["lr"] == [r["lr"] for r in rows]
    plateau_rows = client.get(f"/v1/experiments/{exp['id']}/metrics").json()["epochs"]
    assert plateau_rows[3]["lr"] == 0.5  # from its milestone on, the plateau starts at base_lr
    assert len({r["lr"] for r in plateau_rows[3:]}) > 1  # ... and reduced it


def test_an_element_error_is_a_422_at_its_path_and_nothing_is_stored(client: TestClient) -> None:
    before = client.get("/v1/experiments").json()["items"]
    elements = [{"type": "StepLR", "params": {"step_size": 1}},
                {"type": "StepLR", "params": {"step_size": 1, "gamma": -2}}]  # fmt: skip
    bad = {**BASE, "scheduler": {"type": "SequentialLR", "params": {"milestones": [3]},
                                 "schedulers": elements}}  # fmt: skip
    r = client.post("/v1/experiments", json=bad)
    assert r.status_code == 422, r.text
    [error] = r.json()["detail"]
    assert error["loc"] == ["body", "scheduler", "schedulers", 1, "params", "gamma"]
    assert client.get("/v1/experiments").json()["items"] == before

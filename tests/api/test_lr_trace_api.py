"""GET /v1/experiments/{id}/lr and the epoch rows' lr_min/lr_max (each backend): a OneCycleLR
run's per-step LR computed by the worker's schedule code equals plain torch's, a hypergradient
run's is recorded, per-epoch schedules give each step its epoch's LR, downsampling keeps the
extremes, and unknown ids or bad parameters are 404s and 422s at their field."""

from __future__ import annotations

from typing import Any

import pytest
from fastapi.testclient import TestClient

from service.experiments.schemas import LRTrace
from tests.support.runs import end_run
from tests.support.torch_reference import plain_torch_step_lrs
from worker.runs.lifecycle import run_experiment

BASE: dict[str, Any] = {
    "dataset": "iris", "model": {"type": "mlp", "hidden": [8]}, "base_lr": 0.1, "epochs": 4,
    "batch_size": 16, "solver": {"type": "SGD", "params": {"momentum": 0.9}}, "device": "cpu",
}  # fmt: skip
ONE_CYCLE = {**BASE, "scheduler": {"type": "OneCycleLR", "params": {"max_lr": 0.5}}}
HYPERGRADIENT = {**BASE, "epochs": 3, "solver": {**BASE["solver"],
                                                 "hypergradient": {"hyper_lr": 1e-3}}}  # fmt: skip


def trained(client: TestClient, spec: dict[str, Any]) -> tuple[int, int]:
    created = client.post("/v1/experiments", json=spec)
    assert created.status_code == 201, created.text
    exp_id = created.json()["id"]
    assert run_experiment(exp_id).status == "succeeded"
    return exp_id, client.get(f"/v1/experiments/{exp_id}").json()["steps_per_epoch"]


def lr(client: TestClient, exp_id: int, query: str = "resolution=step") -> Any:
    r = client.get(f"/v1/experiments/{exp_id}/lr?{query}")
    assert r.status_code == 200, r.text
    return r.json()


def test_a_one_cycle_run_per_step_equals_plain_torch_and_its_rows_carry_the_range(
    client: TestClient,
) -> None:
    exp_id, steps = trained(client, ONE_CYCLE)
    expected = plain_torch_step_lrs(
        base_lr=0.1, kind="OneCycleLR", params={"max_lr": 0.5}, interval=None, warmup=0,
        start_factor=0.1, epochs=4, steps=steps, solver="SGD", solver_params={"momentum": 0.9},
    )  # fmt: skip
    body = lr(client, exp_id)
    assert LRTrace.model_validate(body).source == "computed"  # the documented shape
    assert (body["resolution"], body["steps_per_epoch"]) == ("step", steps)
    assert body["total_points"] == 4 * steps and body["downsampled"] is False
    points = body["points"]
    assert [p["step"] for p in points] == list(range(4 * steps))
    assert [p["epoch"] for p in points] == [e for e in range(1, 5) for _ in range(steps)]
    assert [p["lr"] for p in points] == pytest.approx(expected, rel=1e-12, abs=0)

    rows = client.get(f"/v1/experiments/{exp_id}/metrics").json()["epochs"]
    for row in rows:
        epoch = expected[(row["epoch"] - 1) * steps : row["epoch"] * steps]
        assert row["lr"] == pytest.approx(epoch[0], rel=1e-12, abs=0)
        assert row["lr_min"] == pytest.approx(min(epoch), rel=1e-12, abs=0)
        assert row["lr_max"] == pytest.approx(max(epoch), rel=1e-12, abs=0)
    per_epoch = lr(client, exp_id, "")  # resolution=epoch is the default
    assert LRTrace.model_validate(per_epoch).source == "recorded"
    assert per_epoch["resolution"] == "epoch"
    assert per_epoch["points"] == [{k: r[k] for k in ("epoch", "lr", "lr_min", "lr_max")}
                                   for r in rows]  # fmt: skip

    small = lr(client, exp_id, "resolution=step&max_points=6")
    kept = small["points"]
    assert small["downsampled"] is True and small["total_points"] == 4 * steps
    assert 2 < len(kept) <= 6 and kept == sorted(kept, key=lambda p: p["step"])
    assert (kept[0], kept[-1]) == (points[0], points[-1])
    peak = max(points, key=lambda p: p["lr"])
    assert peak in kept and min(p["lr"] for p in kept) == min(p["lr"] for p in points)
    assert all(p == points[p["step"]] for p in kept)
    assert len(lr(client, exp_id, "max_points=2")["points"]) == 2  # per epoch too


def test_a_hypergradient_runs_steps_are_recorded_and_start_at_the_epochs_lr(
    client: TestClient,
) -> None:
    exp_id, steps = trained(client, HYPERGRADIENT)
    body = lr(client, exp_id)
    assert body["source"] == "recorded" and body["total_points"] == 3 * steps
    values = [p["lr"] for p in body["points"]]
    assert len(set(values)) > steps  # it adapts every step
    rows = client.get(f"/v1/experiments/{exp_id}/metrics").json()["epochs"]
    assert [r["epoch"] for r in rows] == [1, 2, 3]
    for row in rows:
        epoch = values[(row["epoch"] - 1) * steps : row["epoch"] * steps]
        assert epoch[0] == row["lr"]  # the LR the epoch's first step used, as stored
        assert (row["lr_min"], row["lr_max"]) == (min(epoch), max(epoch))


def test_a_per_epoch_schedule_gives_each_step_its_epochs_recorded_lr(
    client: TestClient,
) -> None:
    from service.experiments.models import Experiment
    from service.kit.db import session_scope

    plateau = {**BASE, "scheduler": {"type": "ReduceLROnPlateau", "params": {"patience": 0}}}
    exp_id = client.post("/v1/experiments", json=plateau).json()["id"]
    queued = lr(client, exp_id)
    assert (queued["points"], queued["source"], queued["total_points"]) == ([], "computed", 0)

    def steps_per_epoch(value: int | None) -> None:
        with session_scope() as s:
            row = s.get(Experiment, exp_id)
            assert row is not None
            row.steps_per_epoch = value

    end_run(exp_id, [1.0, 1.2, 0.9], lrs=[0.1, 0.1, 0.05])  # rows as a worker writes them
    steps_per_epoch(None)  # a row of a release that did not know it
    r = client.get(f"/v1/experiments/{exp_id}/lr?resolution=step")
    assert r.status_code == 409, r.text
    assert r.json()["detail"][0]["loc"] == ["path", "experiment_id"]
    assert "steps_per_epoch" in r.json()["detail"][0]["msg"]
    steps_per_epoch(2)
    points = lr(client, exp_id)["points"]
    assert [(p["step"], p["epoch"], p["lr"]) for p in points] == [
        (0, 1, 0.1), (1, 1, 0.1), (2, 2, 0.1), (3, 2, 0.1), (4, 3, 0.05), (5, 3, 0.05)]  # fmt: skip
    rows = lr(client, exp_id, "resolution=epoch")["points"]
    assert rows[0] == {"epoch": 1, "lr": 0.1, "lr_min": None, "lr_max": None}  # not stored


def test_bad_parameters_are_422s_at_their_field(client: TestClient) -> None:
    for query, loc in [
        ("resolution=minute", ["query", "resolution"]),
        ("max_points=0", ["query", "max_points"]),
        ("max_points=1000001", ["query", "max_points"]),
        (f"max_points={2**80}", ["query", "max_points"]),
        ("max_points=ten", ["query", "max_points"]),
    ]:
        r = client.get(f"/v1/experiments/1/lr?{query}")
        assert r.status_code == 422, r.text
        assert [e["loc"] for e in r.json()["detail"]] == [loc]


def test_an_unknown_run_is_a_404_and_a_range_test_a_409(client: TestClient) -> None:
    r = client.get("/v1/experiments/424242/lr?resolution=step")
    assert r.status_code == 404
    assert r.json()["detail"][0]["loc"] == ["path", "experiment_id"]
    body = {"spec": {"dataset": "iris"}, "min_lr": 1e-5, "max_lr": 1.0, "steps": 10}
    test_id = client.post("/v1/lr-range-tests", json=body).json()["id"]
    r = client.get(f"/v1/experiments/{test_id}/lr")
    assert r.status_code == 409 and f"/v1/lr-range-tests/{test_id}" in r.json()["detail"][0]["msg"]

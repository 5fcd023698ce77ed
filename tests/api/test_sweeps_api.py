"""POST/GET /v1/sweeps on SQLite and PostgreSQL. Runs are ended here through the repository
calls a worker makes (claim, write each epoch, finish), so stage 2 of lr_coarse_to_fine and the
leaderboard are checked against known metrics; tests/integration/test_sweeps.py does it with a
real worker."""

from __future__ import annotations

import math
from typing import Any

import pytest
from fastapi.testclient import TestClient

from service.kit.db import session_scope
from service.sweeps.models import Sweep
from service.sweeps.service import advance_running
from tests.support.runs import end_run

BASE: dict[str, Any] = {
    "dataset": "digits",
    "model": {"type": "mlp", "hidden": [16]},
    "solver": {"type": "SGD", "params": {"momentum": 0.9}},
    "epochs": 3,
    "tags": {"team": "lr"},
}


def sweep(client: TestClient, sweep_id: int) -> dict[str, Any]:
    r = client.get(f"/v1/sweeps/{sweep_id}")
    assert r.status_code == 200, r.text
    return r.json()


def test_grid_expands_dotted_paths_into_tagged_experiments(client: TestClient) -> None:
    body = {
        "name": "grid",
        "base": {**BASE, "scheduler": {"type": "StepLR", "params": {"step_size": 1}}},
        "strategy": "grid",
        "parameters": {"base_lr": [0.1, 0.01], "scheduler.params.gamma": [0.5, 0.9, 0.99]},
    }
    r = client.post("/v1/sweeps", json=body)
    assert r.status_code == 201, r.text
    created = r.json()
    assert len(created["ids"]) == 6
    s = sweep(client, created["sweep_id"])
    assert s["status"] == "running" and s["stage"] == 1 and s["metric"] == "val_loss"
    params = [e["params"] for e in s["experiments"]]
    assert params[0] == {"base_lr": 0.1, "scheduler.params.gamma": 0.5}
    assert params[5] == {"base_lr": 0.01, "scheduler.params.gamma": 0.99}
    exp = client.get(f"/v1/experiments/{created['ids'][4]}").json()
    assert exp["spec"]["scheduler"]["params"] == {"step_size": 1, "gamma": 0.9}
    assert exp["spec"]["base_lr"] == 0.01 and exp["sweep_id"] == created["sweep_id"]
    assert exp["tags"] == {"team": "lr", "sweep": str(created["sweep_id"])}
    assert exp["name"] == "grid base_lr=0.01 scheduler.params.gamma=0.9"
    listed = client.get("/v1/experiments", params={"sweep_id": created["sweep_id"]}).json()
    assert len(listed["items"]) == 6


def test_a_grid_sweeps_an_element_of_a_composition(client: TestClient) -> None:
    """`scheduler.schedulers.1.params.gamma`: the decay of a warmup-then-step SequentialLR; a
    trial's bad value is a 422 at that swept path."""
    elements = [{"type": "LinearLR", "params": {"total_iters": 2}},
                {"type": "StepLR", "params": {"step_size": 1}}]  # fmt: skip
    base = {**BASE, "scheduler": {"type": "SequentialLR", "params": {"milestones": [2]},
                                  "schedulers": elements}}  # fmt: skip
    path = "scheduler.schedulers.1.params.gamma"
    body = {"base": base, "strategy": "grid", "parameters": {path: [0.5, 0.9]}}
    r = client.post("/v1/sweeps", json=body)
    assert r.status_code == 201, r.text
    s = sweep(client, r.json()["sweep_id"])
    assert [e["params"] for e in s["experiments"]] == [{path: 0.5}, {path: 0.9}]
    exp = client.get(f"/v1/experiments/{r.json()['ids'][1]}").json()
    assert exp["spec"]["scheduler"]["schedulers"][1]["params"] == {"step_size": 1, "gamma": 0.9}
    bad = client.post("/v1/sweeps", json={**body, "parameters": {path: [0.5, -1.0]}})
    assert bad.status_code == 422
    [error] = bad.json()["detail"]
    assert error["loc"] == ["body", "parameters", path] and "trial 1" in error["msg"]


def test_random_is_seeded_log_uniform(client: TestClient) -> None:
    body = {
        "base": {**BASE, "solver": {"type": "SGD"}},
        "strategy": "random",
        "trials": 8,
        "seed": 3,
        "parameters": {
            "base_lr": {"distribution": "log_uniform", "low": 1e-4, "high": 1.0},
            "solver.type": ["SGD", "Adam"],
        },
    }
    a = sweep(client, client.post("/v1/sweeps", json=body).json()["sweep_id"])
    b = sweep(client, client.post("/v1/sweeps", json=body).json()["sweep_id"])
    assert [e["params"] for e in a["experiments"]] == [e["params"] for e in b["experiments"]]
    assert all(1e-4 <= e["params"]["base_lr"] <= 1 for e in a["experiments"])


@pytest.mark.parametrize(
    ("patch", "loc"),
    [
        ({"strategy": "grid", "parameters": {"lr": [0.1]}}, ["body", "parameters", "lr"]),
        ({"strategy": "grid", "parameters": {}}, ["body", "parameters"]),
        ({"strategy": "random", "parameters": {"base_lr": [0.1]}}, ["body", "trials"]),
        (
            {
                "strategy": "grid",
                "parameters": {"base_lr": {"distribution": "log_uniform", "low": 1, "high": 2}},
            },
            ["body", "parameters", "base_lr"],
        ),
        (
            {"strategy": "grid", "parameters": {"base_lr": [0.1, -1]}},
            ["body", "parameters", "base_lr"],
        ),
        (
            {"strategy": "grid", "parameters": {"solver.params.momentom": [0.9]}},
            ["body", "parameters", "solver.params.momentom"],
        ),
        (
            {"strategy": "grid", "parameters": {"base_lr": [0.1]}, "metric": "val_mae"},
            ["body", "metric"],
        ),
        ({"strategy": "lr_coarse_to_fine", "min_lr": 1, "max_lr": 0.1}, ["body", "max_lr"]),
        ({"strategy": "lr_coarse_to_fine", "parameters": {"seed": [1]}}, ["body", "parameters"]),
        ({"strategy": "bayes"}, ["body", "strategy"]),
        ({"strategy": "grid", "parameters": {"base_lr": 0.1}}, ["body", "parameters", "base_lr"]),
        (
            {
                "strategy": "random",
                "trials": 2,
                "parameters": {"base_lr": {"distribution": "normal", "low": 0, "high": 1}},
            },
            ["body", "parameters", "base_lr", "distribution"],
        ),
        (
            {
                "strategy": "random",
                "trials": 2,
                "parameters": {"base_lr": {"distribution": "log_uniform", "low": 0, "high": 1}},
            },
            ["body", "parameters", "base_lr"],
        ),
    ],
)
def test_bad_sweeps_are_422_with_the_field_and_write_nothing(
    client: TestClient, patch: dict[str, Any], loc: list[Any]
) -> None:
    before = len(client.get("/v1/experiments", params={"limit": 500}).json()["items"])
    r = client.post("/v1/sweeps", json={"base": BASE, **patch})
    assert r.status_code == 422, r.text
    assert loc in [e["loc"] for e in r.json()["detail"]], r.text
    assert len(client.get("/v1/experiments", params={"limit": 500}).json()["items"]) == before
    assert client.get("/v1/sweeps").json()["items"] == []


def test_error_in_the_base_spec_points_at_base(client: TestClient) -> None:
    body = {"base": {**BASE, "epochs": 0}, "strategy": "grid", "parameters": {"base_lr": [0.1, 1]}}
    detail = client.post("/v1/sweeps", json=body).json()["detail"]
    assert [e["loc"] for e in detail] == [["body", "base", "epochs"]]  # once, not per trial
    # A base field that only some trials make wrong says which trial met it first.
    body = {"base": BASE, "strategy": "grid", "parameters": {"solver.type": ["SGD", "Adam"]}}
    detail = client.post("/v1/sweeps", json=body).json()["detail"]
    assert detail[0]["loc"] == ["body", "base", "solver", "params", "momentum"]
    assert "trial 1: solver.type='Adam'" in detail[0]["msg"]


def test_a_solver_value_torch_refuses_is_at_its_kwarg_in_base_or_parameters(
    client: TestClient,
) -> None:
    bad = {**BASE, "solver": {"type": "SGD", "params": {"momentum": -1}}}
    body = {"base": bad, "strategy": "grid", "parameters": {"base_lr": [0.1, 1]}}
    detail = client.post("/v1/sweeps", json=body).json()["detail"]
    assert [e["loc"] for e in detail] == [["body", "base", "solver", "params", "momentum"]]
    assert detail[0]["msg"].startswith("SGD rejects these params: Invalid momentum value: -1")
    swept = {"solver.params.momentum": [0.5, -1]}
    body = {"base": BASE, "strategy": "grid", "parameters": swept}
    detail = client.post("/v1/sweeps", json=body).json()["detail"]
    assert [e["loc"] for e in detail] == [["body", "parameters", "solver.params.momentum"]]
    assert detail[0]["msg"] == (
        "trial 1 with solver.params.momentum=-1: SGD rejects these params: "
        "Invalid momentum value: -1"
    )


def test_coarse_to_fine_launches_the_fine_stage_inside_the_best_decade(
    client: TestClient,
) -> None:
    r = client.post(
        "/v1/sweeps",
        json={
            "name": "c2f",
            "base": BASE,
            "strategy": "lr_coarse_to_fine",
            "min_lr": 1e-4,
            "max_lr": 1.0,
            "fine_points": 3,
        },
    )
    assert r.status_code == 201, r.text
    sweep_id, ids = r.json()["sweep_id"], r.json()["ids"]
    s = sweep(client, sweep_id)
    assert [e["params"]["base_lr"] for e in s["experiments"]] == [1e-4, 1e-3, 1e-2, 0.1, 1.0]
    # Known outcomes: 0.1 best, its neighbours 1e-2 (0.5) and 1.0 (diverged): stage 2 scans
    # inside (0.01, 0.1).
    outcomes = {1e-4: [2.0, 1.9], 1e-3: [1.5, 1.2], 1e-2: [0.8, 0.5], 0.1: [0.4, 0.2]}
    for e in s["experiments"]:
        lr = e["params"]["base_lr"]
        if lr in outcomes:
            end_run(e["experiment_id"], outcomes[lr])
    advance_running()
    assert sweep(client, sweep_id)["stage"] == 1  # one coarse run (1.0) still queued
    end_run(ids[-1], [0.3, math.inf], status="diverged")
    assert advance_running() == 1
    assert advance_running() == 0  # once only
    s = sweep(client, sweep_id)
    assert s["stage"] == 2 and s["status"] == "running"
    fine = [e for e in s["experiments"] if e["stage"] == 2]
    assert len(fine) == 3
    lrs = [e["params"]["base_lr"] for e in fine]
    assert all(0.01 < lr < 0.1 for lr in lrs)
    assert lrs == pytest.approx([0.01 * 10 ** (k / 4) for k in (1, 2, 3)], rel=1e-5)
    assert "best coarse base_lr 0.1" in s["note"]
    fine_exp = client.get(f"/v1/experiments/{fine[0]['experiment_id']}").json()
    assert fine_exp["tags"]["sweep_stage"] == "fine"
    # Leaderboard: finished runs by best val_loss; the diverged one (score 0.3) below them all.
    board = s["leaderboard"]
    assert [e["params"]["base_lr"] for e in board][:4] == [0.1, 0.01, 0.001, 0.0001]
    assert board[4]["status"] == "diverged"
    assert s["best"]["params"]["base_lr"] == 0.1 and s["best"]["score"] == 0.2
    for i, e in enumerate(fine):
        end_run(e["experiment_id"], [0.3, 0.1 - 0.01 * i])
    advance_running()
    s = sweep(client, sweep_id)
    assert s["status"] == "finished" and s["finished_at"] is not None
    assert s["best"]["stage"] == 2 and s["best"]["score"] == pytest.approx(0.08)


def test_a_tag_key_with_a_colon_is_refused_at_submit_not_in_stage_two(
    client: TestClient,
) -> None:
    base = {**BASE, "tags": {"a:b": "c"}}
    body = {"base": base, "strategy": "lr_coarse_to_fine", "min_lr": 0.01, "max_lr": 1.0}
    r = client.post("/v1/sweeps", json=body)
    assert r.status_code == 422
    assert [e["loc"] for e in r.json()["detail"]] == [["body", "base", "tags", "a:b"]]
    # A sweep accepted before the rule, its request stored with such a key: stage 2 starts.
    r = client.post("/v1/sweeps", json={**body, "base": BASE})
    sweep_id, ids = r.json()["sweep_id"], r.json()["ids"]
    with session_scope() as session:
        row = session.get(Sweep, sweep_id)
        assert row is not None
        row.request = {**row.request, "base": base}
    for i in ids:
        end_run(i, [0.5, 0.4])
    assert advance_running() == 1
    s = sweep(client, sweep_id)
    assert s["stage"] == 2 and s["status"] == "running", s["note"]


def test_cancel_stops_runs_and_no_stage_follows(client: TestClient) -> None:
    r = client.post(
        "/v1/sweeps", json={"base": BASE, "strategy": "lr_coarse_to_fine", "min_lr": 0.01}
    )
    sweep_id = r.json()["sweep_id"]
    s = client.post(f"/v1/sweeps/{sweep_id}/cancel").json()
    assert s["status"] == "cancelled" and s["counts"] == {"cancelled": 3}
    advance_running()
    assert sweep(client, sweep_id)["stage"] == 1
    assert client.get("/v1/sweeps/999999").status_code == 404

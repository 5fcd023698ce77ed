"""Honest outcomes through the API, on both backends, with runs trained in-process
(`worker.runs.lifecycle.run_experiment`): a run that blew up ends `diverged` with its decision's
sentence, a run that ended early says why in its progress, and its best names the metric it is
the best of. The divergence guard's spec is checked at submit (422 at the field)."""

from __future__ import annotations

from typing import Any

import pytest
from fastapi.testclient import TestClient

from worker.runs.lifecycle import run_experiment

# The run: SGD with momentum at base_lr 50 on digits sits at chance accuracy with a
# train loss of 1,350 (and ended `succeeded` before the guard).
BLOWN_UP: dict[str, Any] = {
    "name": "lr-50", "dataset": "digits", "base_lr": 50, "epochs": 3, "device": "cpu",
    "solver": {"type": "SGD", "params": {"momentum": 0.9}},
}  # fmt: skip
IRIS: dict[str, Any] = {
    "dataset": "iris", "split": {"train": 0.6, "val": 0.4, "seed": 1}, "device": "cpu",
    "model": {"type": "mlp", "hidden": [8]}, "base_lr": 1e-4, "epochs": 20, "batch_size": 32,
}  # fmt: skip


def trained(client: TestClient, spec: dict[str, Any]) -> dict[str, Any]:
    created = client.post("/v1/experiments", json=spec)
    assert created.status_code == 201, created.text
    exp_id = created.json()["id"]
    run_experiment(exp_id, owner="test:1")
    body: dict[str, Any] = client.get(f"/v1/experiments/{exp_id}").json()
    return body


def test_a_run_that_blew_up_ends_diverged_with_the_decisions_sentence(client: TestClient) -> None:
    got = trained(client, BLOWN_UP)
    assert got["status"] == "diverged" and got["epochs_run"] == 1
    (decision,) = client.get(f"/v1/experiments/{got['id']}/decisions").json()["decisions"]
    assert (decision["kind"], decision["monitor"], decision["epoch"]) == (
        "diverged", "train_loss", 1,
    )  # fmt: skip
    assert decision["value"] > 1000
    assert decision["reason"].startswith(f"train_loss {decision['value']:.4g} at epoch 1 is above")
    assert "10 × the untrained model's 2.3" in decision["reason"]
    assert got["stop_reason"] == decision["reason"]
    assert got["progress"]["stopped"] == f"diverged at epoch 1 of 3: {decision['reason']}"
    row = client.get(f"/v1/experiments/{got['id']}/metrics").json()["epochs"][0]
    assert row["decision"] == "diverged" and row["train_loss"] == decision["value"]
    # Without the guard the same run trains to its end and reads as a success.
    assert trained(client, {**BLOWN_UP, "epochs": 1, "divergence": None})["status"] == "succeeded"


def test_an_early_stopped_run_says_why_and_names_its_best(client: TestClient) -> None:
    stop = {"monitor": "val_accuracy", "mode": "max", "patience": 2, "min_delta": 0.5}
    got = trained(client, {**IRIS, "early_stopping": stop})
    assert got["status"] == "early_stopped" and got["epochs_run"] == 3
    assert got["progress"]["stopped"] == f"stopped early at epoch 3 of 20: {got['stop_reason']}"
    assert got["stop_reason"].startswith("val_accuracy has not improved on")
    assert got["best"] == {"metric": "val_accuracy", "mode": "max", "value": got["best_value"],
                           "epoch": 1}  # fmt: skip
    listed = client.get("/v1/experiments").json()["items"]
    assert [e["best"] for e in listed if e["id"] == got["id"]] == [got["best"]]


def test_best_is_the_lowest_val_loss_without_a_monitor_and_succeeded_has_no_stop(
    client: TestClient,
) -> None:
    got = trained(client, {**IRIS, "epochs": 2, "base_lr": 0.05})
    rows = client.get(f"/v1/experiments/{got['id']}/metrics").json()["epochs"]
    low = min(rows, key=lambda r: r["val_loss"])
    assert got["status"] == "succeeded" and got["progress"]["stopped"] is None
    assert got["best"] == {"metric": "val_loss", "mode": "min", "value": low["val_loss"],
                           "epoch": low["epoch"]}  # fmt: skip
    queued = client.post("/v1/experiments", json=IRIS).json()
    assert queued["best"] is None and queued["progress"]["stopped"] is None
    cancelled = client.post(f"/v1/experiments/{queued['id']}/cancel").json()
    assert cancelled["progress"]["stopped"] == "stopped before epoch 1: cancelled before it started"


@pytest.mark.parametrize(
    ("divergence", "errors"),
    [
        ({"factor": 1}, {"factor": "greater_than"}),
        ({"factor": 0.5, "ceiling": 0}, {"factor": "greater_than", "ceiling": "greater_than"}),
        ({"ceiling": -3}, {"ceiling": "greater_than"}),
        ({"factor": "10"}, {"factor": "float_type"}),
        ({"k": 10}, {"k": "extra_forbidden"}),
        (10, {}),
    ],
)
def test_the_guard_is_checked_at_submit(
    client: TestClient, divergence: Any, errors: dict[str, str]
) -> None:
    r = client.post("/v1/experiments", json={"divergence": divergence})
    assert r.status_code == 422, r.text
    got = {tuple(d["loc"]): d["type"] for d in r.json()["detail"]}
    if errors:
        assert got == {("body", "divergence", k): v for k, v in errors.items()}
    else:
        assert [loc[:2] for loc in got] == [("body", "divergence")]


def test_a_non_finite_factor_is_a_422_and_the_guard_is_stored_as_given(
    client: TestClient,
) -> None:
    r = client.post("/v1/experiments", content=b'{"divergence": {"factor": 1e999}}',
                    headers={"content-type": "application/json"})  # fmt: skip
    assert r.status_code == 422, r.text
    assert [d["loc"] for d in r.json()["detail"]] == [["body", "divergence", "factor"]]
    on = client.post("/v1/experiments", json={"divergence": {"factor": 4, "ceiling": 50}}).json()
    assert on["spec"]["divergence"] == {"factor": 4.0, "ceiling": 50.0}
    off = client.post("/v1/experiments", json={"divergence": None}).json()
    assert off["spec"]["divergence"] is None
    # The default is left out of the stored spec, so specs store and hash as before.
    assert "divergence" not in client.post("/v1/experiments", json={}).json()["spec"]

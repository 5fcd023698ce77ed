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


# A learning rate beyond float32's largest value (~3.4e38) cannot be taken by a step on float32
# weights: torch refuses it ("value cannot be converted to type float without overflow"). Such a
# run ends `diverged` at the epoch where it happened, as 2**80 does through the guard.
OVERFLOWS = {
    "base_lr": ({"base_lr": 1e308}, 1, 1e308),
    "ExponentialLR": (
        {"epochs": 4, "scheduler": {"type": "ExponentialLR", "params": {"gamma": 1e200}}},
        2, 1e-4 * 1e200,
    ),
    "CyclicLR": (
        {"scheduler": {"type": "CyclicLR", "params": {"max_lr": 1e308, "step_size_up": 2}}},
        1, None,
    ),
    "OneCycleLR": (
        {"scheduler": {"type": "OneCycleLR", "params": {"max_lr": 0.1, "div_factor": 1e-308}}},
        1, None,
    ),
}  # fmt: skip


@pytest.mark.parametrize("case", list(OVERFLOWS))
def test_a_learning_rate_that_overflows_float32_ends_diverged_not_failed(
    client: TestClient, case: str
) -> None:
    extra, epoch, lr = OVERFLOWS[case]
    got = trained(client, {**IRIS, "epochs": 3, **extra})
    assert (got["status"], got["epochs_run"], got["error"]) == ("diverged", epoch, None)
    (decision,) = client.get(f"/v1/experiments/{got['id']}/decisions").json()["decisions"]
    assert (decision["kind"], decision["monitor"], decision["epoch"]) == ("diverged", "lr", epoch)
    assert decision["value"] > 3.4e38 and (lr is None or decision["value"] == pytest.approx(lr))
    assert decision["reason"].startswith(f"the learning rate {decision['value']:.4g} at epoch")
    assert decision["reason"].endswith(
        "overflowed the parameters' float32 (largest 3.403e+38): diverged"
    )
    assert got["stop_reason"] == decision["reason"] and got["model"] is None
    rows = client.get(f"/v1/experiments/{got['id']}/metrics").json()["epochs"]
    assert [r["epoch"] for r in rows] == list(range(1, epoch + 1))
    assert rows[-1]["decision"] == "diverged" and rows[-1]["train_loss"] is None


def test_a_range_test_whose_ramp_overflows_float32_stops_there(client: TestClient) -> None:
    # Step 1's LR is about 2.7, step 2's about 7e38: above float32's largest.
    body = {"spec": {**IRIS, "solver": {"type": "SGD"}}, "min_lr": 1e-38, "max_lr": 1e308,
            "steps": 10}  # fmt: skip
    created = client.post("/v1/lr-range-tests", json=body)
    assert created.status_code == 201, created.text
    run_experiment(created.json()["id"], owner="test:1")
    got = client.get(f"/v1/lr-range-tests/{created.json()['id']}").json()
    assert got["status"] == "succeeded", got
    lr = got["points"][-1]["lr"]
    assert got["stopped"] == (f"diverged at step 2: the learning rate {lr:.4g} overflowed the "
                              "parameters' float32 (largest 3.403e+38)")  # fmt: skip
    assert [p["step"] for p in got["points"]] == [0, 1, 2] and got["steps_run"] == 3

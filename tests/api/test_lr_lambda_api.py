"""LambdaLR/MultiplicativeLR through the API (each backend): accepted in the contract's grammar,
a hostile or bad-factor lambda a 422 at `scheduler.params.lr_lambda` naming the epoch, the
preview and a run's stored LR equal to plain torch."""

from __future__ import annotations

from typing import Any

from fastapi.testclient import TestClient

from tests.support.torch_reference import plain_torch_lrs
from worker.runs.lifecycle import run_experiment

SPEC: dict[str, Any] = {
    "dataset": "iris", "model": {"type": "mlp", "hidden": [8]}, "base_lr": 0.1, "epochs": 6,
    "scheduler": {"type": "LambdaLR", "params": {"lr_lambda": "0.8 ** epoch"}}, "device": "cpu",
}  # fmt: skip
LOC = ["body", "scheduler", "params", "lr_lambda"]


def plain_torch(epochs: int) -> list[float]:
    return plain_torch_lrs(
        base_lr=0.1, kind="LambdaLR", params={"lr_lambda": "0.8 ** epoch"}, interval="epoch",
        warmup=0, start_factor=0.1, epochs=epochs, steps=1,
    )  # fmt: skip


def test_a_run_records_plain_torchs_lr(client: TestClient) -> None:
    created = client.post("/v1/experiments", json=SPEC)
    assert created.status_code == 201, created.text
    exp_id = created.json()["id"]
    assert run_experiment(exp_id).status == "succeeded"
    rows = client.get(f"/v1/experiments/{exp_id}/metrics").json()["epochs"]
    assert [r["lr"] for r in rows] == plain_torch(6)
    body = {"base_lr": 0.1, "scheduler": SPEC["scheduler"], "epochs": 6, "steps_per_epoch": 3}
    preview = client.post("/v1/schedules/preview", json=body)
    assert preview.status_code == 200, preview.text
    assert preview.json()["lr"] == plain_torch(6)


def test_a_hostile_lambda_is_a_422_and_nothing_is_stored(client: TestClient) -> None:
    before = client.get("/v1/experiments").json()["items"]
    for hostile in ("__import__('os').system('touch /tmp/x')", "epoch.__class__", "open"):
        bad = {**SPEC, "scheduler": {"type": "LambdaLR", "params": {"lr_lambda": hostile}}}
        r = client.post("/v1/experiments", json=bad)
        assert r.status_code == 422, r.text
        assert r.json()["detail"][0]["loc"] == LOC
    assert client.get("/v1/experiments").json()["items"] == before


def test_a_negative_factor_names_its_epoch(client: TestClient) -> None:
    bad = {**SPEC, "scheduler": {"type": "MultiplicativeLR",
                                 "params": {"lr_lambda": "1 if epoch < 4 else -1"}}}  # fmt: skip
    r = client.post("/v1/experiments", json=bad)
    assert r.status_code == 422
    [error] = r.json()["detail"]
    assert error["loc"] == LOC and "at epoch 4:" in error["msg"]

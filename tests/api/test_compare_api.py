"""GET /v1/experiments/compare: several runs on one epoch axis, with their decisions."""

from __future__ import annotations

from typing import Any

from fastapi.testclient import TestClient

from tests.support.runs import end_run

SPEC: dict[str, Any] = {"dataset": "digits", "model": {"type": "mlp", "hidden": [8]}, "epochs": 5}


def test_series_align_on_epochs_and_carry_decisions(client: TestClient) -> None:
    a = client.post("/v1/experiments", json={**SPEC, "name": "a"}).json()["id"]
    b = client.post("/v1/experiments", json={**SPEC, "name": "b"}).json()["id"]
    reduce = {"kind": "reduce_lr", "monitor": "val_loss", "value": 0.9, "best": 0.8,
              "best_epoch": 1, "old_lr": 0.1, "new_lr": 0.05,
              "reason": "val_loss did not improve for 2 epochs"}  # fmt: skip
    end_run(a, [1.0, 0.8, 0.9], lrs=[0.1, 0.1, 0.1], decisions={3: reduce})
    end_run(b, [1.2, 1.1, 1.0, 0.9, 0.85], status="succeeded", lrs=[0.2, 0.2, 0.2, 0.2, 0.1])
    r = client.get("/v1/experiments/compare", params={"ids": f"{b},{a}"})
    assert r.status_code == 200, r.text
    body = r.json()
    assert body["epochs"] == [1, 2, 3, 4, 5]
    sb, sa = body["series"]  # in the order asked for
    assert (sb["experiment_id"], sa["experiment_id"]) == (b, a)
    assert sa["val_loss"] == [1.0, 0.8, 0.9, None, None]
    assert sb["lr"] == [0.2, 0.2, 0.2, 0.2, 0.1]
    assert sa["name"] == "a" and sa["status"] == "succeeded"
    assert [(d["epoch"], d["kind"], d["new_lr"]) for d in sa["decisions"]] == [
        (3, "reduce_lr", 0.05)
    ]
    assert sb["decisions"] == []
    # repeated form, duplicates dropped
    again = client.get(f"/v1/experiments/compare?ids={a}&ids={b}&ids={a}").json()
    assert [s["experiment_id"] for s in again["series"]] == [a, b]


def test_bad_ids_are_4xx_with_the_field(client: TestClient) -> None:
    a = client.post("/v1/experiments", json=SPEC).json()["id"]
    r = client.get("/v1/experiments/compare", params={"ids": f"{a},x"})
    assert r.status_code == 422 and r.json()["detail"][0]["loc"] == ["query", "ids"]
    r = client.get("/v1/experiments/compare", params={"ids": f"{a},-1"})
    assert r.json()["detail"][0]["msg"] == "ids are run ids, positive whole numbers; got '-1'"
    r = client.get("/v1/experiments/compare", params={"ids": f"{a},999999"})
    assert r.status_code == 404 and "999999" in r.json()["detail"][0]["msg"]
    assert client.get("/v1/experiments/compare").status_code == 422
    many = ",".join(str(i) for i in range(1, 60))
    assert client.get("/v1/experiments/compare", params={"ids": many}).status_code == 422
    empty = client.get("/v1/experiments/compare", params={"ids": str(a)}).json()
    assert empty["epochs"] == [] and empty["series"][0]["lr"] == []

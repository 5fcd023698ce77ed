"""POST /v1/experiments answers a spec with several mistakes with one 422 that lists them all,
each at its field: the schema's (Pydantic) and the checks beyond it (torch, the dataset) in the
same answer, so a spec with five mistakes is fixed in one round, not four."""

from __future__ import annotations

from typing import Any

from fastapi.testclient import TestClient


def locs(client: TestClient, spec: dict[str, Any]) -> list[list[str | int]]:
    r = client.post("/v1/experiments", json=spec)
    assert r.status_code == 422, r.text
    return [e["loc"] for e in r.json()["detail"]]


def test_five_mistakes_in_one_422(client: TestClient) -> None:
    spec = {
        "dataset": "iris",
        "base_lr": -0.1,  # schema: > 0
        "epochs": 0,  # schema: >= 1
        "early_stopping": {"monitor": "val_loss", "mode": "up", "patience": 3},  # schema: enum
        "solver": {"type": "SGD", "params": {"momentum": -0.5}},  # torch refuses it
        "model": {"type": "cnn"},  # iris is tabular: the dataset check
    }
    found = locs(client, spec)
    assert sorted(map(str, found)) == sorted(map(str, [
        ["body", "base_lr"],
        ["body", "epochs"],
        ["body", "early_stopping", "mode"],
        ["body", "solver", "params"],
        ["body", "model", "type"],
    ]))  # fmt: skip
    # Nothing was created by the refused spec.
    assert client.get("/v1/experiments").json()["items"] == []


def test_scheduler_and_solver_mistakes_beside_a_refused_model(client: TestClient) -> None:
    found = locs(client, {
        "dataset": "digits",
        "model": {"type": "mlp", "hidden": [0]},  # schema
        "solver": {"type": "SGD", "params": {"momentum": 0.9, "bogus": 1}},  # unknown kwarg
        "scheduler": {"type": "ReduceLROnPlateau", "params": {"factor": 2.0}},  # torch: < 1
    })  # fmt: skip
    assert ["body", "model", "hidden", 0] in found
    assert ["body", "solver", "params", "bogus"] in found
    assert ["body", "scheduler", "params", "factor"] in found


def test_scheduler_mistake_beside_a_model_the_dataset_cannot_take(client: TestClient) -> None:
    found = locs(client, {"dataset": "iris", "model": {"type": "resnet"},
                          "scheduler": {"type": "StepLR", "params": {}}})  # fmt: skip
    assert found == [["body", "model", "type"], ["body", "scheduler", "params", "step_size"]]


def test_no_finding_about_a_stand_in_for_a_refused_field(client: TestClient) -> None:
    # With `epochs` refused, the warmup cannot be compared with it: only the schema's error.
    assert locs(client, {"epochs": 0, "warmup": {"epochs": 30}}) == [["body", "epochs"]]
    # With the dataset refused, the model's fit to it is not judged.
    assert locs(client, {"dataset": 5, "model": {"type": "cnn"}}) == [["body", "dataset"]]


def test_a_body_that_is_no_object_gets_the_schema_error_alone(client: TestClient) -> None:
    r = client.post("/v1/experiments", json=[1, 2])
    assert r.status_code == 422
    assert [e["loc"] for e in r.json()["detail"]] == [["body"]]


def test_a_valid_spec_is_still_created(client: TestClient) -> None:
    r = client.post("/v1/experiments", json={"dataset": "iris", "epochs": 2})
    assert r.status_code == 201, r.text

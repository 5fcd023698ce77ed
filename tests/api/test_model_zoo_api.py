"""The model zoo (issue #12) through the experiments API: built-in models are accepted as
specs on image data, and their shape and meaning errors are 422s naming the field."""

from __future__ import annotations

from typing import Any

import pytest
from fastapi.testclient import TestClient

SPEC: dict[str, Any] = {
    "name": "digits-zoo",
    "dataset": "digits",
    "solver": {"type": "SGD", "params": {"momentum": 0.9}},
    "base_lr": 0.05,
    "epochs": 2,
}


def post(client: TestClient, model: dict[str, Any], dataset: str = "digits") -> Any:
    return client.post("/v1/experiments", json={**SPEC, "dataset": dataset, "model": model})


@pytest.mark.parametrize(
    "model",
    [
        {"type": "resnet", "depth": 8, "width": 4},
        {"type": "cnn", "batchnorm": True, "pool": "max"},
        {"type": "mlp", "hidden": [32], "norm": "layer"},
    ],
)
def test_zoo_models_are_accepted(client: TestClient, model: dict[str, Any]) -> None:
    r = post(client, model)
    assert r.status_code == 201, r.text
    assert (
        client.get(f"/v1/experiments/{r.json()['id']}").json()["spec"]["model"]["type"]
        == (model["type"])
    )


def test_resnet_depth_not_6n_plus_2_is_422(client: TestClient) -> None:
    r = post(client, {"type": "resnet", "depth": 21})
    assert r.status_code == 422, r.text
    [error] = r.json()["detail"]
    assert error["loc"][-1] == "depth"
    assert "6n+2" in error["msg"]


@pytest.mark.parametrize(
    ("model", "dataset", "loc"),
    [
        ({"type": "resnet", "depth": 8}, "iris", ["body", "model", "type"]),
        (
            {"type": "cnn", "channels": [4, 4, 4, 4], "pool": "avg"},
            "digits",
            ["body", "model", "pool"],
        ),
    ],
)
def test_zoo_meaning_errors_are_422_at_the_field(
    client: TestClient, model: dict[str, Any], dataset: str, loc: list[str]
) -> None:
    r = post(client, model, dataset)
    assert r.status_code == 422, r.text
    assert [d["loc"] for d in r.json()["detail"]] == [loc]
    assert client.get("/v1/experiments").json()["items"] == []

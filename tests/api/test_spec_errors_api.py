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
        ["body", "solver", "params", "momentum"],
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


LAMBDA = ["body", "scheduler", "params", "lr_lambda"]


def test_a_lambda_outside_the_grammar_beside_a_refused_field_or_split(client: TestClient) -> None:
    hostile = {"type": "LambdaLR", "params": {"lr_lambda": "import os"}}
    # base_lr refused (schema): the lambda reads nothing of it, so it is judged too.
    assert locs(client, {"dataset": "iris", "base_lr": -1, "scheduler": hostile}) == [
        ["body", "base_lr"], LAMBDA,
    ]  # fmt: skip
    split = {"train": 0.8, "val": 0.5}  # train + val > 1
    found = locs(client, {"dataset": "iris", "split": split, "scheduler": hostile})
    assert found == [["body", "split"], LAMBDA]
    # An element of a composition, and a per-step lambda in `epoch` (the wrong variable).
    composed = {"type": "SequentialLR", "params": {"milestones": [2]}, "schedulers": [
        {"type": "StepLR", "params": {"step_size": 1}},
        {"type": "MultiplicativeLR", "params": {"lr_lambda": "open('x')"}},
    ]}  # fmt: skip
    assert locs(client, {"dataset": "iris", "epochs": 0, "scheduler": composed}) == [
        ["body", "epochs"], ["body", "scheduler", "schedulers", 1, "params", "lr_lambda"],
    ]  # fmt: skip
    per_step = {"type": "LambdaLR", "interval": "step", "params": {"lr_lambda": "0.9 ** epoch"}}
    r = client.post("/v1/experiments", json={"base_lr": 0, "scheduler": per_step})
    assert [e["loc"] for e in r.json()["detail"]] == [["body", "base_lr"], LAMBDA]
    assert "interval `epoch`" in r.json()["detail"][1]["msg"]


def test_a_lambda_outside_the_grammar_beside_a_warmup_the_run_cannot_take(
    client: TestClient,
) -> None:
    # The warmup (a check beyond the schema: longer than the run) stops the schedule's walk;
    # the lambda's own mistake is still in the same answer.
    found = locs(client, {
        "dataset": "iris", "epochs": 5, "warmup": {"epochs": 10},
        "scheduler": {"type": "LambdaLR", "params": {"lr_lambda": "epoch.__class__"}},
    })  # fmt: skip
    assert found == [["body", "warmup", "epochs"], LAMBDA]


def test_a_batch_spec_s_lambda_is_judged_beside_its_refused_base_lr(client: TestClient) -> None:
    bad = {"dataset": "iris", "base_lr": -1,
           "scheduler": {"type": "LambdaLR", "params": {"lr_lambda": "import os"}}}  # fmt: skip
    r = client.post("/v1/batches", json={"experiments": [{"dataset": "iris"}, bad]})
    assert [e["loc"] for e in r.json()["detail"]] == [
        ["body", "experiments", 1, "base_lr"],
        ["body", "experiments", 1, "scheduler", "params", "lr_lambda"],
    ]

"""Plugin models and datasets at the API (in-process, each backend): a worker that has the
example plugin (examples/plugin, pip-installed) registers its real manifest, and the API checks
specs against it: names, params, types, reserved arguments, routing to a capability queue. The
API process itself imports nothing a spec names; tests/integration/test_plugins.py shows it
needs no plugin installed at all."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from fastapi.testclient import TestClient

from service.experiments.models import Experiment
from service.kit.db import session_scope
from tests.support.plugins import offered_here
from worker.runs import registry

SPEC: dict[str, Any] = {
    "dataset": {"type": "shapes", "params": {"n": 240}},
    "model": {"type": "tiny_resnet", "params": {"width": 4}},
    "solver": {"type": "Adam"},
    "base_lr": 0.01,
    "epochs": 3,
    "batch_size": 32,
}


@pytest.fixture
def offered(client: TestClient, plugin_path: Path) -> Iterator[registry.Registration]:
    with offered_here(plugin_path) as reg:
        yield reg


def errors(response: Any) -> dict[tuple[Any, ...], str]:
    assert response.status_code == 422, response.text
    return {tuple(e["loc"]): e["msg"] for e in response.json()["detail"]}


def queue_of(experiment_id: int) -> str:
    with session_scope() as session:
        row = session.get(Experiment, experiment_id)
        assert row is not None
        return row.queue


def test_workers_lists_the_manifest(client: TestClient, offered: registry.Registration) -> None:
    items = client.get("/v1/workers").json()["items"]
    [me] = [w for w in items if w["id"] == offered.id]
    assert me["state"] == "alive" and me["current_run"] is None
    model = me["plugins"]["models"]["tiny_resnet"]
    assert (model["package"], model["version"]) == ("glidepath-example-plugin", "0.1.0")
    assert {p["name"]: p["default"] for p in model["params"]} == {"width": 8, "blocks": 1}
    assert me["plugins"]["datasets"]["shapes"]["params"][0] == {
        "name": "n", "required": False, "default": 600, "kind": "integer",
    }  # fmt: skip
    assert "auto.model.tiny_resnet.dataset.shapes" in me["queues"]
    assert "cpu" in me["queues"] and me["devices"][-1]["kind"] == "cpu"


def test_a_plugin_spec_is_accepted_and_routed_to_workers_that_offer_it(
    client: TestClient, offered: registry.Registration
) -> None:
    both = client.post("/v1/experiments", json=SPEC)
    assert both.status_code == 201, both.text
    assert both.json()["dataset"] == "shapes"
    assert both.json()["split_sizes"] is None  # a plugin dataset's: the worker's to write
    assert queue_of(both.json()["id"]) == "auto.model.tiny_resnet.dataset.shapes"

    model_only = client.post("/v1/experiments", json={**SPEC, "dataset": "digits"})
    assert model_only.status_code == 201, model_only.text
    assert model_only.json()["split_sizes"] == {"train": 1438, "val": 359, "test": 0}
    assert queue_of(model_only.json()["id"]) == "auto.model.tiny_resnet"

    data_only = client.post("/v1/experiments", json={**SPEC, "model": {"type": "mlp"},
                                                      "device": "cpu"})  # fmt: skip
    assert data_only.status_code == 201, data_only.text
    assert queue_of(data_only.json()["id"]) == "cpu.dataset.shapes"


def test_params_are_checked_against_the_factory_signature(
    client: TestClient, offered: registry.Registration
) -> None:
    bad = {
        **SPEC,
        "model": {"type": "tiny_resnet", "params": {"widht": 4, "blocks": "two", "n_outputs": 3}},
        "dataset": {"type": "shapes", "params": {"n": 240, "noise": True}},
    }
    found = errors(client.post("/v1/experiments", json=bad))
    assert "no parameter 'widht'; allowed: blocks, width" in found[
        ("body", "model", "params", "widht")]  # fmt: skip
    assert "takes a integer" in found[("body", "model", "params", "blocks")]
    assert "passed by the worker" in found[("body", "model", "params", "n_outputs")]
    assert "takes a number" in found[("body", "dataset", "params", "noise")]


def test_unknown_names_list_what_is_offered(
    client: TestClient, offered: registry.Registration
) -> None:
    found = errors(client.post("/v1/experiments", json={**SPEC, "model": {"type": "tiny_resnt"}}))
    msg = found[("body", "model", "type")]
    assert "unknown model 'tiny_resnt'" in msg
    assert "tiny_resnet (glidepath-example-plugin 0.1.0)" in msg and "resnet" in msg
    found = errors(client.post("/v1/experiments", json={**SPEC, "dataset": "shape"}))
    assert "shapes (glidepath-example-plugin 0.1.0)" in found[("body", "dataset")]


def test_without_a_registered_worker_no_plugin_is_offered(client: TestClient) -> None:
    found = errors(client.post("/v1/experiments", json=SPEC))
    assert "no registered worker has a plugin installed" in found[("body", "model", "type")]
    assert "unknown dataset 'shapes'" in found[("body", "dataset", "type")]


@pytest.mark.parametrize(
    "name", ["os:system", "os.system", "glidepath_example.models:tiny_resnet", "../x", ""]
)
def test_import_paths_are_never_names(client: TestClient, name: str) -> None:
    found = errors(client.post("/v1/experiments", json={**SPEC, "model": {"type": name}}))
    assert ("body", "model", "type") in found
    found = errors(client.post("/v1/experiments", json={**SPEC, "dataset": {"type": name}}))
    assert ("body", "dataset", "type") in found


def test_a_plugin_run_trains_and_records_its_package_version(
    client: TestClient, offered: registry.Registration
) -> None:
    from worker.runs.lifecycle import run_experiment

    created = client.post("/v1/experiments", json={**SPEC, "epochs": 4})
    assert created.status_code == 201, created.text
    experiment_id = created.json()["id"]
    assert run_experiment(experiment_id).status == "succeeded"
    detail = client.get(f"/v1/experiments/{experiment_id}").json()
    assert detail["plugins"] == {
        "model": {"name": "tiny_resnet", "package": "glidepath-example-plugin", "version": "0.1.0"},
        "dataset": {"name": "shapes", "package": "glidepath-example-plugin", "version": "0.1.0"},
    }
    # width 4, one block: stem 36 + bn 8, block 2×(144 + 8), head 4×3 + 3
    assert detail["param_count"] == 36 + 8 + 2 * (144 + 8) + 15
    assert detail["split_sizes"] == {"train": 192, "val": 48, "test": 0}
    assert detail["steps_per_epoch"] == 6
    rows = client.get(f"/v1/experiments/{experiment_id}/metrics").json()["epochs"]
    assert [r["epoch"] for r in rows] == [1, 2, 3, 4]
    assert rows[-1]["train_loss"] < rows[0]["train_loss"]


def test_the_example_spec_is_accepted(client: TestClient, offered: registry.Registration) -> None:
    from service.client import load_submission
    from tests.support.plugins import EXAMPLE

    [spec] = load_submission(EXAMPLE / "spec.yaml").specs()
    created = client.post("/v1/experiments", json=spec)
    assert created.status_code == 201, created.text
    assert created.json()["spec"]["model"] == {"type": "tiny_resnet",
                                                "params": {"width": 8, "blocks": 1}}  # fmt: skip


def test_a_factory_that_raises_fails_the_run_with_its_reason(
    client: TestClient, offered: registry.Registration
) -> None:
    from worker.runs.lifecycle import run_experiment

    spec = {**SPEC, "model": {"type": "tiny_resnet", "params": {"width": 0}}}
    experiment_id = client.post("/v1/experiments", json=spec).json()["id"]
    assert run_experiment(experiment_id).status == "failed"
    detail = client.get(f"/v1/experiments/{experiment_id}").json()
    assert detail["error"].endswith(
        "model plugin 'tiny_resnet' (glidepath-example-plugin 0.1.0) raised ValueError: width "
        "must be >= 1 and blocks >= 0; got width=0, blocks=1"
    )
    # Known only once the worker built the data: 20 samples leave nothing for a 1% val part.
    small = {**SPEC, "dataset": {"type": "shapes", "params": {"n": 20}},
             "split": {"train": 0.9, "val": 0.01}}  # fmt: skip
    experiment_id = client.post("/v1/experiments", json=small).json()["id"]
    assert run_experiment(experiment_id).status == "failed"
    error = client.get(f"/v1/experiments/{experiment_id}").json()["error"]
    assert "split.val: 'shapes' has 20 samples: the val part would be empty" in error

"""GET /v1/workers on SQLite and PostgreSQL with registry rows stored as workers store them
(WorkerRepository.register): an older worker's manifest without `models` or `datasets` is read
as offering none of that kind, never a 500, and submit-time checks read it the same way."""

from __future__ import annotations

from typing import Any

import pytest
from fastapi.testclient import TestClient

from service.kit.db import session_scope
from service.workers.repository import WorkerRepository

MODEL = {"params": [{"name": "width", "required": False, "default": 8, "kind": "integer"}],
         "var_keyword": False, "package": "mypkg", "version": "1.2.0"}  # fmt: skip


def register(worker_id: str, plugins: Any) -> None:
    with session_scope() as session:
        WorkerRepository(session).register(
            worker_id, host=worker_id.split(":")[0], pid=int(worker_id.split(":")[1]),
            queues=["cpu"], devices=[{"name": "cpu", "kind": "cpu"}], plugins=plugins,
        )  # fmt: skip


def workers(client: TestClient) -> dict[str, dict[str, Any]]:
    r = client.get("/v1/workers")
    assert r.status_code == 200, r.text
    return {w["id"]: w for w in r.json()["items"]}


@pytest.mark.parametrize(
    "stored",
    [{}, {"models": {"wide": MODEL}}, {"datasets": {}}, None, {"models": None, "datasets": None}],
    ids=["empty", "no-datasets", "no-models", "null", "null-kinds"],
)
def test_an_older_manifest_lists_with_empty_maps(client: TestClient, stored: Any) -> None:
    register("old-host:41", stored)
    register("new-host:42", {"models": {}, "datasets": {}, "errors": {}})
    found = workers(client)
    old = found["old-host:41"]
    assert old["host"] == "old-host" and old["pid"] == 41 and old["state"] == "alive"
    models = (stored or {}).get("models") or {}
    assert old["plugins"] == {"models": models, "datasets": {}, "errors": {}}
    assert found["new-host:42"]["plugins"]["models"] == {}


def test_an_older_manifest_still_offers_its_models_at_submit(client: TestClient) -> None:
    register("old-host:43", {"models": {"wide": MODEL}})
    spec = {"dataset": "iris", "model": {"type": "wide", "params": {"width": 4}}, "epochs": 1}
    r = client.post("/v1/experiments", json=spec)
    assert r.status_code == 201, r.text
    bad = client.post("/v1/experiments", json={**spec, "dataset": {"type": "shapes"}})
    assert bad.status_code == 422
    [error] = bad.json()["detail"]
    assert error["loc"] == ["body", "dataset"] and "unknown dataset 'shapes'" in error["msg"]


def test_the_list_says_when_a_worker_counts_as_lost(client: TestClient) -> None:
    r = client.get("/v1/workers")
    assert r.status_code == 200 and r.json()["lost_after_s"] == 30

"""A run's final model over HTTP (GET /v1/experiments/{id}/model), deleting a run
(DELETE /v1/experiments/{id}) and its attempts in the detail, on both backends (a folder store on
the embedded one, S3 on postgres), with runs trained in-process (worker.runs.lifecycle)."""

from __future__ import annotations

import hashlib
import json
import struct
from typing import Any

import pytest
import safetensors.torch
from fastapi.testclient import TestClient
from sqlalchemy import func, select

from service.artifacts import service as artifacts
from service.artifacts.models import Artifact
from service.artifacts.store import StoreUnavailable
from service.config import settings
from service.datasets import builtin
from service.experiments.models import Attempt, EpochRow, ExperimentTag
from service.experiments.repository import ExperimentRepository
from service.kit.db import session_scope
from service.training.spec import ExperimentSpec
from service.training.status import ExperimentStatus
from worker.engine.model import build_model
from worker.runs.lifecycle import run_experiment

IRIS: dict[str, Any] = {
    "name": "download-me",
    "dataset": "iris",
    "split": {"train": 0.6, "val": 0.2, "test": 0.2, "seed": 1},
    "model": {"type": "mlp", "hidden": [16]},
    "solver": {"type": "SGD", "params": {"momentum": 0.9}},
    "base_lr": 0.05,
    "epochs": 3,
    "batch_size": 16,
    "seed": 3,
    "device": "cpu",
    "tags": {"suite": "download"},
}


def submit(client: TestClient, spec: dict[str, Any] = IRIS) -> int:
    created = client.post("/v1/experiments", json=spec)
    assert created.status_code == 201, created.text
    return int(created.json()["id"])


def finished(client: TestClient, spec: dict[str, Any] = IRIS) -> int:
    exp_id = submit(client, spec)
    assert run_experiment(exp_id, owner="test-host:1").status == "succeeded"
    return exp_id


def claim(exp_id: int) -> None:
    """The run as a worker holds it (status running), without training it."""
    with session_scope() as session:
        assert ExperimentRepository(session).claim(exp_id, "test-host:2", 60.0) == 1


def metadata(data: bytes) -> dict[str, str]:
    """A safetensors file's `__metadata__` (its header is a length-prefixed JSON object)."""
    (n,) = struct.unpack("<Q", data[:8])
    meta: dict[str, str] = json.loads(data[8 : 8 + n])["__metadata__"]
    return meta


def problem(response: Any) -> str:
    """The one error shape: {"detail": [{loc, msg, type}]}."""
    detail = response.json()["detail"]
    assert isinstance(detail, list) and {"loc", "msg", "type"} <= set(detail[0])
    return str(detail[0]["msg"])


class DownStore:
    """A store that does not answer."""

    local = False

    def local_path(self, key: str) -> None:
        return None

    def __getattr__(self, name: str) -> Any:
        def refuse(*args: Any, **kwargs: Any) -> Any:
            raise StoreUnavailable(f"{name}: connection refused")

        return refuse


def test_the_model_downloads_verified_and_loads_into_the_model_its_spec_builds(
    client: TestClient,
) -> None:
    exp_id = finished(client)
    got = client.get(f"/v1/experiments/{exp_id}/model")
    assert got.status_code == 200, got.text
    data = got.content
    assert got.headers["content-type"] == "application/octet-stream"
    assert got.headers["content-disposition"] == (
        f'attachment; filename="experiment-{exp_id}.safetensors"'
    )
    assert int(got.headers["content-length"]) == len(data)
    sha = hashlib.sha256(data).hexdigest()
    assert got.headers["etag"].strip('"') == sha

    weights = safetensors.torch.load(data)
    spec = ExperimentSpec.model_validate(IRIS)
    model = build_model(spec.model, builtin.info("iris"))
    model.load_state_dict(weights)  # strict: every tensor, and only those
    meta = metadata(data)
    assert json.loads(meta["spec"])["name"] == "download-me"
    assert meta["status"] == "succeeded" and meta["epochs_run"] == "3"

    detail = client.get(f"/v1/experiments/{exp_id}").json()
    assert json.loads(meta["test_metrics"]) == detail["test_metrics"]
    assert detail["model"] == {
        "size": len(data), "sha256": sha, "url": f"/v1/experiments/{exp_id}/model",
    }  # fmt: skip

    # A client that has it already: 304, nothing read from the store.
    again = client.get(f"/v1/experiments/{exp_id}/model", headers={"If-None-Match": f'"{sha}"'})
    assert again.status_code == 304 and again.headers["etag"] == f'"{sha}"'


def test_head_gives_the_downloads_headers_without_its_bytes(client: TestClient) -> None:
    """`curl -I` or a script checking for a model (or a change) before fetching it: GET's
    headers, no body; 304 for a sha256 it has; 404 and 409 as GET gives them."""
    exp_id = finished(client)
    url = f"/v1/experiments/{exp_id}/model"
    got, head = client.get(url), client.head(url)
    assert head.status_code == 200 and head.content == b""
    for name in ("content-type", "content-length", "content-disposition", "etag"):
        assert head.headers[name] == got.headers[name], name
    assert client.head(url, headers={"If-None-Match": got.headers["etag"]}).status_code == 304
    assert client.head(url, headers={"If-None-Match": '"other"'}).status_code == 200
    assert client.head("/v1/experiments/999999/model").status_code == 404
    queued = submit(client)
    assert client.head(f"/v1/experiments/{queued}/model").status_code == 409


def test_unknown_queued_and_running_runs_have_no_model(client: TestClient) -> None:
    unknown = client.get("/v1/experiments/999999/model")
    assert unknown.status_code == 404 and "not found" in problem(unknown)

    exp_id = submit(client)
    queued = client.get(f"/v1/experiments/{exp_id}/model")
    assert queued.status_code == 409 and "queued" in problem(queued)
    assert queued.json()["detail"][0]["type"] == "no_model"
    assert client.get(f"/v1/experiments/{exp_id}").json()["model"] is None

    claim(exp_id)
    running = client.get(f"/v1/experiments/{exp_id}/model")
    assert running.status_code == 409 and "running" in problem(running)

    cancelled = submit(client)
    client.post(f"/v1/experiments/{cancelled}/cancel")
    never = client.get(f"/v1/experiments/{cancelled}/model")
    assert never.status_code == 409 and "cancelled before it trained" in problem(never)

    # Cancelled while running (it trained): a cancelled run keeps no model, and the 409 says
    # so rather than "cancelled before it trained".
    client.post(f"/v1/experiments/{exp_id}/cancel")
    with session_scope() as session:
        assert ExperimentRepository(session).finish(
            exp_id, 1, ExperimentStatus.CANCELLED, stop_reason="cancelled while running"
        )
    trained = client.get(f"/v1/experiments/{exp_id}/model")
    assert trained.status_code == 409
    assert problem(trained).endswith(
        "it was cancelled while running; a cancelled run keeps no model"
    )


def test_an_lr_range_test_keeps_no_model_and_the_409_says_so(client: TestClient) -> None:
    """Queued or ended, a range test never gets a model: not "written when it ends" nor "a
    succeeded run keeps no model" (both false for a training run)."""
    body = {"spec": IRIS, "min_lr": 1e-4, "max_lr": 1.0, "steps": 20}
    created = client.post("/v1/lr-range-tests", json=body)
    assert created.status_code == 201, created.text
    test_id = created.json()["id"]
    why = (
        f"experiment {test_id} is an LR range test, which keeps no model (it trains only to "
        f"measure the loss at each LR); its result is at GET /v1/lr-range-tests/{test_id}"
    )
    queued = client.get(f"/v1/experiments/{test_id}/model")
    assert (queued.status_code, problem(queued)) == (409, why)
    claim(test_id)
    with session_scope() as session:
        assert ExperimentRepository(session).finish(test_id, 1, ExperimentStatus.SUCCEEDED)
    ended = client.get(f"/v1/experiments/{test_id}/model")
    assert (ended.status_code, problem(ended)) == (409, why)
    assert ended.json()["detail"][0] == {"loc": ["path", "experiment_id"], "msg": why,
                                         "type": "no_model"}  # fmt: skip


def test_a_corrupt_stored_model_is_refused_never_sent(client: TestClient) -> None:
    exp_id = finished(client)
    key = artifacts.model_key(exp_id)
    good = client.get(f"/v1/experiments/{exp_id}/model").content
    bad = bytearray(good)
    bad[-1] ^= 0xFF
    if settings.artifact_url:  # S3 on the postgres backend
        artifacts.store().put_bytes(bytes(bad), key)
    else:
        path = settings.data_dir / "artifacts" / "models" / f"{exp_id}.safetensors"
        assert path.exists()
        path.write_bytes(bytes(bad))
    got = client.get(f"/v1/experiments/{exp_id}/model")
    assert got.status_code == 409, got.text
    assert "corrupt" in problem(got) and got.json()["detail"][0]["type"] == "corrupt_artifact"
    assert bytes(bad) not in got.content

    artifacts.store().delete(key)
    missing = client.get(f"/v1/experiments/{exp_id}/model")
    assert missing.status_code == 409 and "missing" in problem(missing)
    assert missing.json()["detail"][0]["type"] == "artifact_missing"


def test_an_unreachable_store_is_a_503_with_retry_after(
    client: TestClient, monkeypatch: pytest.MonkeyPatch
) -> None:
    exp_id = finished(client)
    monkeypatch.setattr(artifacts, "store", DownStore)
    got = client.get(f"/v1/experiments/{exp_id}/model")
    assert got.status_code == 503 and got.headers["retry-after"]
    assert "unavailable" in problem(got)
    deleted = client.delete(f"/v1/experiments/{exp_id}")
    assert deleted.status_code == 503 and deleted.headers["retry-after"]
    monkeypatch.undo()
    # Nothing was deleted: the run and its model are all there.
    assert client.get(f"/v1/experiments/{exp_id}").status_code == 200
    assert client.get(f"/v1/experiments/{exp_id}/model").status_code == 200


def test_delete_refuses_live_runs_and_removes_an_ended_one_everywhere(
    client: TestClient,
) -> None:
    queued = submit(client)
    refused = client.delete(f"/v1/experiments/{queued}")
    assert refused.status_code == 409 and "cancel it first" in problem(refused)
    claim(queued)
    assert client.delete(f"/v1/experiments/{queued}").status_code == 409
    assert client.get(f"/v1/experiments/{queued}").json()["status"] == "running"

    exp_id = finished(client, {**IRIS, "checkpoint_every": 1})
    key = artifacts.model_key(exp_id)
    assert artifacts.store().exists(key)
    if not settings.artifact_url:
        assert (settings.data_dir / "artifacts" / "models" / f"{exp_id}.safetensors").exists()
    # A kept checkpoint (as with KEEP_CHECKPOINTS) goes too.
    ckpt = artifacts.checkpoint_key(exp_id, 1)
    sha = artifacts.store().put_bytes(b"checkpoint", ckpt)
    with session_scope() as session:
        artifacts.record(session, "checkpoint", ckpt, sha, 10, exp_id, 1, 1)

    deleted = client.delete(f"/v1/experiments/{exp_id}")
    assert deleted.status_code == 204, deleted.text
    assert not artifacts.store().exists(key) and not artifacts.store().exists(ckpt)
    if not settings.artifact_url:
        assert not (settings.data_dir / "artifacts" / "models" / f"{exp_id}.safetensors").exists()
    assert client.get(f"/v1/experiments/{exp_id}").status_code == 404
    assert client.get(f"/v1/experiments/{exp_id}/model").status_code == 404
    assert client.get(f"/v1/experiments/{exp_id}/metrics").status_code == 404
    with session_scope() as session:
        for table in (EpochRow, Attempt, ExperimentTag, Artifact):
            n = session.scalar(select(func.count()).select_from(table)
                               .where(table.experiment_id == exp_id))  # fmt: skip
            assert n == 0, table.__tablename__
    again = client.delete(f"/v1/experiments/{exp_id}")
    assert again.status_code == 404 and "not found" in problem(again)
    assert client.delete("/v1/experiments/999999").status_code == 404


def test_a_deleted_runs_id_is_never_given_to_a_new_run(client: TestClient) -> None:
    """On SQLite too: the newest run deleted, the next one gets a new id, and a script or
    dashboard that polled the deleted run's metrics sees no rows of it under the new run."""
    old = finished(client)
    assert len(client.get(f"/v1/experiments/{old}/metrics").json()["epochs"]) == 3
    assert client.delete(f"/v1/experiments/{old}").status_code == 204
    new = submit(client)
    assert new > old
    page = client.get(f"/v1/experiments/{new}/metrics")
    assert page.status_code == 200 and page.json()["epochs"] == []
    assert client.get(f"/v1/experiments/{old}/metrics").status_code == 404


def test_a_run_of_a_sweep_may_be_deleted_and_its_sweep_no_longer_lists_it(
    client: TestClient,
) -> None:
    base = {**IRIS, "epochs": 1}
    made = client.post("/v1/sweeps", json={"base": base, "strategy": "grid",
                                           "parameters": {"base_lr": [0.01, 0.05]}})  # fmt: skip
    assert made.status_code == 201, made.text
    first, second = made.json()["ids"]
    for i in (first, second):
        run_experiment(i, owner="test-host:1")
    assert client.delete(f"/v1/experiments/{first}").status_code == 204
    sweep = client.get(f"/v1/sweeps/{made.json()['sweep_id']}")
    assert sweep.status_code == 200
    listed = {e["experiment_id"] for e in sweep.json()["experiments"]}
    ranked = {e["experiment_id"] for e in sweep.json()["leaderboard"]}
    assert first not in listed | ranked and second in listed


def test_attempts_show_who_ran_it_and_how_it_ended(client: TestClient) -> None:
    exp_id = finished(client)
    attempts = client.get(f"/v1/experiments/{exp_id}").json()["attempts"]
    assert len(attempts) == 1
    a = attempts[0]
    assert (a["attempt"], a["worker"], a["outcome"], a["resumed_from_epoch"]) == (
        1, "test-host:1", "succeeded", 0,
    )  # fmt: skip
    assert a["started_at"].endswith(("Z", "+00:00")) and a["ended_at"].endswith(("Z", "+00:00"))
    assert a["started_at"] <= a["ended_at"]
    assert client.get(f"/v1/experiments/{submit(client)}").json()["attempts"] == []


def test_a_runs_detail_reads_attempts_once_claimed_and_the_model_once_ended(
    client: TestClient, statements: list[str]
) -> None:
    """What a poll of a live run reads after each of its writes: no model before the run has
    ended (its row is written with the final status), no attempts before it was claimed."""
    queued, running, ended = submit(client), submit(client), finished(client)
    claim(running)
    seen: dict[int, tuple[dict[str, Any], list[str]]] = {}
    for exp_id in (queued, running, ended):
        statements.clear()
        got = client.get(f"/v1/experiments/{exp_id}")
        assert got.status_code == 200, got.text
        seen[exp_id] = got.json(), [s.lower() for s in statements]

    def reads(exp_id: int, table: str) -> bool:
        return any(f"from {table}" in s for s in seen[exp_id][1])

    body, _ = seen[queued]
    assert (body["status"], body["attempts"], body["model"]) == ("queued", [], None)
    assert not reads(queued, "attempts") and not reads(queued, "artifacts")
    body, _ = seen[running]
    assert body["status"] == "running" and body["model"] is None
    assert [(a["attempt"], a["outcome"]) for a in body["attempts"]] == [(1, None)]
    assert reads(running, "attempts") and not reads(running, "artifacts")
    body, _ = seen[ended]
    assert [a["outcome"] for a in body["attempts"]] == ["succeeded"] and body["model"]["sha256"]
    assert reads(ended, "attempts") and reads(ended, "artifacts")


def test_the_list_carries_attempts_and_models_in_one_query_per_table(
    client: TestClient, statements: list[str]
) -> None:
    ids = [finished(client, {**IRIS, "epochs": 1}) for _ in range(2)]
    statements.clear()
    one = client.get("/v1/experiments", params={"tag": "suite:download", "limit": 1})
    few = len(statements)
    ids += [submit(client) for _ in range(3)]
    statements.clear()
    page = client.get("/v1/experiments", params={"tag": "suite:download", "limit": 10})
    assert one.status_code == page.status_code == 200
    assert len(statements) == few  # the same queries for 1 run and for 5: no N+1
    items = {e["id"]: e for e in page.json()["items"]}
    assert set(items) == set(ids)
    assert [a["outcome"] for a in items[ids[0]]["attempts"]] == ["succeeded"]
    assert items[ids[0]]["model"]["sha256"] and items[ids[-1]]["model"] is None

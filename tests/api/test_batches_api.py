"""POST /v1/batches: all valid or none, errors naming the index; idempotent; readable status."""

from __future__ import annotations

from typing import Any

from fastapi.testclient import TestClient

from tests.support.fake_worker import Worker

SPEC: dict[str, Any] = {
    "dataset": "digits",
    "model": {"type": "mlp", "hidden": [16]},
    "solver": {"type": "SGD"},
    "base_lr": 0.1,
    "epochs": 2,
    "tags": {"team": "lr"},
}


def specs(n: int) -> list[dict[str, Any]]:
    return [{**SPEC, "name": f"b{i}", "base_lr": 0.01 * (i + 1)} for i in range(n)]


def count(client: TestClient, **params: str) -> int:
    return len(client.get("/v1/experiments", params={"limit": 500, **params}).json()["items"])


def test_batch_creates_every_experiment_with_its_batch_id(client: TestClient) -> None:
    r = client.post("/v1/batches", json={"name": "five", "experiments": specs(5)})
    assert r.status_code == 201, r.text
    body = r.json()
    assert len(body["ids"]) == 5 and len(set(body["ids"])) == 5
    listed = client.get("/v1/experiments", params={"batch_id": body["batch_id"]}).json()["items"]
    assert sorted(e["id"] for e in listed) == sorted(body["ids"])
    assert {e["spec"]["base_lr"] for e in listed} == {0.01, 0.02, 0.03, 0.04, 0.05}
    assert all(e["tags"] == {"team": "lr"} and e["status"] == "queued" for e in listed)
    got = client.get(f"/v1/batches/{body['batch_id']}").json()
    assert got["size"] == 5 and got["ids"] == body["ids"] and got["name"] == "five"
    assert got["counts"] == {"queued": 5} and got["status"] == "running"


def test_one_invalid_spec_rejects_the_whole_batch_and_names_index_and_field(
    client: TestClient,
) -> None:
    bad = specs(4)
    bad[2]["solver"] = {"type": "SGD", "params": {"momentom": 0.9}}  # semantic: torch kwargs
    bad[3]["base_lr"] = -1  # shape: Pydantic
    before = count(client)
    r = client.post("/v1/batches", json={"experiments": bad})
    assert r.status_code == 422
    # The shape's error (Pydantic) and torch's in the same answer.
    assert [e["loc"] for e in r.json()["detail"]] == [
        ["body", "experiments", 3, "base_lr"],
        ["body", "experiments", 2, "solver", "params", "momentom"],
    ]
    bad[3]["base_lr"] = 0.1
    r = client.post("/v1/batches", json={"experiments": bad})
    assert r.status_code == 422
    loc = ["body", "experiments", 2, "solver", "params", "momentom"]
    assert [e["loc"] for e in r.json()["detail"]] == [loc]
    assert count(client) == before  # nothing half-written


def test_every_invalid_spec_is_reported(client: TestClient) -> None:
    bad = specs(3)
    bad[0]["dataset"] = "nope"
    bad[2]["scheduler"] = {"type": "StepLR"}  # step_size missing
    detail = client.post("/v1/batches", json={"experiments": bad}).json()["detail"]
    locs = [e["loc"] for e in detail]
    assert ["body", "experiments", 0, "dataset"] in locs
    assert ["body", "experiments", 2, "scheduler", "params", "step_size"] in locs


def test_one_422_lists_every_spec_s_mistakes_schema_and_beyond(client: TestClient) -> None:
    bad = [
        {"name": "x", "dataset": "iris", "base_lr": -1, "epochs": 1},  # schema
        {"name": "y", "dataset": "iris", "base_lr": 0.1, "epochs": 1,
         "solver": {"type": "SGD", "params": {"momentum": -1}}},  # torch refuses it
        {"name": "z", "dataset": "nope", "base_lr": 0.1, "epochs": 1},  # no such dataset
    ]  # fmt: skip
    r = client.post("/v1/batches", json={"experiments": bad})
    assert r.status_code == 422
    detail = r.json()["detail"]
    assert [e["loc"] for e in detail] == [
        ["body", "experiments", 0, "base_lr"],
        ["body", "experiments", 1, "solver", "params", "momentum"],
        ["body", "experiments", 2, "dataset"],
    ]
    assert "momentum" in detail[1]["msg"] and "nope" in detail[2]["msg"]
    assert count(client) == 0


def test_a_tag_key_with_a_colon_is_refused_with_its_spec_s_index(client: TestClient) -> None:
    bad = [SPEC, {**SPEC, "tags": {"a:b": "c"}}]
    r = client.post("/v1/batches", json={"experiments": bad})
    assert r.status_code == 422
    [error] = r.json()["detail"]
    assert error["loc"] == ["body", "experiments", 1, "tags", "a:b"]
    assert error["msg"].startswith("tag key 'a:b' contains ':'")
    assert count(client) == 0


def test_a_batch_with_many_mistakes_lists_the_first_fifty(client: TestClient) -> None:
    bad = [{**s, "dataset": "nope"} for s in specs(80)]
    detail = client.post("/v1/batches", json={"experiments": bad}).json()["detail"]
    assert [e["loc"] for e in detail] == [["body", "experiments", i, "dataset"] for i in range(50)]
    bad[70]["base_lr"] = -1  # the schema's error first, then the first 49 beyond it
    detail = client.post("/v1/batches", json={"experiments": bad}).json()["detail"]
    assert [e["loc"] for e in detail] == [
        ["body", "experiments", 70, "base_lr"],
        *(["body", "experiments", i, "dataset"] for i in range(49)),
    ]


def test_a_batch_with_many_schema_mistakes_lists_the_first_fifty_too(client: TestClient) -> None:
    bad = [{**s, "epochs": 0} for s in specs(80)]  # the schema's own errors, one a spec
    detail = client.post("/v1/batches", json={"experiments": bad}).json()["detail"]
    assert [e["loc"] for e in detail] == [["body", "experiments", i, "epochs"] for i in range(50)]


def test_a_refused_list_is_not_read_spec_by_spec(client: TestClient) -> None:
    r = client.post("/v1/batches", json={"experiments": {"0": SPEC}})
    assert [e["loc"] for e in r.json()["detail"]] == [["body", "experiments"]]
    r = client.post("/v1/batches", json={"experiments": [{**SPEC, "dataset": "nope"}, 5]})
    assert [e["loc"] for e in r.json()["detail"]] == [
        ["body", "experiments", 1],
        ["body", "experiments", 0, "dataset"],
    ]


def test_empty_and_malformed_batches_are_422(client: TestClient) -> None:
    assert client.post("/v1/batches", json={"experiments": []}).status_code == 422
    assert client.post("/v1/batches", json=[SPEC]).status_code == 422
    r = client.post("/v1/batches", json={"experiments": [SPEC], "extra": 1})
    assert r.status_code == 422 and r.json()["detail"][0]["loc"] == ["body", "extra"]


def test_idempotency_key_replays_the_first_batch(client: TestClient) -> None:
    headers = {"Idempotency-Key": "batch-1"}
    first = client.post("/v1/batches", json={"experiments": specs(3)}, headers=headers)
    again = client.post("/v1/batches", json={"experiments": specs(3)}, headers=headers)
    assert again.status_code == 201 and again.headers["Idempotent-Replayed"] == "true"
    assert again.json() == first.json()
    assert count(client, batch_id=first.json()["batch_id"]) == 3
    other = client.post("/v1/batches", json={"experiments": specs(2)}, headers=headers)
    assert other.status_code == 409


def test_unknown_batch_is_404(client: TestClient) -> None:
    r = client.get("/v1/batches/nope")
    assert r.status_code == 404 and r.json()["detail"][0]["loc"] == ["path", "batch_id"]


def test_a_batch_whose_remaining_runs_have_ended_is_finished_after_deletes(
    client: TestClient,
) -> None:
    created = client.post("/v1/batches", json={"experiments": specs(3)}).json()
    batch, ids = created["batch_id"], created["ids"]
    for i, status in zip(ids, ("succeeded", "failed"), strict=False):
        w = Worker(i)
        w.claim()
        w.finish(status)
    assert client.delete(f"/v1/experiments/{ids[0]}").status_code == 204
    got = client.get(f"/v1/batches/{batch}").json()
    # `size` stays what was submitted; the rest is about the runs that remain.
    assert got["size"] == 3 and got["ids"] == ids[1:]
    assert got["counts"] == {"failed": 1, "queued": 1} and got["status"] == "running"
    w = Worker(ids[2])
    w.claim()
    w.finish()
    assert client.delete(f"/v1/experiments/{ids[1]}").status_code == 204
    got = client.get(f"/v1/batches/{batch}").json()
    assert got["ids"] == [ids[2]] and got["counts"] == {"succeeded": 1}
    assert got["status"] == "finished"
    assert client.delete(f"/v1/experiments/{ids[2]}").status_code == 204
    got = client.get(f"/v1/batches/{batch}").json()  # every run deleted: nothing left to wait for
    assert got["size"] == 3 and got["ids"] == [] and got["counts"] == {}
    assert got["status"] == "finished"

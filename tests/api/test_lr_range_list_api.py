"""`GET /v1/lr-range-tests`: the list of range tests as a client (and the dashboard's
`/range-tests` page) reads it, on SQLite and on PostgreSQL. One test is run to its end in-process
by the worker's own code, so its suggestion is a real one."""

from __future__ import annotations

from typing import Any

from fastapi.testclient import TestClient

from worker.runs.lifecycle import run_experiment

SPEC: dict[str, Any] = {
    "name": "iris-range",
    "dataset": "iris",
    "model": {"type": "mlp", "hidden": [8]},
    "solver": {"type": "SGD", "params": {"momentum": 0.9}},
    "batch_size": 16,
    "device": "cpu",
}
BODY: dict[str, Any] = {"spec": SPEC, "min_lr": 1e-4, "max_lr": 10.0, "steps": 30}


def create(client: TestClient, **patch: Any) -> int:
    r = client.post("/v1/lr-range-tests", json={**BODY, **patch})
    assert r.status_code == 201, r.text
    return int(r.json()["id"])


def listed(client: TestClient, **params: Any) -> Any:
    r = client.get("/v1/lr-range-tests", params=params)
    assert r.status_code == 200, r.text
    return r.json()


def test_lists_range_tests_newest_first_with_their_suggestion(client: TestClient) -> None:
    finished = create(client)
    assert run_experiment(finished).status == "succeeded"
    queued = create(client, spec={**SPEC, "name": "queued", "dataset": "digits"}, steps=50)
    client.post("/v1/experiments", json={**SPEC, "base_lr": 0.1, "epochs": 1})  # not a range test

    page = listed(client)
    assert [t["id"] for t in page["items"]] == [queued, finished] and page["next_cursor"] is None
    done = page["items"][1]
    one = client.get(f"/v1/lr-range-tests/{finished}").json()
    # The row says what the test itself says: its suggestion, rule and why it stopped.
    assert done["suggested_lr"] == one["suggested_lr"] and done["rule"] == one["rule"]
    assert done["stopped"] == one["stopped"] and done["steps_run"] == one["steps_run"] > 0
    assert done["rule"] and 1e-4 <= done["suggested_lr"] <= 10.0
    assert done["status"] == "succeeded" and done["finished_at"] is not None
    assert (done["name"], done["dataset"], done["model"]) == ("iris-range", "iris", "mlp")
    assert (done["min_lr"], done["max_lr"], done["steps"]) == (1e-4, 10.0, 30)
    assert done["created_by"] is None and done["created_at"].endswith(("Z", "+00:00"))
    assert set(done) == {
        "id", "name", "status", "dataset", "model", "min_lr", "max_lr", "steps", "steps_run",
        "suggested_lr", "rule", "stopped", "created_by", "created_at", "finished_at",
    }  # fmt: skip
    waiting = page["items"][0]
    assert (waiting["status"], waiting["steps_run"], waiting["steps"]) == ("queued", 0, 50)
    assert waiting["suggested_lr"] is None and waiting["rule"] is None
    assert waiting["finished_at"] is None and waiting["dataset"] == "digits"


def test_pages_by_cursor_and_filters_by_status(client: TestClient) -> None:
    ids = [create(client) for _ in range(5)]
    client.post(f"/v1/lr-range-tests/{ids[1]}/cancel")
    client.post(f"/v1/lr-range-tests/{ids[3]}/cancel")

    seen: list[int] = []
    cursor = None
    while True:
        page = listed(client, limit=2, **({"cursor": cursor} if cursor else {}))
        assert len(page["items"]) <= 2
        seen += [t["id"] for t in page["items"]]
        cursor = page["next_cursor"]
        if cursor is None:
            break
    assert seen == ids[::-1]  # every test once, newest first, across pages

    cancelled = listed(client, status="cancelled")["items"]
    assert [t["id"] for t in cancelled] == [ids[3], ids[1]]
    assert all(t["stopped"] == "cancelled before it started" for t in cancelled)
    both = listed(client, status=["queued", "cancelled"])["items"]
    assert [t["id"] for t in both] == ids[::-1]
    assert listed(client, status="running")["items"] == []


def test_bad_query_is_422_naming_the_parameter(client: TestClient) -> None:
    bad: list[tuple[dict[str, Any], list[Any]]] = [
        ({"status": "finished"}, ["query", "status", 0]),
        ({"status": ["queued", "nope"]}, ["query", "status", 1]),
        ({"status": "pruned"}, ["query", "status", 0]),  # a run's status no range test takes
        ({"limit": 0}, ["query", "limit"]),
        ({"limit": 501}, ["query", "limit"]),
        ({"limit": "ten"}, ["query", "limit"]),
        ({"limit": 2**63}, ["query", "limit"]),
        ({"cursor": "not-a-cursor"}, ["query", "cursor"]),
        ({"cursor": "eyJiZWZvcmUiOiAteH0="}, ["query", "cursor"]),  # base64 of bad JSON
        ({"cursor": "eyJiZWZvcmUiOiA5OTk5OTk5OTk5OTk5OTk5OTk5fQ=="}, ["query", "cursor"]),  # huge
        ({"cursor": "x" * 201}, ["query", "cursor"]),
    ]
    for params, loc in bad:
        r = client.get("/v1/lr-range-tests", params=params)
        assert r.status_code == 422, (params, r.text)
        detail = r.json()["detail"]
        assert all(set(d) >= {"loc", "msg", "type"} for d in detail)
        assert loc in [d["loc"] for d in detail], (params, detail)

    openapi = client.get("/openapi.json").json()
    get = openapi["paths"]["/v1/lr-range-tests"]["get"]
    status_param = next(p for p in get["parameters"] if p["name"] == "status")
    # The schema names the statuses it accepts, so a client (or a fuzzer) knows them.
    items = status_param["schema"]["anyOf"][0]["items"]["$ref"].rsplit("/", 1)[-1]
    assert "succeeded" in openapi["components"]["schemas"][items]["enum"]
    assert "waiting" not in openapi["components"]["schemas"][items]["enum"]
    nope = client.get("/v1/lr-range-tests", params={"status": "nope"}).json()["detail"][0]
    assert "'succeeded', 'failed' or 'cancelled'" in nope["msg"], nope  # only what it can be
    assert "422" in get["responses"]

"""`/v1/lr-range-tests` as a client sees it, on SQLite and on PostgreSQL (no worker needed)."""

from __future__ import annotations

from typing import Any

from fastapi.testclient import TestClient

from tests.support.outbox import marked_sent, messages_of
from tests.support.stack import wait_for

SPEC: dict[str, Any] = {
    "dataset": "digits",
    "model": {"type": "mlp", "hidden": [32]},
    "solver": {"type": "SGD", "params": {"momentum": 0.9}},
    "batch_size": 64,
}
BODY: dict[str, Any] = {"spec": SPEC, "min_lr": 1e-5, "max_lr": 10.0, "steps": 100}


def post(client: TestClient, body: dict[str, Any]) -> Any:
    return client.post("/v1/lr-range-tests", json=body)


def test_create_queues_a_range_test_and_reads_it_back(client: TestClient) -> None:
    from service.experiments.models import Experiment
    from service.kit.db import session_scope

    r = post(client, BODY)
    assert r.status_code == 201, r.text
    body = r.json()
    assert body["status"] == "queued" and isinstance(body["id"], int)
    assert (body["min_lr"], body["max_lr"], body["steps"]) == (1e-5, 10.0, 100)
    assert (body["smoothing"], body["diverge_factor"]) == (0.98, 4.0)  # the defaults
    assert body["points"] == [] and body["steps_run"] == 0 and body["next_from_step"] == 0
    assert body["suggested_lr"] is None and body["rule"] is None and body["stopped"] is None
    assert body["spec"]["solver"] == SPEC["solver"] and body["spec"]["epochs"] == 20

    got = client.get(f"/v1/lr-range-tests/{body['id']}")
    assert got.status_code == 200 and got.json() == body
    with session_scope() as s:
        row = s.get(Experiment, body["id"])
        assert row is not None and row.kind == "lr_range_test" and row.queue == "auto"
        assert row.range_test == {"min_lr": 1e-5, "max_lr": 10.0, "steps": 100,
                                  "smoothing": 0.98, "diverge_factor": 4.0}  # fmt: skip

    wait_for(lambda: marked_sent(body["id"]), 5)  # sent after the commit, marked just after
    assert len(messages_of(body["id"])) == 1
    # A range test is not a training run: the experiments list leaves it out.
    assert client.get("/v1/experiments").json()["items"] == []

    body = {**BODY, "smoothing": 0.9, "diverge_factor": 2.5, "spec": {**SPEC, "device": "cpu"}}
    r = post(client, body)
    assert r.status_code == 201, r.text
    assert (r.json()["smoothing"], r.json()["diverge_factor"]) == (0.9, 2.5)
    # The spec's training-only fields are accepted (a training spec pastes in) and ignored.
    spec = {**SPEC, "scheduler": {"type": "StepLR", "params": {"step_size": 3}},
            "warmup": {"epochs": 2}, "early_stopping": {"patience": 3}, "epochs": 5}  # fmt: skip
    assert post(client, {**BODY, "spec": spec}).status_code == 201


# (patch to BODY, the field path, the error type or None): one client for all of them, since each
# client migrates a fresh database.
BAD: list[tuple[dict[str, Any], list[Any], str | None]] = [
    ({"max_lr": 1e-5}, ["body", "max_lr"], "max_lr_not_above_min_lr"),
    ({"min_lr": 1.0, "max_lr": 0.5}, ["body", "max_lr"], "max_lr_not_above_min_lr"),
    ({"min_lr": 0}, ["body", "min_lr"], "greater_than"),
    ({"min_lr": -1e-3}, ["body", "min_lr"], "greater_than"),
    ({"max_lr": 0}, ["body", "max_lr"], "greater_than"),
    ({"steps": 9}, ["body", "steps"], "greater_than_equal"),
    ({"steps": 10_001}, ["body", "steps"], "less_than_equal"),
    ({"steps": 12.5}, ["body", "steps"], "int_from_float"),
    ({"smoothing": 1.0}, ["body", "smoothing"], "less_than"),
    ({"smoothing": -0.1}, ["body", "smoothing"], "greater_than_equal"),
    ({"diverge_factor": 1.0}, ["body", "diverge_factor"], "greater_than"),
    ({"min_lr": "x"}, ["body", "min_lr"], "float_type"),
    ({"spec": None}, ["body", "spec"], "model_attributes_type"),
    ({"lr": 0.1}, ["body", "lr"], "extra_forbidden"),
    ({"spec": {**SPEC, "lr": 0.1}}, ["body", "spec", "lr"], "extra_forbidden"),
    ({"spec": {**SPEC, "batch_size": 0}}, ["body", "spec", "batch_size"], "greater_than_equal"),
    ({"spec": {**SPEC, "dataset": "mnist"}}, ["body", "spec", "dataset"], "unknown_dataset"),
    (
        {"spec": {**SPEC, "solver": {"type": "Adamm"}}},
        ["body", "spec", "solver", "type"],
        "unknown_solver",
    ),
    (
        {"spec": {**SPEC, "solver": {"type": "SGD", "params": {"momentun": 0.9}}}},
        ["body", "spec", "solver", "params", "momentun"],
        "unknown_param",
    ),
    (
        {"spec": {**SPEC, "solver": {"type": "SGD", "params": {"momentum": -1}}}},
        ["body", "spec", "solver", "params", "momentum"],
        "invalid_params",
    ),
    (
        {"spec": {**SPEC, "dataset": "iris", "model": {"type": "cnn"}}},
        ["body", "spec", "model", "type"],
        None,
    ),
]


def test_bad_input_is_422_naming_the_field(client: TestClient) -> None:
    for patch, loc, type_ in BAD:
        r = post(client, {**BODY, **patch})
        assert r.status_code == 422, (patch, r.text)
        detail = r.json()["detail"]
        assert all(set(d) == {"loc", "msg", "type"} for d in detail)
        found = [{"loc": d["loc"], "type": d["type"]} for d in detail]
        assert loc in [d["loc"] for d in found], (patch, detail)
        assert type_ is None or {"loc": loc, "type": type_} in found, (patch, detail)
    assert post(client, BODY).json()["id"] == 1  # nothing was half-written before it


def test_malformed_or_non_finite_bodies_are_422(client: TestClient) -> None:
    for raw in (b"{", b"[]", b"null", b"", b'{"min_lr": Infinity}', b'{"max_lr": NaN}'):
        r = client.post(
            "/v1/lr-range-tests", content=raw, headers={"content-type": "application/json"}
        )
        assert r.status_code == 422, (raw, r.text)
        assert isinstance(r.json()["detail"], list)
    field = {tuple(d["loc"]): d["type"] for d in r.json()["detail"]}
    assert field[("body", "max_lr")] == "finite_number"  # NaN is named, not a 500
    r = client.post("/v1/lr-range-tests", json={})
    missing = {tuple(d["loc"]) for d in r.json()["detail"] if d["type"] == "missing"}
    assert missing == {("body", "spec"), ("body", "min_lr"), ("body", "max_lr"), ("body", "steps")}


def test_unknown_ids_and_training_runs_are_404(client: TestClient) -> None:
    r = client.get("/v1/lr-range-tests/999")
    assert r.status_code == 404
    assert r.json()["detail"][0]["loc"] == ["path", "test_id"]
    train = client.post("/v1/experiments", json=SPEC).json()["id"]
    assert client.get(f"/v1/lr-range-tests/{train}").status_code == 404
    assert client.post(f"/v1/lr-range-tests/{train}/cancel").status_code == 404
    assert client.get("/v1/lr-range-tests/abc").status_code == 422
    bad = client.get(f"/v1/lr-range-tests/{train}", params={"from_step": -1})
    assert bad.status_code == 422 and bad.json()["detail"][0]["loc"] == ["query", "from_step"]
    paths = client.get("/openapi.json").json()["paths"]  # documented, 404 included
    assert "post" in paths["/v1/lr-range-tests"]
    assert "404" in paths["/v1/lr-range-tests/{test_id}"]["get"]["responses"]


def test_points_page_by_from_step(client: TestClient) -> None:
    from service.kit.db import session_scope
    from service.lr_range.repository import RangeRepository

    test_id = post(client, BODY).json()["id"]
    rows = [{"experiment_id": test_id, "step": i, "lr": 1e-5 * 2**i, "loss": 2.3 - i / 10,
             "smoothed_loss": None if i == 4 else 2.3} for i in range(5)]  # fmt: skip
    with session_scope() as s:
        RangeRepository(s).write(rows)
    body = client.get(f"/v1/lr-range-tests/{test_id}").json()
    assert [p["step"] for p in body["points"]] == [0, 1, 2, 3, 4]
    assert body["points"][4] == {"step": 4, "lr": 1e-5 * 16, "loss": 1.9, "smoothed_loss": None}
    assert body["steps_run"] == 5 and body["next_from_step"] == 5
    page = client.get(f"/v1/lr-range-tests/{test_id}", params={"from_step": 3}).json()
    assert [p["step"] for p in page["points"]] == [3, 4] and page["steps_run"] == 5
    empty = client.get(f"/v1/lr-range-tests/{test_id}", params={"from_step": 5}).json()
    assert empty["points"] == [] and empty["next_from_step"] == 5


def test_cancel_a_queued_range_test(client: TestClient) -> None:
    test_id = post(client, BODY).json()["id"]
    r = client.post(f"/v1/lr-range-tests/{test_id}/cancel")
    assert r.status_code == 200
    assert r.json()["status"] == "cancelled" and r.json()["cancel_requested"] is True
    assert r.json()["stopped"] == "cancelled before it started"
    assert client.get(f"/v1/lr-range-tests/{test_id}").json()["status"] == "cancelled"

"""The experiments API as a client sees it, on SQLite and on PostgreSQL (no worker needed)."""

from __future__ import annotations

import json
from typing import Any

import pytest
from fastapi.testclient import TestClient
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from service.training.spec import ExperimentSpec
from tests.support.outbox import marked_sent, messages_of
from tests.support.stack import wait_for

SPEC: dict[str, Any] = {
    "name": "digits-sgd",
    "dataset": "digits",
    "split": {"train": 0.8, "val": 0.2, "seed": 0, "stratify": True},
    "model": {"type": "mlp", "hidden": [32]},
    "solver": {"type": "SGD", "params": {"momentum": 0.9}},
    "base_lr": 0.1,
    "epochs": 3,
    "tags": {"sweep": "lr-coarse"},
}


def post(client: TestClient, spec: dict[str, Any], **headers: str) -> Any:
    return client.post("/v1/experiments", json=spec, headers=headers)


def test_create_then_read_at_once(client: TestClient) -> None:
    r = post(client, SPEC)
    assert r.status_code == 201, r.text
    body = r.json()
    assert body["status"] == "queued"
    assert body["split_sizes"] == {"train": 1438, "val": 359, "test": 0}
    assert body["steps_per_epoch"] == 23  # ceil(1438 / 64)
    assert body["tags"] == {"sweep": "lr-coarse"}
    got = client.get(f"/v1/experiments/{body['id']}")
    assert got.status_code == 200
    assert got.json()["spec"]["solver"] == {"type": "SGD", "params": {"momentum": 0.9}}
    # The POST answers from what it inserted, without reading the run back: the same answer.
    assert body == got.json()


def test_task_is_recorded_in_outbox_and_sent_after_commit(client: TestClient) -> None:
    exp_id = post(client, SPEC).json()["id"]
    # Sent before the response; marked sent by the API's background thread just after it.
    wait_for(lambda: marked_sent(exp_id), 5)
    rows = messages_of(exp_id)
    assert len(rows) == 1 and rows[0].queue == "auto"


@pytest.mark.parametrize(
    ("patch", "loc", "type_"),
    [
        ({"lr": 0.1}, ["body", "lr"], "extra_forbidden"),
        ({"split": {"trian": 0.8}}, ["body", "split", "trian"], "extra_forbidden"),
        ({"base_lr": -1}, ["body", "base_lr"], "greater_than"),
        ({"epochs": 0}, ["body", "epochs"], "greater_than_equal"),
        ({"solver": {"type": "Adamm"}}, ["body", "solver", "type"], "unknown_solver"),
        (
            {"solver": {"type": "SGD", "params": {"momentun": 0.9}}},
            ["body", "solver", "params", "momentun"],
            "unknown_param",
        ),
        (
            {"solver": {"type": "SGD", "params": {"momentum": -1}}},
            ["body", "solver", "params", "momentum"],
            "invalid_params",
        ),
        ({"scheduler": {"type": "CosineLR"}}, ["body", "scheduler", "type"], "unknown_scheduler"),
        (
            {"scheduler": {"type": "StepLR", "params": {"step": 3}}},
            ["body", "scheduler", "params", "step"],
            "unknown_param",
        ),
        ({"dataset": "mnist"}, ["body", "dataset"], "unknown_dataset"),
        (
            {"dataset": {"type": "digits", "params": {"n": 3}}},
            ["body", "dataset", "params"],
            "unexpected_params",
        ),
    ],
)
def test_bad_spec_is_422_naming_the_field(
    client: TestClient, patch: dict[str, Any], loc: list[Any], type_: str
) -> None:
    r = post(client, {**SPEC, **patch})
    assert r.status_code == 422, r.text
    detail = r.json()["detail"]
    assert {"loc": loc, "type": type_} in [{"loc": d["loc"], "type": d["type"]} for d in detail]
    assert all(set(d) == {"loc", "msg", "type"} for d in detail)
    assert client.get("/v1/experiments").json()["items"] == []  # nothing half-written


@pytest.mark.parametrize(
    ("solver", "loc", "msg"),
    [
        (
            {"type": "SGD", "params": {"momentum": -1}},
            ["body", "solver", "params", "momentum"],
            "SGD rejects these params: Invalid momentum value: -1",
        ),
        (
            {"type": "Adam", "params": {"betas": [-1, 0.9], "eps": 1e-8}},
            ["body", "solver", "params", "betas"],
            "Adam rejects these params: Invalid beta parameter at index 0: -1",
        ),
        (  # torch names no one kwarg: the error stays at params
            {"type": "SGD", "params": {"nesterov": True}},
            ["body", "solver", "params"],
            "SGD rejects these params: Nesterov momentum requires a momentum and zero dampening",
        ),
    ],
)
def test_a_value_torch_refuses_is_at_the_kwarg_it_names(
    client: TestClient, solver: dict[str, Any], loc: list[Any], msg: str
) -> None:
    r = post(client, {**SPEC, "solver": solver})
    assert r.status_code == 422, r.text
    assert r.json()["detail"] == [{"loc": loc, "msg": msg, "type": "invalid_params"}]


def test_a_tag_key_with_a_colon_is_refused_at_submit_only(client: TestClient) -> None:
    r = post(client, {**SPEC, "tags": {"team": "a", "team:lr": "b"}})
    assert r.status_code == 422, r.text
    assert r.json()["detail"] == [{
        "loc": ["body", "tags", "team:lr"],
        "msg": "tag key 'team:lr' contains ':': the list filter tag=key:value splits at the "
        "first ':', so runs could never be filtered by this tag's value; use another character "
        "in the key",
        "type": "invalid_tag",
    }]  # fmt: skip
    # Beside a schema error, in the same 422.
    r = post(client, {**SPEC, "epochs": 0, "tags": {"a:b": "c"}})
    assert [e["loc"] for e in r.json()["detail"]] == [["body", "epochs"], ["body", "tags", "a:b"]]
    # Not the spec's schema: a spec stored or queued with such a key still reads back.
    assert ExperimentSpec.model_validate({**SPEC, "tags": {"a:b": "c"}}).tags == {"a:b": "c"}
    # A value may hold ':' (the filter splits at the first one, in the key).
    assert post(client, {**SPEC, "tags": {"url": "http://x"}}).status_code == 201
    found = client.get("/v1/experiments", params={"tag": "url:http://x"}).json()["items"]
    assert len(found) == 1


def test_unknown_names_list_what_is_allowed(client: TestClient) -> None:
    r = post(client, {**SPEC, "solver": {"type": "Adamm"}})
    assert "AdamW" in r.json()["detail"][0]["msg"]
    r = post(client, {**SPEC, "solver": {"type": "SGD", "params": {"momentun": 0.9}}})
    assert "momentum" in r.json()["detail"][0]["msg"]


@pytest.mark.parametrize("raw", [b"{", b"[]", b"null", b'"x"', b"", b'{"epochs": NaN}'])
def test_malformed_bodies_are_4xx(client: TestClient, raw: bytes) -> None:
    r = client.post("/v1/experiments", content=raw, headers={"content-type": "application/json"})
    assert r.status_code == 422, r.text
    assert isinstance(r.json()["detail"], list)


def test_idempotency_key_returns_same_experiment(client: TestClient) -> None:
    first = post(client, SPEC, **{"Idempotency-Key": "k-1"})
    again = post(client, SPEC, **{"Idempotency-Key": "k-1"})
    assert first.status_code == again.status_code == 201
    assert again.json()["id"] == first.json()["id"]
    assert again.headers["Idempotent-Replayed"] == "true"
    assert len(client.get("/v1/experiments").json()["items"]) == 1
    other = post(client, {**SPEC, "base_lr": 0.2}, **{"Idempotency-Key": "k-1"})
    assert other.status_code == 409
    assert other.json()["detail"][0]["loc"] == ["header", "Idempotency-Key"]


def test_list_filters_and_cursor_pagination(client: TestClient) -> None:
    ids = [post(client, {**SPEC, "tags": {"sweep": f"s{i % 2}"}}).json()["id"] for i in range(5)]
    seen: list[int] = []
    cursor = None
    while True:
        params: dict[str, Any] = {"limit": 2, **({"cursor": cursor} if cursor else {})}
        page = client.get("/v1/experiments", params=params).json()
        seen += [e["id"] for e in page["items"]]
        cursor = page["next_cursor"]
        if cursor is None:
            break
    assert seen == sorted(ids, reverse=True)
    tagged = client.get("/v1/experiments", params={"tag": "sweep:s1"}).json()["items"]
    assert [e["id"] for e in tagged] == [ids[3], ids[1]]
    assert len(client.get("/v1/experiments", params={"tag": "sweep"}).json()["items"]) == 5
    client.post(f"/v1/experiments/{ids[0]}/cancel")
    cancelled = client.get("/v1/experiments", params={"status": "cancelled"}).json()["items"]
    assert [e["id"] for e in cancelled] == [ids[0]]
    queued = client.get("/v1/experiments", params={"status": "queued,running"}).json()["items"]
    assert len(queued) == 4


@pytest.mark.parametrize(
    ("params", "loc"),
    [
        ({"cursor": "garbage"}, ["query", "cursor"]),
        ({"status": "done"}, ["query", "status"]),
        ({"limit": 0}, ["query", "limit"]),
    ],
)
def test_bad_list_queries_are_422(
    client: TestClient, params: dict[str, Any], loc: list[str]
) -> None:
    r = client.get("/v1/experiments", params=params)
    assert r.status_code == 422
    assert r.json()["detail"][0]["loc"] == loc


def test_missing_experiment_is_404_everywhere(client: TestClient) -> None:
    for r in (
        client.get("/v1/experiments/999"),
        client.get("/v1/experiments/999/metrics"),
        client.post("/v1/experiments/999/cancel"),
    ):
        assert r.status_code == 404
        assert r.json()["detail"][0]["loc"] == ["path", "experiment_id"]
    assert client.get("/v1/experiments/abc").status_code == 422


def test_cancel_queued_experiment(client: TestClient) -> None:
    exp_id = post(client, SPEC).json()["id"]
    r = client.post(f"/v1/experiments/{exp_id}/cancel")
    assert r.status_code == 200
    assert r.json()["status"] == "cancelled"
    assert client.post(f"/v1/experiments/{exp_id}/cancel").json()["status"] == "cancelled"
    metrics = client.get(f"/v1/experiments/{exp_id}/metrics").json()
    assert metrics == {
        "experiment_id": exp_id,
        "status": "cancelled",
        "epochs": [],
        "next_after_epoch": 0,
    }


def test_health_and_openapi(client: TestClient) -> None:
    assert client.get("/healthz").json() == {"status": "ok"}
    ready = client.get("/readyz")
    assert ready.status_code == 200 and ready.json()["checks"]["database"]["ok"]
    paths = client.get("/openapi.json").json()["paths"]
    assert {"/v1/experiments", "/v1/experiments/{experiment_id}/metrics"} <= set(paths)


json_values = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats(allow_nan=False) | st.text(max_size=8),
    lambda inner: (
        st.lists(inner, max_size=3) | st.dictionaries(st.text(max_size=8), inner, max_size=3)
    ),
    max_leaves=12,
)
spec_keys = st.sampled_from([*sorted(SPEC), "scheduler", "warmup", "early_stopping", "device"])


@settings(
    max_examples=60, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)
@given(patch=st.dictionaries(spec_keys, json_values, max_size=3))
def test_no_input_yields_a_500(client: TestClient, patch: dict[str, Any]) -> None:
    r = client.post(
        "/v1/experiments",
        content=json.dumps({**SPEC, **patch}),
        headers={"content-type": "application/json"},
    )
    assert r.status_code in (201, 422), r.text


@pytest.mark.parametrize("betas", [{}, [], [0.9], "x", None])
def test_malformed_solver_values_are_422_not_500(client: TestClient, betas: Any) -> None:
    # torch raises KeyError/IndexError/TypeError on these: each is the client's input error.
    r = post(client, {**SPEC, "solver": {"type": "Adam", "params": {"betas": betas}}})
    assert r.status_code == 422, r.text
    assert r.json()["detail"][0]["loc"] == ["body", "solver", "params"]


@pytest.mark.parametrize("backend", ["embedded"], indirect=True)  # SQLite's json_remove
def test_a_stored_spec_without_epochs_shows_the_default_epochs(client: TestClient) -> None:
    """A spec stored without `epochs` (every spec stored now names them) trains
    DEFAULT_EPOCHS; its progress says so, as the worker and the pruner read it, not 0."""
    from sqlalchemy import text

    from service.kit.db import session_scope
    from service.training.spec import DEFAULT_EPOCHS

    run_id = post(client, SPEC).json()["id"]
    with session_scope() as session:
        session.execute(text("UPDATE experiments SET spec = json_remove(spec, '$.epochs') "
                             "WHERE id = :i"), {"i": run_id})  # fmt: skip
    got = client.get(f"/v1/experiments/{run_id}").json()
    assert "epochs" not in got["spec"]
    assert got["progress"]["epochs"] == DEFAULT_EPOCHS

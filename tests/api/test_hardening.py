"""No input yields a 500 (issue #16): absurd numbers, JSON's non-standard tokens and deep
nesting inside specs, bodies that are not JSON or not the route's media type, methods a path does
not serve. Each answer is a 4xx in the one error shape; and the headers a browser needs are on
the dashboard and /docs, whose Swagger UI comes from this server."""

from __future__ import annotations

import re
from typing import Any

import pytest
from fastapi.testclient import TestClient

from tests.support.stack import Backend

JSON = {"content-type": "application/json"}


def error(r: Any, status: int) -> list[dict[str, Any]]:
    """The response's error items, after checking its status and the one shape."""
    assert r.status_code == status, r.text
    detail = r.json()["detail"]
    assert detail and all(set(d) == {"loc", "msg", "type"} for d in detail), detail
    return list(detail)


def raw(client: TestClient, path: str, body: bytes, headers: dict[str, str] = JSON) -> Any:
    return client.post(path, content=body, headers=headers)


DEEP = b'{"solver": {"type": "SGD", "params": {"x": ' + b"[" * 100 + b"]" * 100 + b"}}}"

# (path, body as sent, the loc of the error): each was a 500, or stored what a reader could not
# take back (PostgreSQL's jsonb refuses NaN; a response cannot carry it).
ABSURD = [
    ("/v1/sweeps", b'{"strategy": "lr_coarse_to_fine", "max_lr": 1.7e308}', ["body", "min_lr"]),
    (
        "/v1/sweeps",
        b'{"strategy": "lr_coarse_to_fine", "min_lr": 5e-324, "max_lr": 1e300}',
        ["body", "min_lr"],
    ),
    ("/v1/sweeps", b'{"strategy": "lr_coarse_to_fine", "max_lr": Infinity}', ["body", "max_lr"]),
    (
        "/v1/sweeps",
        b'{"strategy": "grid", "base": {"base_lr": NaN}, "parameters": {"base_lr": [0.1]}}',
        ["body", "base"],
    ),
    (
        "/v1/sweeps",
        b'{"strategy": "grid", "parameters": {"solver.params.momentum": [NaN]}}',
        ["body", "parameters"],
    ),
    (
        "/v1/sweeps",
        b'{"strategy": "random", "trials": 2, "seed": 1e300, "parameters": {"base_lr": [0.1]}}',
        ["body", "seed"],
    ),
    ("/v1/experiments", b'{"base_lr": 1e999}', ["body", "base_lr"]),
    ("/v1/experiments", b'{"base_lr": -0.0}', ["body", "base_lr"]),
    ("/v1/experiments", b'{"seed": 1208925819614629174706176}', ["body", "seed"]),
    ("/v1/experiments", b'{"split": {"seed": -1}}', ["body", "split", "seed"]),
    (
        "/v1/experiments",
        b'{"solver": {"type": "SGD", "params": {"momentum": NaN}}}',
        ["body", "solver", "params"],
    ),
    (
        "/v1/experiments",
        b'{"scheduler": {"type": "StepLR", "params": {"step_size": 1208925819614629174706176}}}',
        ["body", "scheduler", "params"],
    ),
    (
        "/v1/experiments",
        b'{"model": {"type": "p", "params": {"w": [-Infinity]}}}',
        ["body", "model", "params"],
    ),
    ("/v1/experiments", DEEP, ["body", "solver", "params"]),
    ("/v1/experiments", b'{"epochs": 1e400}', ["body", "epochs"]),
    ("/v1/experiments", b'{"name": "' + b"x" * 100_000 + b'"}', ["body", "name"]),
    ("/v1/batches", b'{"experiments": [{"base_lr": NaN}]}', ["body", "experiments", 0, "base_lr"]),
    (
        "/v1/lr-range-tests",
        b'{"spec": {}, "min_lr": 1e-300, "max_lr": 1e308, "steps": 1e20}',
        ["body", "steps"],
    ),
    (
        "/v1/schedules/preview",
        b'{"base_lr": 1e-3, "epochs": 10, "scheduler": {"type": '
        b'"ExponentialLR", "params": {"gamma": Infinity}}}',
        ["body", "scheduler", "params"],
    ),
    (
        "/v1/datasets",
        b'{"name": "gen", "generator": "regression", "noise": Infinity}',
        ["body", "noise"],
    ),
]


def test_absurd_numbers_and_nesting_are_a_422_at_their_field(client: TestClient) -> None:
    for path, body, loc in ABSURD:
        items = error(raw(client, path, body), 422)
        assert loc in [i["loc"] for i in items], (body[:120], items)
    # Nothing half-written before them, and the API still answers.
    assert client.get("/v1/experiments").json()["items"] == []
    assert client.get("/v1/sweeps").json()["items"] == []


# JSON bodies: a 422 at the field on both backends.
NUL_BODIES: list[tuple[str, dict[str, Any], list[Any]]] = [
    ("/v1/experiments", {"name": "a\u0000b"}, ["body", "name"]),
    ("/v1/experiments", {"tags": {"k": "v\u0000"}}, ["body", "tags", "k"]),
    ("/v1/experiments", {"tags": {"k\u0000": "v"}}, ["body", "tags", "k"]),
    ("/v1/batches", {"name": "x", "experiments": [{}, {"name": "\u0000"}]},
     ["body", "experiments", 1, "name"]),
    ("/v1/sweeps", {"strategy": "grid", "parameters": {"name": ["a\u0000"]}},
     ["body", "parameters", "name", 0]),
    ("/v1/lr-range-tests", {"spec": {"name": "\u0000"}, "min_lr": 1e-5, "max_lr": 1, "steps": 10},
     ["body", "spec", "name"]),
]  # fmt: skip
NUL: list[tuple[str, str, dict[str, Any]]] = [
    ("post", "/v1/experiments", {"json": {}, "headers": {"Idempotency-Key": "a\u0000"}}),
    ("get", "/v1/batches/a%00b", {}),
    ("get", "/v1/datasets/a%00b", {}),
    ("get", "/v1/experiments?tag=a%00b&batch_id=a%00b", {}),
    ("delete", "/v1/tokens/a%00", {}),
]


def test_a_nul_character_anywhere_is_no_500(client: TestClient, backend: Backend) -> None:
    """A NUL in a body, a path or a query is a 422 at its field on both backends; elsewhere
    (a header) PostgreSQL's text refuses it (SQLite stores it): a 422 there, in the shape."""
    # In a path or a query, on either backend: a 422 at that parameter (SQLite's LIKE read
    # `q=%00` as an empty pattern and listed every run).
    for path, loc in [("/v1/experiments?limit=5&q=%00", ["query", "q"]),
                      ("/v1/experiments?tag=a%00b&batch_id=x", ["query", "tag"]),
                      ("/v1/datasets/a%00b", ["path"]),
                      ("/v1/batches/a%00b", ["path"])]:  # fmt: skip
        (item,) = error(client.get(path), 422)
        assert item["loc"] == loc and "NUL" in item["msg"], (path, item)
    for path, body, loc in NUL_BODIES:
        (item,) = error(client.post(path, json=body), 422)
        assert item["loc"] == loc and "NUL" in item["msg"], (path, item)
    # Any type FastAPI reads as JSON (application/…+json) is checked alike.
    for media in ("application/merge-patch+json", "Application/JSON; charset=utf-8"):
        r = raw(client, "/v1/experiments", b'{"name": "a\\u0000b"}', {"content-type": media})
        (item,) = error(r, 422)
        assert item["loc"] == ["body", "name"] and "NUL" in item["msg"], (media, item)
    assert client.get("/v1/experiments").json()["items"] == []  # nothing stored
    for method, path, kwargs in NUL:
        r = getattr(client, method)(path, **kwargs)
        if backend.name == "postgres":
            (item,) = error(r, 422)
            assert "NUL" in item["msg"], (path, item)
        else:
            assert r.status_code < 500, (path, r.text)


def test_json_types_are_the_openapi_s(client: TestClient) -> None:
    """What the schema calls invalid is refused (pydantic's lax mode took "5", true and 0); a
    whole float is an integer, as JSON Schema says."""
    for body, loc in [
        ({"epochs": "5"}, ["body", "epochs"]),
        ({"epochs": True}, ["body", "epochs"]),
        ({"epochs": 2.5}, ["body", "epochs"]),
        ({"base_lr": "0.1"}, ["body", "base_lr"]),
        ({"split": {"stratify": 0}}, ["body", "split", "stratify"]),
        ({"early_stopping": {"restore_best": "yes"}}, ["body", "early_stopping", "restore_best"]),
    ]:
        items = error(client.post("/v1/experiments", json=body), 422)
        assert [i["loc"] for i in items] == [loc], (body, items)
    made = client.post("/v1/experiments", json={"epochs": 3.0, "model": {"hidden": [8.0]}})
    assert made.status_code == 201, made.text
    assert made.json()["spec"]["epochs"] == 3 and made.json()["spec"]["model"]["hidden"] == [8]


def test_bodies_that_are_not_json_or_not_the_route_s_type(client: TestClient) -> None:
    (item,) = error(raw(client, "/v1/experiments", b'{"base_lr": 0.1'), 422)
    assert item["loc"] == ["body"] and item["type"] == "json_invalid"
    assert item["msg"] == "the body is not valid JSON: Expecting ',' delimiter at character 15"
    (item,) = error(raw(client, "/v1/sweeps", b'{"strategy": "\xff"}'), 422)
    assert (
        item["loc"] == ["body"]
        and item["msg"] == "the body is not valid JSON: it is not UTF-8 text"
    )
    (item,) = error(raw(client, "/v1/experiments", b"[" * 5000 + b"]" * 5000), 422)
    assert item["loc"] == ["body"] and "nested too deeply" in item["msg"]
    # A form Starlette cannot parse (it answered 400 outside the shape's loc).
    form = b"".join(
        b'--X\r\nContent-Disposition: form-data; name="f%d"\r\n\r\nv\r\n' % i for i in range(12)
    )
    multipart = {"content-type": "multipart/form-data; boundary=X"}
    (item,) = error(raw(client, "/v1/datasets", form + b"--X--\r\n", multipart), 422)
    assert item["loc"] == ["body"] and "not valid multipart/form-data" in item["msg"]

    for headers, said in [
        ({"content-type": "text/plain"}, "Content-Type text/plain"),
        ({"content-type": "application/x-www-form-urlencoded"}, "x-www-form-urlencoded"),
        ({}, "no Content-Type"),
        ({"content-type": ";;;"}, "Content-Type ';;;'"),  # not a media type: named as sent
    ]:
        (item,) = error(raw(client, "/v1/schedules/preview", b'{"base_lr": 0.1}', headers), 415)
        assert item["loc"] == ["header", "content-type"] and said in item["msg"], item
    (item,) = error(raw(client, "/v1/datasets", b"x", {"content-type": "text/csv"}), 415)
    assert item["loc"] == ["header", "content-type"]
    # JSON by another name is JSON; a missing body is a missing body, whatever its type.
    typed = {"content-type": "application/merge-patch+json; charset=utf-8"}
    assert raw(client, "/v1/experiments", b"{}", typed).status_code == 201
    (item,) = error(raw(client, "/v1/experiments", b"", {"content-type": "text/plain"}), 422)
    assert item["loc"] == ["body"]


def test_405_allows_every_method_of_the_path_and_404_is_in_the_shape(client: TestClient) -> None:
    for method, path, allow in [
        ("PUT", "/v1/experiments", "GET, POST"),
        ("DELETE", "/v1/experiments/compare", "GET"),  # not the id's DELETE: no such id
        ("OPTIONS", "/v1/experiments/5", "GET, DELETE"),
        ("PATCH", "/v1/sweeps/1", "GET"),
        ("DELETE", "/v1/datasets", "GET, POST"),
        ("POST", "/static/js/main.js", "GET, HEAD"),
    ]:
        r = client.request(method, path)
        (item,) = error(r, 405)
        assert r.headers["allow"] == allow, (method, path, r.headers["allow"])
        assert item["type"] == "method_not_allowed" and allow in item["msg"]
    (item,) = error(client.get("/v1/nothing-here"), 404)
    assert item["loc"] == []
    # A word where an id goes is still the id's own 422, not a 404.
    (item,) = error(client.get("/v1/experiments/abc"), 422)
    assert item["loc"] == ["path", "experiment_id"]


POLICY = re.compile(r"default-src 'self';.*frame-ancestors 'none'")


def test_dashboard_and_docs_headers_and_local_swagger_assets(client: TestClient) -> None:
    for path in ("/", "/experiments/1", "/docs", "/v1/experiments", "/static/js/main.js"):
        r = client.get(path)
        assert r.status_code == 200, path
        assert POLICY.search(r.headers["content-security-policy"]), path
        assert "unsafe-inline" not in r.headers["content-security-policy"]
        assert r.headers["x-content-type-options"] == "nosniff"
        assert r.headers["x-frame-options"] == "DENY"
        assert r.headers["referrer-policy"] == "same-origin"
    docs = client.get("/docs")
    # Every script and stylesheet of the page is this server's, and served.
    assets = re.findall(r'(?:src|href)="([^"]+)"', docs.text)
    assert {"/static/vendor/swagger-ui/swagger-ui-bundle.js",
            "/static/vendor/swagger-ui/swagger-ui.css"} <= set(assets)  # fmt: skip
    for url in assets:
        assert url.startswith(("/", "data:")), url
        if url.startswith("/"):
            assert client.get(url).status_code == 200, url
    # The inline init script runs by its hash: the one allowed besides 'self'.
    (script,) = re.findall(r"script-src ([^;]+)", docs.headers["content-security-policy"])
    assert script.startswith("'self' 'sha256-") and script.count("sha256-") == 1
    assert client.get("/redoc").status_code == 404


@pytest.mark.parametrize("backend", ["embedded"], indirect=True)
def test_openapi_states_the_bounds_and_enums(client: TestClient) -> None:
    schemas = client.get("/openapi.json").json()["components"]["schemas"]
    spec = schemas["ExperimentSpec"]["properties"]
    assert spec["seed"]["maximum"] == 2**53 - 1 and spec["epochs"]["minimum"] == 1
    assert "SGD" in schemas["SolverSpec"]["properties"]["type"]["enum"]
    assert "StepLR" in schemas["SchedulerSpec"]["properties"]["type"]["enum"]
    assert {"type": "string"}.items() <= spec["dataset"]["anyOf"][0].items()
    assert schemas["SolverSpec"]["properties"]["params"]["maxProperties"] == 100

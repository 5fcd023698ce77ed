"""Tokens with roles (CONTRACT.md, "Live events, metrics, access"): the API is open until the
first token exists; then no, unknown or revoked token is a 401, a role short of the right a 403
naming the role needed; env tokens are admins; runs record the token that made them; tokens are
kept as their sha256 and marked used at most once a minute."""

from __future__ import annotations

import hashlib
from concurrent.futures import ThreadPoolExecutor
from datetime import timedelta
from typing import Any

import pytest
from fastapi.testclient import TestClient
from sqlalchemy import select, text, update

from service.config import settings
from service.kit.auth import Found
from service.kit.db import session_scope
from service.kit.time import as_utc, utcnow
from service.tokens import service as tokens
from service.tokens.models import Token

SPEC: dict[str, Any] = {"dataset": "iris", "model": {"type": "linear"}, "epochs": 1}


def bearer(token: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {token}"}


def make(client: TestClient, name: str, role: str, headers: dict[str, str] | None = None) -> str:
    r = client.post("/v1/tokens", json={"name": name, "role": role}, headers=headers or {})
    assert r.status_code == 201, r.text
    body = r.json()
    assert body["name"] == name and body["role"] == role
    token: str = body["token"]
    return token


@pytest.fixture
def roles(client: TestClient) -> dict[str, dict[str, str]]:
    """An admin made while the API is open (which closes it), then a read and a submit token."""
    admin = make(client, "root", "admin")
    made = {"admin": bearer(admin)}
    for role in ("read", "submit"):
        made[role] = bearer(make(client, f"{role}-1", role, made["admin"]))
    return made


def test_open_until_the_first_token_then_closed(client: TestClient) -> None:
    assert client.get("/v1/experiments").status_code == 200
    assert client.get("/v1/tokens/me").json() == {"name": None, "role": "admin"}
    # A stale token sent to an open API is ignored, as before tokens existed.
    assert client.get("/v1/experiments", headers=bearer("gp_old")).status_code == 200
    assert client.post("/v1/experiments", json=SPEC).json()["created_by"] is None  # nobody's
    admin = make(client, "first", "admin")
    assert admin.startswith("gp_") and len(admin) > 40

    r = client.get("/v1/experiments")
    assert r.status_code == 401 and r.headers["WWW-Authenticate"] == "Bearer"
    [error] = r.json()["detail"]
    assert error["loc"] == ["header", "Authorization"] and error["type"] == "unauthorized"
    assert client.get("/v1/experiments", headers=bearer("gp_nope")).status_code == 401
    assert client.get("/v1/tokens/me", headers=bearer(admin)).json() == {
        "name": "first",
        "role": "admin",
    }
    assert client.get("/healthz").status_code == 200  # health and pages stay open
    assert client.get("/").status_code == 200 and client.get("/tokens").status_code == 200


# (method, path, the role it needs): reads, creates of every kind, cancel and delete, previews,
# the token admin routes and /v1/tokens/me.
ROUTES = [
    ("GET", "/v1/experiments", "read"),
    ("GET", "/v1/experiments/1/metrics", "read"),
    ("GET", "/v1/sweeps", "read"),
    ("GET", "/v1/workers", "read"),
    ("GET", "/v1/catalog", "read"),
    ("GET", "/v1/datasets", "read"),
    ("GET", "/v1/tokens/me", "read"),
    ("POST", "/v1/experiments", "submit"),
    ("POST", "/v1/batches", "submit"),
    ("POST", "/v1/sweeps", "submit"),
    ("POST", "/v1/lr-range-tests", "submit"),
    ("POST", "/v1/datasets", "submit"),
    ("POST", "/v1/schedules/preview", "submit"),
    ("POST", "/v1/experiments/1/cancel", "submit"),
    ("POST", "/v1/sweeps/1/cancel", "submit"),
    ("DELETE", "/v1/experiments/1", "submit"),
    ("GET", "/v1/tokens", "admin"),
    ("POST", "/v1/tokens", "admin"),
    ("DELETE", "/v1/tokens/nobody", "admin"),
]
RANK = {"read": 0, "submit": 1, "admin": 2}
BODY = {"no_such_field": 1}  # refused by every body's schema: nothing is created


def test_each_role_gets_what_it_may_and_a_403_naming_the_role_otherwise(
    client: TestClient, roles: dict[str, dict[str, str]]
) -> None:
    for method, path, needed in ROUTES:
        for headers in ({}, bearer("gp_unknown"), {"Authorization": "Basic cm9vdDpyb290"}):
            r = client.request(method, path, headers=headers, json=BODY)
            assert r.status_code == 401, (method, path, headers, r.text)
        for role, headers in roles.items():
            # A role that may is answered by the route itself (422, 404, ...).
            r = client.request(method, path, headers=headers, json=BODY)
            if RANK[role] >= RANK[needed]:
                assert r.status_code not in (401, 403), (method, path, role, r.text)
            else:
                assert r.status_code == 403, (method, path, role, r.text)
                [error] = r.json()["detail"]
                assert error["type"] == "forbidden" and error["loc"] == ["header", "Authorization"]
                assert f"needs the '{needed}' role" in error["msg"], error["msg"]
                assert f"has '{role}'" in error["msg"]


def test_revoked_tokens_are_refused_and_names_are_never_reused(
    client: TestClient, roles: dict[str, dict[str, str]]
) -> None:
    admin = roles["admin"]
    ci = bearer(make(client, "ci", "submit", admin))
    assert client.post("/v1/experiments", json=SPEC, headers=ci).status_code == 201
    r = client.delete("/v1/tokens/ci", headers=admin)
    assert r.status_code == 200 and r.json()["revoked"] is True
    r = client.get("/v1/experiments", headers=ci)
    assert r.status_code == 401 and "revoked" in r.json()["detail"][0]["msg"]
    listed = {t["name"]: t for t in client.get("/v1/tokens", headers=admin).json()["items"]}
    assert listed["ci"]["revoked"] is True and listed["ci"]["revoked_at"]
    assert listed["root"]["revoked"] is False and "token" not in listed["root"]
    assert client.delete("/v1/tokens/nobody", headers=admin).status_code == 404
    r = client.post("/v1/tokens", json={"name": "ci", "role": "read"}, headers=admin)
    assert r.status_code == 409 and r.json()["detail"][0]["loc"] == ["body", "name"]
    r = client.post("/v1/tokens", json={"name": "env:1", "role": "boss"}, headers=admin)
    assert r.status_code == 422
    assert {tuple(e["loc"]) for e in r.json()["detail"]} == {("body", "name"), ("body", "role")}


@pytest.mark.parametrize("backend", ["embedded"], indirect=True)  # no store concurrency at stake
def test_a_token_revoked_elsewhere_is_refused_once_the_cache_expires(
    client: TestClient, roles: dict[str, dict[str, str]]
) -> None:
    """Another process (the CLI, a second API process) revokes it in the database: this
    process's cache holds a token for at most its TTL (a second), read here on a clock the test
    moves."""
    auth = client.app.state.auth  # type: ignore[attr-defined]
    now = [auth.clock()]  # from the clock its cached entries were stamped with
    auth.clock = lambda: now[0]
    submit = roles["submit"]
    assert client.get("/v1/experiments", headers=submit).status_code == 200
    with session_scope() as session:
        tokens.revoke(session, "submit-1")  # what `glidepath token revoke` does
    now[0] += auth.ttl
    assert client.get("/v1/experiments", headers=submit).status_code == 401


@pytest.mark.parametrize("backend", ["embedded"], indirect=True)  # no store concurrency at stake
def test_env_tokens_are_admins(client: TestClient, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(settings, "api_tokens", "alpha, beta")
    assert client.get("/v1/experiments").status_code == 401
    me = client.get("/v1/tokens/me", headers=bearer("beta")).json()
    assert me == {"name": "env:2", "role": "admin"}
    reader = make(client, "reader", "read", bearer("alpha"))
    assert client.post("/v1/experiments", json=SPEC, headers=bearer(reader)).status_code == 403
    r = client.post("/v1/experiments", json=SPEC, headers=bearer("alpha"))
    assert r.status_code == 201 and r.json()["created_by"] == "env:1"


def test_runs_record_the_token_that_made_them(
    client: TestClient, roles: dict[str, dict[str, str]]
) -> None:
    submit = roles["submit"]
    one = client.post("/v1/experiments", json=SPEC, headers=submit).json()
    assert one["created_by"] == "submit-1"
    batch = client.post("/v1/batches", json={"experiments": [SPEC, SPEC]}, headers=submit).json()
    sweep = client.post(
        "/v1/sweeps",
        json={"base": SPEC, "strategy": "grid", "parameters": {"base_lr": [0.1, 0.01]}},
        headers=submit,
    ).json()
    spec = {**SPEC, "dataset": "digits", "model": {"type": "mlp", "hidden": [8]}}
    body = {"spec": spec, "min_lr": 1e-5, "max_lr": 1, "steps": 20}
    r = client.post("/v1/lr-range-tests", json=body, headers=roles["admin"])
    assert r.status_code == 201, r.text
    assert r.json()["created_by"] == "root"
    assert client.get(f"/v1/sweeps/{sweep['sweep_id']}", headers=submit).json()["created_by"] == (
        "submit-1"
    )
    page = client.get("/v1/experiments", headers=roles["read"]).json()["items"]
    by_id = {e["id"]: e["created_by"] for e in page}
    for i in [one["id"], *batch["ids"], *sweep["ids"]]:
        assert by_id[i] == "submit-1"


def test_tokens_are_stored_hashed_and_marked_used_once_a_minute(client: TestClient) -> None:
    token = make(client, "hashed", "read")
    with session_scope() as session:
        dump = " ".join(
            str(v) for row in session.execute(text("SELECT * FROM tokens")) for v in row
        )
        row = session.scalars(select(Token)).one()
    assert token not in dump and token[3:] not in dump
    assert row.token_hash == hashlib.sha256(token.encode()).hexdigest()
    assert row.last_used_at is None

    auth = client.app.state.auth  # type: ignore[attr-defined]
    assert client.get("/v1/experiments", headers=bearer(token)).status_code == 200
    with session_scope() as session:
        first = session.scalars(select(Token)).one().last_used_at
    assert first is not None
    auth.forget()  # read the table again: a use within the minute writes nothing
    assert client.get("/v1/experiments", headers=bearer(token)).status_code == 200
    with session_scope() as session:
        assert session.scalars(select(Token)).one().last_used_at == first
        # A minute and more later (as stored: naive on SQLite), the next use writes it again.
        session.execute(update(Token).values(last_used_at=utcnow() - timedelta(minutes=2)))
    auth.forget()
    assert client.get("/v1/experiments", headers=bearer(token)).status_code == 200
    with session_scope() as session:
        later = as_utc(session.scalars(select(Token)).one().last_used_at)
    assert later is not None and later > (as_utc(first) or later)
    listed = client.get("/v1/tokens", headers=bearer(token))
    assert listed.status_code == 403  # a read token cannot list tokens


class CountingTokens(tokens.DatabaseTokens):
    """The real store, counting its reads of the table."""

    def __init__(self) -> None:
        self.reads = 0

    def find(self, token_digest: str) -> Found | None:
        self.reads += 1
        return super().find(token_digest)


@pytest.mark.parametrize("backend", ["embedded"], indirect=True)  # no store concurrency at stake
def test_one_read_of_the_table_per_token_per_second_whatever_the_rate(
    client: TestClient, roles: dict[str, dict[str, str]]
) -> None:
    auth = client.app.state.auth  # type: ignore[attr-defined]
    now = [auth.clock()]  # from the clock its cached entries were stamped with
    auth.clock = lambda: now[0]
    auth.store = store = CountingTokens()
    auth.forget()
    with ThreadPoolExecutor(8) as pool:  # concurrent requests: their misses share one read
        codes = list(pool.map(lambda _: client.get("/v1/tokens/me", headers=roles["read"]),
                              range(40)))  # fmt: skip
    assert {r.status_code for r in codes} == {200} and store.reads == 1
    now[0] += auth.ttl  # a second later the table is read again
    assert client.get("/v1/tokens/me", headers=roles["read"]).status_code == 200
    assert store.reads == 2

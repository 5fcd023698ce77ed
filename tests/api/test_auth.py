"""GLIDEPATH_API_TOKENS: empty leaves /v1 open; set, every /v1 route needs a listed Bearer token
and health checks stay open."""

from __future__ import annotations

import pytest
from fastapi.testclient import TestClient

from service.config import settings

SPEC = {"dataset": "iris", "model": {"type": "linear"}, "epochs": 1}


@pytest.fixture
def tokens(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(settings, "api_tokens", "alpha, beta")


def test_open_when_no_tokens_are_set(client: TestClient) -> None:
    assert client.get("/v1/experiments").status_code == 200


@pytest.mark.usefixtures("tokens")
@pytest.mark.parametrize(
    ("method", "path"),
    [
        ("GET", "/v1/experiments"),
        ("POST", "/v1/experiments"),
        ("POST", "/v1/batches"),
        ("GET", "/v1/sweeps"),
        ("GET", "/v1/datasets"),
        ("POST", "/v1/schedules/preview"),
        ("GET", "/v1/lr-range-tests/1"),
        ("GET", "/v1/experiments/compare?ids=1"),
    ],
)
def test_every_v1_route_needs_a_token(client: TestClient, method: str, path: str) -> None:
    for headers in ({}, {"Authorization": "Bearer gamma"}, {"Authorization": "alpha"}):
        r = client.request(method, path, headers=headers, json={})
        assert r.status_code == 401, (headers, r.text)
        assert r.headers["WWW-Authenticate"] == "Bearer"
        assert r.json()["detail"][0]["loc"] == ["header", "Authorization"]


@pytest.mark.usefixtures("tokens")
def test_any_listed_token_works_and_health_stays_open(client: TestClient) -> None:
    r = client.post("/v1/experiments", json=SPEC, headers={"Authorization": "Bearer beta"})
    assert r.status_code == 201
    assert (
        client.get("/v1/experiments", headers={"Authorization": "bearer alpha"}).status_code == 200
    )
    assert client.get("/healthz").status_code == 200

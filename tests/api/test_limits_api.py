"""Body-size limits through the whole API (service/kit/limits.py): a JSON body or an upload past
its limit is a 413 in the one error shape, whether Content-Length announced it or the bytes
streamed past it (FastAPI would make a failed body read a 400), and nothing is created; a body
exactly at the limit is read. The limits are the same code on either database: embedded only."""

from __future__ import annotations

import json
from collections.abc import Iterator
from typing import Any

import pytest
from fastapi.testclient import TestClient

from service.config import settings
from tests.api.test_experiments_api import SPEC

pytestmark = pytest.mark.parametrize("backend", ["embedded"], indirect=True)

LIMIT = 2048


@pytest.fixture(autouse=True)
def small_limits(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(settings, "max_json_bytes", LIMIT)
    monkeypatch.setattr(settings, "max_upload_mb", 1)


def spec_of(size: int) -> bytes:
    """A valid spec, padded with whitespace to exactly `size` bytes."""
    body = json.dumps({**SPEC, "name": "at-the-limit"}).encode()
    return body + b" " * (size - len(body))


def count(client: TestClient) -> int:
    return len(client.get("/v1/experiments").json()["items"])


def assert_too_large(r: Any, loc: list[str], setting: str) -> None:
    assert r.status_code == 413, r.text
    [item] = r.json()["detail"]
    assert (item["loc"], item["type"]) == (loc, "too_large")
    assert setting in item["msg"]


def test_a_json_body_at_the_limit_is_read_one_byte_more_is_413(client: TestClient) -> None:
    headers = {"content-type": "application/json"}
    r = client.post("/v1/experiments", content=spec_of(LIMIT), headers=headers)
    assert r.status_code == 201, r.text
    before = count(client)
    r = client.post("/v1/experiments", content=spec_of(LIMIT + 1), headers=headers)
    assert_too_large(r, ["body"], "GLIDEPATH_MAX_JSON_BYTES")
    assert count(client) == before


def test_a_streamed_json_body_past_the_limit_is_413_not_400(client: TestClient) -> None:
    def chunks() -> Iterator[bytes]:  # no Content-Length: chunked transfer
        yield spec_of(LIMIT + 100)

    r = client.post("/v1/batches", content=chunks(), headers={"content-type": "application/json"})
    assert "content-length" not in r.request.headers
    assert_too_large(r, ["body"], "GLIDEPATH_MAX_JSON_BYTES")


def test_an_upload_past_its_limit_is_413_and_stores_nothing(client: TestClient) -> None:
    big = b"\0" * (3 * 2**20)  # past 1 MiB and the form's 1 MiB of room, far past the JSON limit
    r = client.post(
        "/v1/datasets",
        data={"name": "too-big"},
        files={"file": ("data.npz", big, "application/octet-stream")},
    )
    assert_too_large(r, ["body", "file"], "GLIDEPATH_MAX_UPLOAD_MB")
    assert client.get("/v1/datasets/too-big").status_code == 404

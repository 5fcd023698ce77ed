"""Integers past the database's INTEGER (32 bits on PostgreSQL) in paths and queries can name no
row: a 422 at the parameter, never the 500 a database driver gives when it cannot bind them."""

from __future__ import annotations

import base64
import json

import pytest
from fastapi.testclient import TestClient

HUGE = 2**80
CURSOR = base64.urlsafe_b64encode(json.dumps({"before": HUGE}).encode()).decode()


@pytest.mark.parametrize(
    ("method", "url", "loc"),
    [
        ("get", f"/v1/experiments/{HUGE}", ["path", "experiment_id"]),
        ("get", f"/v1/experiments/{-HUGE}", ["path", "experiment_id"]),
        ("get", f"/v1/experiments/{HUGE}/metrics", ["path", "experiment_id"]),
        ("get", f"/v1/experiments/{HUGE}/decisions", ["path", "experiment_id"]),
        ("get", f"/v1/experiments/{HUGE}/lr?resolution=step", ["path", "experiment_id"]),
        ("post", f"/v1/experiments/{HUGE}/cancel", ["path", "experiment_id"]),
        ("get", f"/v1/experiments/1/metrics?after_epoch={HUGE}", ["query", "after_epoch"]),
        ("get", f"/v1/experiments?sweep_id={HUGE}", ["query", "sweep_id"]),
        ("get", f"/v1/experiments?cursor={CURSOR}", ["query", "cursor"]),
        ("get", f"/v1/experiments/compare?ids=1,{HUGE}", ["query", "ids"]),
        ("get", f"/v1/sweeps/{HUGE}", ["path", "sweep_id"]),
        ("post", f"/v1/sweeps/{HUGE}/cancel", ["path", "sweep_id"]),
        ("get", f"/v1/lr-range-tests/{HUGE}", ["path", "test_id"]),
        ("get", f"/v1/lr-range-tests/1?from_step={HUGE}", ["query", "from_step"]),
        ("post", f"/v1/lr-range-tests/{HUGE}/cancel", ["path", "test_id"]),
    ],
)
def test_an_integer_past_the_database_integer_is_a_422_at_its_parameter(
    client: TestClient, method: str, url: str, loc: list[str]
) -> None:
    r = getattr(client, method)(url)
    assert r.status_code == 422, r.text
    assert [e["loc"] for e in r.json()["detail"]] == [loc]


def test_the_largest_database_integer_is_looked_up_and_one_more_is_refused(
    client: TestClient,
) -> None:
    r = client.get(f"/v1/experiments/{2**31 - 1}")
    assert r.status_code == 404
    assert r.json()["detail"][0]["loc"] == ["path", "experiment_id"]
    assert client.get(f"/v1/experiments/{2**31}").status_code == 422
    assert client.get(f"/v1/experiments/1/metrics?after_epoch={2**31}").status_code == 422

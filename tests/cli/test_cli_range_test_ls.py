"""`glidepath range-test ls` in-process (CliRunner) against the API in-process: the range tests
newest first with their suggestion, filtered by status, as a table and as JSON."""

from __future__ import annotations

import json
from typing import Any

from fastapi.testclient import TestClient
from typer.testing import CliRunner

from service.cli import app
from worker.runs.lifecycle import run_experiment

BODY: dict[str, Any] = {
    "spec": {"name": "cli-range", "dataset": "iris", "model": {"type": "mlp", "hidden": [8]},
             "batch_size": 16, "device": "cpu"},
    "min_lr": 1e-4, "max_lr": 10.0, "steps": 30,
}  # fmt: skip


def test_range_test_ls(cli: CliRunner, client: TestClient) -> None:
    done = client.post("/v1/lr-range-tests", json=BODY).json()["id"]
    assert run_experiment(done).status == "succeeded"
    queued = client.post("/v1/lr-range-tests", json={**BODY, "steps": 50}).json()["id"]
    suggested = client.get(f"/v1/lr-range-tests/{done}").json()["suggested_lr"]
    assert suggested is not None

    listed = cli.invoke(app, ["range-test", "ls", "--json"])
    assert listed.exit_code == 0, listed.output
    items = json.loads(listed.stdout)
    assert [t["id"] for t in items] == [queued, done]
    assert items[1]["suggested_lr"] == suggested and items[1]["steps_run"] == 30

    table = cli.invoke(app, ["range-test", "ls"])
    assert table.exit_code == 0, table.output
    rows = [line.replace("│", " ").split() for line in table.stdout.splitlines()]
    lines = {r[0]: " ".join(r) for r in rows if r and r[0].isdigit()}  # id → the row's cells
    assert "succeeded" in lines[str(done)] and "30/30" in lines[str(done)]
    assert "iris · mlp" in lines[str(done)]
    assert "queued" in lines[str(queued)] and "0/50" in lines[str(queued)]

    only = cli.invoke(app, ["range-test", "ls", "--status", "queued", "--json"])
    assert [t["id"] for t in json.loads(only.stdout)] == [queued]
    two = cli.invoke(app, ["range-test", "ls", "-s", "queued", "-s", "succeeded", "--limit", "1",
                           "--json"])  # fmt: skip
    assert [t["id"] for t in json.loads(two.stdout)] == [queued]
    bad = cli.invoke(app, ["range-test", "ls", "--status", "finished"])
    assert bad.exit_code != 0 and "status" in bad.output

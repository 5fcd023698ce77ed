"""`glidepath lr` in-process (Typer's CliRunner) against the API in-process: a run's LR per epoch
and per step, as a table and as JSON, downsampled on request; an unknown id exits 4."""

from __future__ import annotations

import json

from fastapi.testclient import TestClient
from typer.testing import CliRunner

from service.cli import app
from tests.support.runs import end_run


def test_lr_per_epoch_and_per_step(cli: CliRunner, client: TestClient) -> None:
    spec = {"dataset": "iris", "base_lr": 0.1, "epochs": 3, "batch_size": 64,
            "scheduler": {"type": "StepLR", "params": {"step_size": 2, "gamma": 0.5}}}  # fmt: skip
    exp_id = client.post("/v1/experiments", json=spec).json()["id"]
    end_run(exp_id, [1.0, 0.9, 0.8], lrs=[0.1, 0.1, 0.05])
    steps = client.get(f"/v1/experiments/{exp_id}").json()["steps_per_epoch"]

    per_epoch = cli.invoke(app, ["lr", str(exp_id), "--json"])
    assert per_epoch.exit_code == 0, per_epoch.output
    assert [p["lr"] for p in json.loads(per_epoch.stdout)["points"]] == [0.1, 0.1, 0.05]
    table = cli.invoke(app, ["lr", str(exp_id)])
    assert table.exit_code == 0 and "LR per epoch · recorded · 3 epochs" in table.stdout

    per_step = cli.invoke(app, ["lr", str(exp_id), "-r", "step", "--json"])
    body = json.loads(per_step.stdout)
    assert body["source"] == "computed" and len(body["points"]) == 3 * steps
    small = cli.invoke(app, ["lr", str(exp_id), "--resolution", "step", "--max-points", "4"])
    assert small.exit_code == 0, small.output
    assert f"{3 * steps} steps, " in small.stdout and "shown" in small.stdout

    assert cli.invoke(app, ["lr", "424242"]).exit_code == 4
    assert cli.invoke(app, ["lr", str(exp_id), "-r", "minute"]).exit_code == 2

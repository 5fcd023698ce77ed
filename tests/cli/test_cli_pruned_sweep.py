"""`glidepath sweep show` of a pruned sweep, in-process (Typer's CliRunner) against the API
in-process, the sweep trained by the worker's own code as in tests/api/test_pruners_api.py: the
pruner's rule, its rungs, the runs pruned and epochs saved, the decisions (the last N, or all),
and `--json` with every decision."""

from __future__ import annotations

import json
from typing import Any

import pytest
from fastapi.testclient import TestClient
from typer.testing import CliRunner

from service.cli import app
from service.client import Client
from tests.api.test_pruners_api import drain

# Three runs, rungs at epochs 1 and 3 of 4: at the first the best of three goes on, at the second
# the one left goes on alone; a few hundred milliseconds of training in all.
BASE: dict[str, Any] = {"dataset": "iris", "model": {"type": "mlp", "hidden": [8]},
                        "epochs": 4, "batch_size": 64, "device": "cpu"}  # fmt: skip
SWEEP: dict[str, Any] = {"name": "cli-pruned", "base": BASE, "strategy": "grid",
                         "parameters": {"base_lr": [0.003, 0.03, 0.3]},
                         "pruner": {"type": "successive_halving"}}  # fmt: skip


# The rendering is the CLI's, whatever the store: the embedded backend only.
@pytest.mark.parametrize("backend", ["embedded"], indirect=True)
def test_sweep_show_of_a_pruned_sweep(cli: CliRunner, client: TestClient) -> None:
    sweep_id = client.post("/v1/sweeps", json=SWEEP).json()["sweep_id"]
    drain(client, sweep_id)
    gp = Client(http=client, retries=0)
    decisions = gp.sweep_decisions(sweep_id)
    assert [(d["epoch"], d["rung"]) for d in decisions] == [(1, 0)] * 3 + [(3, 1)]
    [stopped, *_] = [d for d in decisions if d["decision"] == "stop"]
    pruning = gp.get_sweep(sweep_id)["pruning"]
    assert pruning is not None and pruning["pruned"] == 2

    shown = cli.invoke(app, ["sweep", "show", str(sweep_id)])
    assert shown.exit_code == 0, shown.output
    out = shown.stdout
    assert "pruner: successive halving: rungs at epochs 1·3^k" in out
    assert "pruned 2 runs; 6 of 12 epochs trained, 6 saved" in out
    rungs = out[out.index("rungs") :]
    for row in ("│     1 │       0 │     1 │       3 │         1 │",
                "│     1 │       0 │     3 │       1 │         1 │"):  # fmt: skip
        assert row in rungs, out
    assert "pruned" in out.split("leaderboard")[0]  # the runs table's status
    assert stopped["reason"] in out and "is not among the best 1 of 3" in out
    assert "continues" in out and "(the last" not in out

    last = cli.invoke(app, ["sweep", "show", str(sweep_id), "--decisions", "2"])
    assert last.exit_code == 0, last.output
    assert "decisions (the last 2 of 4; --decisions all shows every one)" in last.stdout
    assert decisions[-1]["reason"] in last.stdout and decisions[0]["reason"] not in last.stdout
    every = cli.invoke(app, ["sweep", "show", str(sweep_id), "-d", "all"])
    assert all(d["reason"] in every.stdout for d in decisions)

    body = json.loads(cli.invoke(app, ["sweep", "show", str(sweep_id), "--json", "-d", "1"]).stdout)
    assert body["pruning"] == pruning and body["decisions"] == decisions

    bad = cli.invoke(app, ["sweep", "show", str(sweep_id), "--decisions", "some"])
    assert bad.exit_code == 2 and "'some' is neither a count" in bad.output


@pytest.mark.parametrize("backend", ["embedded"], indirect=True)
def test_a_sweep_without_a_pruner_shows_no_pruning(cli: CliRunner, client: TestClient) -> None:
    plain = {k: v for k, v in SWEEP.items() if k != "pruner"}
    sweep_id = client.post("/v1/sweeps", json=plain).json()["sweep_id"]
    shown = cli.invoke(app, ["sweep", "show", str(sweep_id)])
    assert shown.exit_code == 0 and "pruner" not in shown.stdout
    body = json.loads(cli.invoke(app, ["sweep", "show", str(sweep_id), "--json"]).stdout)
    assert body["pruning"] is None and body["decisions"] == []

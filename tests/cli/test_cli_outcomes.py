"""What `glidepath show`, `ls` and a sweep's tables say about how a run ended and what its best
is the best of (in-process: the CLI through the in-process API, the run trained in-process)."""

from __future__ import annotations

from typing import Any

from fastapi.testclient import TestClient
from rich.console import Console
from typer.testing import CliRunner

from service.cli import app
from service.cli.tables import sweep_tables
from service.cli.trackers import Row, View, _progress_table
from worker.runs.lifecycle import run_experiment

IRIS: dict[str, Any] = {
    "name": "iris-stopped", "dataset": "iris", "split": {"train": 0.6, "val": 0.4, "seed": 1},
    "device": "cpu", "model": {"type": "mlp", "hidden": [8]}, "base_lr": 1e-4, "epochs": 20,
    "batch_size": 32,
    "early_stopping": {"monitor": "val_accuracy", "mode": "max", "patience": 2, "min_delta": 0.5},
}  # fmt: skip


def words(text: str) -> str:
    """The output with runs of spaces and line breaks (a wrapped cell) as one space."""
    return " ".join(text.split())


def test_show_says_why_a_run_stopped_and_names_its_best(cli: CliRunner, client: TestClient) -> None:
    exp_id = client.post("/v1/experiments", json=IRIS).json()["id"]
    run_experiment(exp_id, owner="test:1")
    got = client.get(f"/v1/experiments/{exp_id}").json()
    shown = cli.invoke(app, ["show", str(exp_id)])
    assert shown.exit_code == 0, shown.output
    out = words(shown.stdout)
    assert f"progress 3/20 epochs, stopped early at epoch 3 of 20: {got['stop_reason']}" in out
    assert f"best val_accuracy {got['best_value']:.4g} at epoch 1 (highest)" in out
    assert "stop reason" not in out  # said once, in the progress row
    listed = words(cli.invoke(app, ["ls"]).stdout)
    assert f"val_accuracy {got['best_value']:.4g} @ 1" in listed


def test_a_sweeps_tables_name_the_metric_they_rank_by() -> None:
    run = {"experiment_id": 7, "name": "t", "status": "succeeded", "stage": 1, "epochs_run": 3,
           "epochs": 3, "params": {"base_lr": 0.1}, "score": 0.25}  # fmt: skip
    sweep: Any = {"id": 3, "strategy": "grid", "status": "finished", "metric": "val_accuracy",
                  "mode": "max", "experiments": [run], "leaderboard": [{**run, "rank": 1}],
                  "best": {**run, "rank": 1}}  # fmt: skip
    console = Console(width=200, record=True)
    for part in sweep_tables(sweep):
        console.print(part)
    text = console.export_text()
    headers = [line for line in text.splitlines() if "┃" in line]  # the header rows
    assert len(headers) == 2 and all("┃ best val_accuracy ┃" in h for h in headers)


def test_a_sweeps_live_table_heads_its_score_by_the_metric() -> None:
    rows = [Row(7, "t", "succeeded", 3, 3, "0.25", stage=1, params="base_lr=0.1")]
    console = Console(width=200, record=True)
    console.print(_progress_table(View("sweep 3", rows, True, metric="val_loss")))
    assert "best val_loss" in console.export_text()

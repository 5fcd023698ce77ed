"""Bring your own model, end to end, as a user would: examples/plugin pip-installed where only a
worker sees it (its PYTHONPATH), never the API. The worker registers what it offers; the API
checks a spec against that and routes the run to it; the run trains, learns, and records the
package version; a worker with a tiny device budget (data streamed from host memory) gives the
same losses. On PostgreSQL + Redis + S3."""

from __future__ import annotations

import importlib.util
import re
import signal
from pathlib import Path
from typing import Any

import httpx
import pytest

from tests.support.stack import Stack, registered, stack_fixture, stop

pytestmark = [pytest.mark.integration, pytest.mark.postgres]

# Where the example plugin is also installed in the project's venv (as README's "Bring your own
# model" does), every worker offers it: the checks that tell workers apart are left out then.
IN_VENV = importlib.util.find_spec("glidepath_example") is not None

# One plain worker (no plugin): a plugin run must never land on it. On the production stack
# (PostgreSQL, Redis, S3), where workers on several machines carry different plugins; the
# embedded default trains plugins through the API in tests/api/test_plugins_api.py.
plugin_stack = stack_fixture(scope="module", workers=1, postgres_only=True)

SPEC: dict[str, Any] = {
    "name": "byom",
    "dataset": {"type": "shapes", "params": {"n": 2000, "size": 12, "noise": 0.3}},
    "model": {"type": "tiny_resnet", "params": {"width": 4, "blocks": 1}},
    "solver": {"type": "Adam"},
    "base_lr": 0.02,
    "scheduler": {"type": "StepLR", "params": {"step_size": 1, "gamma": 0.5}},
    "epochs": 3,
    "batch_size": 64,
}
PINNED = {"name": "tiny_resnet", "package": "glidepath-example-plugin", "version": "0.1.0"}


def claimed_by(stack: Stack, experiment_id: int) -> list[str]:
    """The workers whose log says they claimed the run."""
    return sorted(
        log.stem for log in stack.log_dir.glob("*.log")
        if re.search(rf"claimed .*experiment_id={experiment_id}\b", log.read_text())
    )  # fmt: skip


def train(stack: Stack, c: httpx.Client) -> tuple[dict[str, Any], list[dict[str, Any]]]:
    created = c.post("/v1/experiments", json=SPEC)
    assert created.status_code == 201, created.text
    final = stack.wait_final(created.json()["id"])
    assert final["status"] == "succeeded", final["error"] or stack.logs()
    rows = c.get(f"/v1/experiments/{final['id']}/metrics").json()["epochs"]
    return final, rows


def test_a_plugin_trains_through_the_service_and_streams_alike(
    plugin_stack: Stack, plugin_path: Path
) -> None:
    with plugin_stack.client() as c:
        # No worker offers the plugin yet: a 422 that says so, and nothing is stored.
        early = c.post("/v1/experiments", json=SPEC)
        if not IN_VENV:
            assert early.status_code == 422
            assert "no registered worker has a plugin installed" in early.text

        worker = plugin_stack.start_worker("plug", {"PYTHONPATH": str(plugin_path)})
        me = registered(c, worker.pid)
        assert me["plugins"]["models"]["tiny_resnet"]["version"] == "0.1.0"
        assert me["plugins"]["datasets"]["shapes"]["package"] == "glidepath-example-plugin"
        plain = [w for w in c.get("/v1/workers").json()["items"] if w["pid"] != worker.pid]
        assert plain and (IN_VENV or all(not w["plugins"]["models"] for w in plain))

        misspelt = c.post("/v1/experiments", json={**SPEC, "model": {
            "type": "tiny_resnet", "params": {"widht": 4}}})  # fmt: skip
        assert misspelt.status_code == 422
        assert misspelt.json()["detail"][0]["loc"] == ["body", "model", "params", "widht"]
        sneaky = c.post("/v1/experiments", json={**SPEC, "model": {"type": "os:system"}})
        assert sneaky.status_code == 422
        assert sneaky.json()["detail"][0]["loc"] == ["body", "model", "type"]

        final, rows = train(plugin_stack, c)
        if not IN_VENV:  # routed to the one worker that offers it
            assert claimed_by(plugin_stack, final["id"]) == ["plug"]
        assert final["plugins"] == {"model": PINNED, "dataset": {**PINNED, "name": "shapes"}}
        assert final["param_count"] == 36 + 8 + 2 * (144 + 8) + 15
        assert final["split_sizes"] == {"train": 1600, "val": 400, "test": 0}
        assert [r["lr"] for r in rows] == [0.02, 0.01, 0.005]  # StepLR, exactly
        assert rows[-1]["val_accuracy"] > 0.6 and rows[-1]["train_loss"] < rows[0]["train_loss"]

        # The same spec on a worker whose device budget (1 MB) is below the data (1.1 MB):
        # batches are gathered from host memory, in the same order, to the same losses.
        stop(worker, signal.SIGTERM)
        tiny = plugin_stack.start_worker(
            "tiny", {"PYTHONPATH": str(plugin_path), "GLIDEPATH_DEVICE_DATA_MB": "1"}
        )
        registered(c, tiny.pid)
        streamed, streamed_rows = train(plugin_stack, c)
        if not IN_VENV:
            assert claimed_by(plugin_stack, streamed["id"]) == ["tiny"]
        for key in ("train_loss", "val_loss", "val_accuracy", "lr"):
            assert [r[key] for r in streamed_rows] == [r[key] for r in rows], key

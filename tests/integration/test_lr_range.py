"""The LR range test end to end: POST → a real Celery worker process → points → polling → the
suggestion, which then trains digits well, while a much larger LR does not; progress is pollable
and a cancel keeps the points; a new attempt starts over and records the same trace. On the
embedded default and on PostgreSQL + Redis."""

from __future__ import annotations

import math
from typing import Any

import httpx
import pytest
import torch
from fastapi.testclient import TestClient

from service.training.range_suggest import skip_steps, smooth, suggest
from tests.support.stack import FINAL, Stack, wait_for

pytestmark = pytest.mark.integration

# `device: auto` runs on CUDA where there is one (the GPU machine), else on the CPU.
EXPECTED_DEVICE = "cuda" if torch.cuda.is_available() else "cpu"

SGD: dict[str, Any] = {
    "name": "digits-sgd", "dataset": "digits", "model": {"type": "mlp", "hidden": [64]},
    "solver": {"type": "SGD", "params": {"momentum": 0.9}}, "batch_size": 64, "seed": 0,
}  # fmt: skip
ADAM: dict[str, Any] = {**SGD, "name": "digits-adam", "solver": {"type": "Adam", "params": {}}}
RANGE = {"min_lr": 1e-5, "max_lr": 10.0, "steps": 100}
EPOCHS = 15


def wait_range(stack: Stack, c: httpx.Client, test_id: int, timeout: float = 120) -> dict[str, Any]:
    body: dict[str, Any] = {}

    def done() -> bool:
        nonlocal body
        # No point has step 10000 (the most steps a test has): a light poll, status only.
        body = c.get(f"/v1/lr-range-tests/{test_id}", params={"from_step": 10_000}).json()
        return body["status"] in FINAL

    wait_for(done, timeout, lambda: f"range test {test_id}: {body}\n{stack.logs()}")
    return dict(c.get(f"/v1/lr-range-tests/{test_id}").json())


def check_trace(body: dict[str, Any]) -> None:
    """The recorded trace is the ramp, its smoothed loss and its cut, recomputed here."""
    points, n = body["points"], body["steps_run"]
    assert [p["step"] for p in points] == list(range(n)) and 10 < n <= body["steps"]
    ratio = body["max_lr"] / body["min_lr"]
    want = [body["min_lr"] * ratio ** (i / (body["steps"] - 1)) for i in range(n)]
    assert [p["lr"] for p in points] == pytest.approx(want, rel=1e-9)  # exponential ramp
    losses = [math.nan if p["loss"] is None else p["loss"] for p in points]
    smoothed, stopped = smooth(losses, body["smoothing"], body["diverge_factor"], body["steps"])
    assert [p["smoothed_loss"] for p in points] == pytest.approx(smoothed, rel=1e-9)
    assert len(smoothed) == n  # cut exactly at the step that stopped it
    assert body["stopped"] == (stopped or f"completed all {body['steps']} steps")
    if body["stopped"].startswith("diverged"):
        best = min(s for s in smoothed[skip_steps(body["steps"]) :] if s is not None)
        assert smoothed[-1] is not None and smoothed[-1] > body["diverge_factor"] * best
    # The stored suggestion is the pure function's, on the stored points.
    found = suggest([p["lr"] for p in points], losses, body["steps"])
    assert body["suggested_lr"] == found.lr and body["rule"] == found.rule
    assert body["suggested_lr"] == min(body["steepest_lr"], body["min_loss_lr"] / 10)
    assert "steepest descent" in body["rule"] and "a tenth" in body["rule"]


def train(stack: Stack, c: httpx.Client, spec: dict[str, Any], lr: float) -> dict[str, Any]:
    r = c.post("/v1/experiments", json={**spec, "base_lr": lr, "epochs": EPOCHS})
    assert r.status_code == 201, r.text
    return r.json()


def outcome(stack: Stack, c: httpx.Client, exp_id: int) -> tuple[str, float]:
    final = stack.wait_final(exp_id)
    rows = c.get(f"/v1/experiments/{exp_id}/metrics").json()["epochs"]
    return final["status"], rows[-1]["val_accuracy"] if rows else 0.0


def watch_progress_then_cancel(stack: Stack, c: httpx.Client, test_id: int) -> None:
    """Points appear while the test runs, `from_step` returns only the newer ones, and a
    cancel stops it with its points kept."""
    seen: dict[str, Any] = {}

    def some_points() -> bool:
        nonlocal seen
        seen = c.get(f"/v1/lr-range-tests/{test_id}").json()
        return seen["status"] in FINAL or (seen["status"] == "running" and bool(seen["points"]))

    wait_for(some_points, 60, stack.logs)
    assert seen["status"] == "running", "the test ended before its points could be polled"
    assert seen["suggested_lr"] is None and seen["stopped"] is None and seen["worker"]
    assert 0 < seen["steps_run"] < seen["steps"]
    after = seen["next_from_step"]
    newer: dict[str, Any] = {}

    def more_points() -> bool:
        nonlocal newer
        newer = c.get(f"/v1/lr-range-tests/{test_id}", params={"from_step": after}).json()
        return bool(newer["points"]) or newer["status"] in FINAL

    wait_for(more_points, 30, stack.logs)
    assert newer["status"] == "running", "the test ended before a second write was seen"
    assert newer["points"][0]["step"] == after and newer["steps_run"] > seen["steps_run"]

    assert c.post(f"/v1/lr-range-tests/{test_id}/cancel").status_code == 200
    final = wait_range(stack, c, test_id)
    assert final["status"] == "cancelled" and final["stopped"] == "cancelled while running"
    assert final["suggested_lr"] is None
    n = final["steps_run"]
    assert [p["step"] for p in final["points"]] == list(range(n)) and n < final["steps"]


# The production stack only (the API tests run range tests on both backends in-process).
@pytest.mark.postgres
@pytest.mark.parametrize("stack", ["postgres"], indirect=True)
def test_range_tests_poll_cancel_and_suggest_an_lr_that_trains_digits_well(stack: Stack) -> None:
    # One stack for everything (starting one costs seconds). First a long, gentle ramp on a
    # wider model (seconds of work, no divergence, points written every 0.5 s): polled while it
    # runs, then cancelled; the two digits tests wait behind it on the one worker.
    slow = {**SGD, "model": {"type": "mlp", "hidden": [256, 256]}, "batch_size": 256}
    with stack.client() as c:
        ids = {}
        for name, spec, ramp in (
            ("slow", slow, {"min_lr": 1e-6, "max_lr": 1e-2, "steps": 10_000}),
            ("sgd", SGD, RANGE),
            ("adam", ADAM, RANGE),
        ):
            r = c.post("/v1/lr-range-tests", json={"spec": spec, **ramp})
            assert r.status_code == 201 and r.json()["status"] == "queued", r.text
            ids[name] = r.json()["id"]
        watch_progress_then_cancel(stack, c, ids["slow"])

        results = {name: wait_range(stack, c, ids[name]) for name in ("sgd", "adam")}
        for body in results.values():
            assert body["status"] == "succeeded", stack.logs()
            assert body["device"] == EXPECTED_DEVICE
            assert body["attempt"] == 1 and body["error"] is None
            check_trace(body)
        sgd_lr, adam_lr = results["sgd"]["suggested_lr"], results["adam"]["suggested_lr"]
        # Where digits trains well (measured on a grid, docs/lr-range-test.md): SGD+momentum
        # 0.01-0.3, Adam 1e-3-0.05; both diverge or stall from about 1.
        assert 0.01 <= sgd_lr <= 0.3 and 1e-3 <= adam_lr <= 0.05, (sgd_lr, adam_lr)

        runs = {
            "sgd": train(stack, c, SGD, sgd_lr),
            "adam": train(stack, c, ADAM, adam_lr),
            "sgd_100x": train(stack, c, SGD, 100 * sgd_lr),
        }
        got = {name: outcome(stack, c, run["id"]) for name, run in runs.items()}
    print(f"suggested: SGD {sgd_lr:.3g}, Adam {adam_lr:.3g}; after {EPOCHS} epochs: {got}")
    for name in ("sgd", "adam"):
        assert got[name][0] == "succeeded" and got[name][1] >= 0.9, (name, got)
    # 100× the suggestion: diverges, or ends far below it.
    assert got["sgd_100x"][0] == "diverged" or got["sgd_100x"][1] < got["sgd"][1] - 0.2, got


def test_a_new_attempt_starts_over_and_records_the_same_trace(client: TestClient) -> None:
    """A resume (a new attempt after a crash) drops the points the attempt before it left and
    records the trace again: identical, since the run is deterministic given the seed. A stale
    attempt's writes are fenced off."""
    from sqlalchemy import update

    from service.experiments.models import Experiment
    from service.kit.db import session_scope
    from service.lr_range.repository import RangeRepository
    from worker.runs.lifecycle import run_experiment
    from worker.runs.range_test import _write

    body = {"spec": {**SGD, "model": {"type": "mlp", "hidden": [32], "dropout": 0.2}},
            "min_lr": 1e-4, "max_lr": 10.0, "steps": 60}  # fmt: skip
    test_id = client.post("/v1/lr-range-tests", json=body).json()["id"]
    assert run_experiment(test_id, owner="test:1").status == "succeeded"
    first = client.get(f"/v1/lr-range-tests/{test_id}").json()
    assert first["attempt"] == 1 and first["status"] == "succeeded" and first["steps_run"] > 10

    # What a crashed attempt leaves behind: the run requeued (as the reaper does) and points that
    # differ from the real ones, some past where the new trace will end.
    with session_scope() as s:
        s.execute(update(Experiment).where(Experiment.id == test_id)
                  .values(status="queued", lease_owner=None, lease_expires_at=None))  # fmt: skip
        RangeRepository(s).write([{"experiment_id": test_id, "step": i, "lr": 1.0, "loss": 9.0,
                                   "smoothed_loss": 9.0} for i in (0, 5, 59, 200)])  # fmt: skip
    assert run_experiment(test_id, owner="test:2").status == "succeeded"
    second = client.get(f"/v1/lr-range-tests/{test_id}").json()
    assert second["attempt"] == 2
    assert second["points"] == first["points"]  # bit for bit: the same floats
    assert second["suggested_lr"] == first["suggested_lr"] and second["rule"] == first["rule"]

    # Attempt 1 is stale now: whatever it writes is refused.
    stale = [{"experiment_id": test_id, "step": 0, "lr": 1.0, "loss": 1.0, "smoothed_loss": 1.0}]
    with session_scope() as s:
        s.execute(update(Experiment).where(Experiment.id == test_id).values(status="running"))
    assert _write(test_id, 1, stale) is False
    assert client.get(f"/v1/lr-range-tests/{test_id}").json()["points"] == first["points"]

"""Faults with real processes: a worker killed with SIGKILL mid-run, a worker stopped with
SIGTERM, a duplicate task delivery, a cancel while running, a broker that lost its messages.
Each asserts that every experiment ends, that its epochs are contiguous with no duplicates, and
that its trace equals an uninterrupted twin's."""

from __future__ import annotations

import copy
import json
import signal
import statistics
import subprocess
import time
from pathlib import Path
from typing import Any

import httpx
import pytest

from tests.integration.conftest import FAST
from tests.support.backends import Backends, require
from tests.support.servers import PostgresServer, RedisServer
from tests.support.stack import Backend, Stack, start_stack, wait_for

pytestmark = pytest.mark.integration

# Tens of ms per epoch on a CPU: long enough to be killed mid-run, short enough for CI. Waits are
# measured in epochs (recorded rows), never in fixed sleeps. Dropout, Adam's state and plateau
# decisions all have to survive the resume for the traces to match.
SPEC: dict[str, Any] = {
    "dataset": "digits", "model": {"type": "mlp", "hidden": [128, 128], "dropout": 0.1},
    "solver": {"type": "Adam", "params": {}}, "base_lr": 0.002, "batch_size": 32,
    "scheduler": {"type": "ReduceLROnPlateau", "params": {"patience": 1, "factor": 0.5}},
    "epochs": 20, "checkpoint_every": 3, "seed": 3,
}  # fmt: skip


def trace(c: httpx.Client, exp_id: int) -> list[dict[str, Any]]:
    rows = c.get(f"/v1/experiments/{exp_id}/metrics", params={"limit": 10_000}).json()["epochs"]
    assert [r["epoch"] for r in rows] == list(range(1, len(rows) + 1)), "gaps or duplicates"
    return [{k: v for k, v in r.items() if k != "duration_s"} for r in rows]


def epoch_seconds(c: httpx.Client, exp_id: int) -> float:
    """The run's own pace: the median training time of the epochs recorded so far."""
    rows = c.get(f"/v1/experiments/{exp_id}/metrics", params={"limit": 10_000}).json()["epochs"]
    assert rows, "no epoch recorded yet"
    return float(statistics.median(r["duration_s"] for r in rows))


# An uninterrupted run's trace per (backend, spec), trained by the first test that asks: runs are
# deterministic given the spec (what these tests check), so the next tests compare against it
# instead of training the same 20 epochs again. Never an order dependency: any test trains it.
_TWINS: dict[tuple[str, str], list[dict[str, Any]]] = {}


def twin(stack: Stack, c: httpx.Client, spec: dict[str, Any]) -> list[dict[str, Any]]:
    key = (stack.backend.name, json.dumps(spec, sort_keys=True))
    if key not in _TWINS:
        exp_id = c.post("/v1/experiments", json={**spec, "name": "twin"}).json()["id"]
        assert stack.wait_final(exp_id)["status"] == "succeeded", stack.logs()
        _TWINS[key] = trace(c, exp_id)
    return copy.deepcopy(_TWINS[key])


def holder(stack: Stack, c: httpx.Client, exp_id: int, min_epochs: int, attempt: int = 1
           ) -> subprocess.Popen[bytes]:  # fmt: skip
    """Wait until attempt `attempt` (or later) runs past `min_epochs` on a live worker, then
    return that worker's process."""
    body: dict[str, Any] = {}
    alive = {p.pid: p for p in stack.procs.values() if p.poll() is None}

    def far_enough() -> bool:
        nonlocal body
        body = c.get(f"/v1/experiments/{exp_id}").json()
        pid = int(body["worker"].rsplit(":", 1)[1]) if body["worker"] else None
        return (body["status"] == "running" and body["attempt"] >= attempt
                and body["epochs_run"] >= min_epochs and pid in alive)  # fmt: skip

    wait_for(far_enough, 60, lambda: f"{body}\n{stack.logs()}")
    return alive[int(body["worker"].rsplit(":", 1)[1])]


def test_sigkill_mid_run_resumes_elsewhere_with_identical_trace(stack2: Stack) -> None:
    with stack2.client() as c:
        expected = twin(stack2, c, SPEC)
        exp_id = c.post("/v1/experiments", json=SPEC).json()["id"]
        victim = holder(stack2, c, exp_id, min_epochs=7)
        victim.kill()  # SIGKILL: no handler runs, the lease simply stops being renewed
        victim.wait()
        final = stack2.wait_final(exp_id)
        assert final["status"] == "succeeded", stack2.logs()
        assert final["attempt"] == 2  # claimed again after the lease expired
        assert trace(c, exp_id) == expected


def test_sigterm_hands_the_run_back_promptly(stack2: Stack) -> None:
    with stack2.client() as c:
        expected = twin(stack2, c, SPEC)
        exp_id = c.post("/v1/experiments", json=SPEC).json()["id"]
        victim = holder(stack2, c, exp_id, min_epochs=7)
        victim.send_signal(signal.SIGTERM)
        assert victim.wait(timeout=60) == 0
        final = stack2.wait_final(exp_id)
        assert final["status"] == "succeeded", stack2.logs()
        # Promptly, in epochs not seconds (a loaded machine stretches the worker's own exit):
        # the first attempt handed the run back before its end, and the second resumed from
        # a checkpoint of the first.
        first, second = final["attempts"]
        assert first["outcome"] == "handed_back"
        assert 0 < second["resumed_from_epoch"] < SPEC["epochs"], "it trained on to the end"
        assert trace(c, exp_id) == expected


def test_duplicate_delivery_never_trains_twice(stack2: Stack) -> None:
    from service.config import settings
    from worker import celery_app as module

    saved = settings.broker_url, settings.data_dir
    settings.broker_url, settings.data_dir = stack2.backend.broker_url, stack2.backend.data_dir
    try:
        producer = module.make_celery()  # the stack's broker, as the API process sees it
    finally:
        settings.broker_url, settings.data_dir = saved
    with stack2.client() as c:
        expected = twin(stack2, c, SPEC)
        exp_id = c.post("/v1/experiments", json=SPEC).json()["id"]
        for _ in range(3):  # the same doorbell rung again while the first delivery trains
            producer.send_task("glidepath.run_experiment", args=[exp_id], queue="auto")
        final = stack2.wait_final(exp_id)
        assert final["status"] == "succeeded"
        assert final["attempt"] == 1  # the duplicates found it held and did nothing
        assert trace(c, exp_id) == expected
    producer.close()


def test_cancel_while_running_stops_at_a_batch_boundary(stack2: Stack) -> None:
    with stack2.client() as c:
        exp_id = c.post("/v1/experiments", json={**SPEC, "epochs": 2000}).json()["id"]
        holder(stack2, c, exp_id, min_epochs=3)
        assert c.post(f"/v1/experiments/{exp_id}/cancel").json()["cancel_requested"] is True
        final = stack2.wait_final(exp_id, timeout=30)
        assert final["status"] == "cancelled"
        rows = trace(c, exp_id)
        assert len(rows) == final["epochs_run"] >= 3  # what it trained is kept
        # Long enough for several more epochs at the run's own pace (at least 1.5 s).
        time.sleep(max(1.5, 10 * epoch_seconds(c, exp_id)))
        assert len(trace(c, exp_id)) == len(rows)  # and nothing is written after


@pytest.mark.postgres
def test_redis_restart_with_experiments_queued_loses_nothing(backends: Backends,
                                                             tmp_path: Path) -> None:  # fmt: skip
    """A private redis-server (memory only) restarted: every queued message is lost."""
    require(RedisServer.available(), "redis-server")
    with RedisServer(tmp_path) as redis, \
            backends.backend("postgres", tmp_path, broker_url=redis.url(0)) as backend:  # fmt: skip
        backend.overrides.update(FAST)
        with start_stack(backend, tmp_path / "logs", workers=0) as stack, stack.client() as c:
            ids = [c.post("/v1/experiments", json={**SPEC, "epochs": 3, "seed": i}).json()["id"]
                   for i in range(4)]  # fmt: skip
            redis.restart()  # the four messages were sent; no worker took them; now they are gone
            stack.start_worker("late")
            for exp_id in ids:
                assert stack.wait_final(exp_id, timeout=90)["status"] == "succeeded", stack.logs()
                assert len(trace(c, exp_id)) == 3


# The production stack only: the reaper's count is the database's (tests/db/test_fences.py has
# it on both backends); this is the whole path with real processes.
@pytest.mark.postgres
@pytest.mark.parametrize("fault_stack", ["postgres"], indirect=True)
def test_worker_lost_too_often_ends_failed_with_the_reason(stack2: Stack) -> None:
    """GLIDEPATH_MAX_ATTEMPTS (3 on this stack) bounds the retries of a run that keeps losing
    its worker."""
    with stack2.client() as c:
        exp_id = c.post("/v1/experiments", json={**SPEC, "epochs": 2000}).json()["id"]
        for attempt in (1, 2, 3):
            victim = holder(stack2, c, exp_id, min_epochs=1, attempt=attempt)
            victim.kill()
            victim.wait()
            stack2.start_worker(f"spare{attempt}")
        final = stack2.wait_final(exp_id, timeout=60)
    assert final["status"] == "failed" and final["attempt"] == 3
    assert "lost 3 times" in final["error"]


@pytest.mark.postgres
def test_postgres_restart_mid_run_loses_nothing_and_the_api_says_503(
    backends: Backends, tmp_path: Path
) -> None:
    """A private PostgreSQL cluster (tests/support/servers.py) stopped mid-run and started again:
    the machine's shared server is never touched."""
    require(PostgresServer.available(), "PostgreSQL's initdb and postgres binaries")
    with PostgresServer() as pg, backends.redis_db() as broker:
        backend = Backend("postgres", pg.url(), broker, tmp_path / "data",
                          {"GLIDEPATH_LEASE_SECONDS": "10"})  # fmt: skip
        with start_stack(backend, tmp_path / "logs", workers=1) as stack, stack.client() as c:
            expected = twin(stack, c, SPEC)
            exp_id = c.post("/v1/experiments", json=SPEC).json()["id"]
            holder(stack, c, exp_id, min_epochs=5)
            statuses = set()
            pg.stop()
            try:
                for _ in range(10):  # the database is down: clients are told to retry, never 500
                    r = c.get(f"/v1/experiments/{exp_id}")
                    statuses.add(r.status_code)
                    if r.status_code == 503:
                        assert r.headers["Retry-After"]
                        assert r.json()["detail"][0]["type"] == "unavailable"
                    time.sleep(0.2)
                assert c.get("/readyz").status_code == 503
            finally:
                pg.start()
            assert statuses == {503}
            final = stack.wait_final(exp_id, timeout=120)  # the API recovered without a restart
            assert final["status"] == "succeeded", stack.logs()
            assert trace(c, exp_id) == expected
            assert c.get("/readyz").status_code == 200

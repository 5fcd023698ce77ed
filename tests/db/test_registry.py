"""The worker registry on each backend: a worker's row from registration to its stop, the state
the API shows (alive, lost, stopped), what housekeeping forgets, and which manifest wins when
several workers offer the same plugin."""

from __future__ import annotations

from datetime import timedelta
from typing import Any

from fastapi.testclient import TestClient
from sqlalchemy import update

from service.kit.db import session_scope
from service.kit.time import utcnow
from service.workers import service as workers
from service.workers.models import WorkerRow
from service.workers.repository import WorkerRepository
from worker.runs import registry


def manifest(version: str, **models: Any) -> dict[str, Any]:
    entry = {"params": [], "var_keyword": False, "package": "acme", "version": version}
    return {"models": {name: entry for name in models}, "datasets": {}, "errors": {}}


def add(worker_id: str, plugins: dict[str, Any], seen_ago: timedelta = timedelta()) -> None:
    with session_scope() as session:
        WorkerRepository(session).register(
            worker_id, host="h", pid=1, queues=["auto"], devices=[], plugins=plugins
        )
        session.execute(update(WorkerRow).where(WorkerRow.id == worker_id)
                        .values(last_seen=utcnow() - seen_ago))  # fmt: skip


def states(client: TestClient) -> dict[str, tuple[str, int | None]]:
    return {
        w["id"]: (w["state"], w["current_run"]) for w in client.get("/v1/workers").json()["items"]
    }


def test_a_worker_registers_beats_holds_a_run_and_stops(client: TestClient) -> None:
    reg = registry.Registration(["auto", "cpu"])
    reg.register()
    assert states(client) == {reg.id: ("alive", None)}
    registry._registration = reg  # as registry.start() does, without the heartbeat thread
    try:
        registry.holding(42)
        assert states(client) == {reg.id: ("alive", 42)}
        registry.holding(None)
        assert states(client) == {reg.id: ("alive", None)}
    finally:
        registry._registration = None
    reg.close()
    assert states(client) == {reg.id: ("stopped", None)}


def test_silence_is_lost_and_a_day_of_it_is_forgotten(client: TestClient) -> None:
    beats = workers.HEARTBEAT_SECONDS
    add("fresh:1", manifest("1"))
    add("quiet:2", manifest("1"), timedelta(seconds=beats * workers.LOST_AFTER + 5))
    add("gone:3", manifest("1"), workers.FORGET_AFTER + timedelta(minutes=1))
    assert states(client) == {"fresh:1": ("alive", None), "quiet:2": ("lost", None),
                              "gone:3": ("lost", None)}  # fmt: skip
    assert workers.forget_stale() == 1
    assert set(states(client)) == {"fresh:1", "quiet:2"}


def test_a_forgotten_worker_registers_again_on_its_next_beat(client: TestClient) -> None:
    reg = registry.Registration(["auto"])
    reg.register()
    with session_scope() as session:
        session.query(WorkerRow).delete()
    reg.beat()
    assert states(client) == {reg.id: ("alive", None)}


def test_the_newest_manifest_of_a_plugin_is_the_one_checked(client: TestClient) -> None:
    add("old:1", manifest("1.0", net={}), timedelta(minutes=5))
    add("new:2", manifest("2.0", net={}, other={}))
    with session_scope() as session:
        offer = workers.offer(session)
    assert offer.models["net"]["version"] == "2.0"
    assert offer.listing("models") == "net (acme 2.0), other (acme 2.0)"

"""The metrics pages' cache (service/experiments/polls.py), on each backend, in-process: many
polls cost one read; a page cut from the cache is the page the database gives; this process's
writes are seen by the next poll; another process's (written here on a connection of its own,
with no session and so no commit hook; notified on PostgreSQL as a writer does) as soon as it
is known (at once on SQLite: every poll asks `PRAGMA data_version`);
a resumed run's rewritten rows replace the cut ones."""

from __future__ import annotations

import time
from typing import Any

from fastapi.testclient import TestClient
from sqlalchemy import delete, func, insert, select

from service.experiments import polls
from service.experiments.models import EpochRow
from service.kit.db import get_engine, session_scope
from service.kit.notify import CHANNEL, announce
from tests.api.test_experiments_api import SPEC
from tests.support.outbox import marked_sent
from tests.support.stack import wait_for


def caching(client: TestClient) -> polls.PollCache:
    cache: polls.PollCache = client.app.state.polls  # type: ignore[attr-defined]
    deadline = time.monotonic() + 10  # PostgreSQL: the listener's LISTEN, just started
    while not cache.caching:
        assert time.monotonic() < deadline, "the cache never went live"
        time.sleep(0.02)
    return cache


def created(client: TestClient) -> int:
    """A new run, once the outbox has marked its message sent: that happens just after the
    response, in a commit of its own, and on SQLite every commit is a change to every cached
    run. From then on nothing changes but what a test does."""
    exp_id = int(client.post("/v1/experiments", json=SPEC).json()["id"])
    wait_for(lambda: marked_sent(exp_id), 5)
    return exp_id


def row(exp_id: int, epoch: int, attempt: int = 1, lr: float = 0.1) -> dict[str, Any]:
    return {"experiment_id": exp_id, "epoch": epoch, "attempt": attempt, "lr": lr,
            "train_loss": 1.0 / epoch, "val_loss": 0.5, "duration_s": 0.01,
            "state": {}}  # fmt: skip


def write_here(exp_id: int, rows: list[dict[str, Any]]) -> None:
    """As this API process writes: a session, announced."""
    with session_scope() as session:
        session.execute(insert(EpochRow), rows)
        announce(session, [exp_id])


def write_elsewhere(exp_id: int, rows: list[dict[str, Any]], cut_after: int | None = None) -> None:
    """As a worker process writes: no session of this process (no commit hook), a notification
    on PostgreSQL; `cut_after`: first delete the rows after it (a resumed run's first write)."""
    with get_engine().begin() as conn:
        if cut_after is not None:
            conn.execute(
                delete(EpochRow).where(EpochRow.experiment_id == exp_id, EpochRow.epoch > cut_after)
            )
        if rows:
            conn.execute(insert(EpochRow), rows)
        if conn.dialect.name == "postgresql":
            conn.execute(select(func.pg_notify(CHANNEL, str(exp_id))))


def page(client: TestClient, exp_id: int, after: int = 0, limit: int = 1000) -> dict[str, Any]:
    r = client.get(f"/v1/experiments/{exp_id}/metrics?after_epoch={after}&limit={limit}")
    assert r.status_code == 200, r.text
    return r.json()


def from_database(exp_id: int, after: int = 0, limit: int = 1000) -> dict[str, Any]:
    import json

    return json.loads(polls.read_page(exp_id, after, limit))


def test_many_polls_cost_one_read_and_answer_what_the_database_does(
    client: TestClient, statements: list[str]
) -> None:
    caching(client)
    exp_id = created(client)
    write_here(exp_id, [row(exp_id, e) for e in range(1, 8)])
    page(client, exp_id)  # the read
    statements.clear()
    for after, limit in [(0, 1000), (0, 3), (2, 2), (5, 1000), (7, 10), (99, 5)] * 5:
        assert page(client, exp_id, after, limit) == from_database(exp_id, after, limit)
        statements.clear()  # from_database's own read
    assert statements == []


def test_dashboards_opening_a_long_run_share_one_read_of_its_history(
    client: TestClient, statements: list[str]
) -> None:
    """A dashboard opening a run pages through its whole history from cursor 0. Many of them at
    once on a 3,000-epoch run: one read for all (it used to be a 1,000-row read per page per
    dashboard, seconds of the API's CPU), the same pages as the database's; a new epoch then
    costs one small read."""
    caching(client)
    exp_id = created(client)
    write_here(exp_id, [row(exp_id, e) for e in range(1, 3001)])
    expected = [from_database(exp_id, after) for after in (0, 1000, 2000)]
    statements.clear()
    for _ in range(20):  # 20 dashboards, each paging from the start
        assert [page(client, exp_id, after) for after in (0, 1000, 2000)] == expected
    reads = [s for s in statements if "epoch_metrics" in s]
    assert len(reads) == 1, reads
    write_elsewhere(exp_id, [row(exp_id, 3001)])
    statements.clear()

    def new_epoch() -> list[int]:
        return [e["epoch"] for e in page(client, exp_id, 3000)["epochs"]]

    # On PostgreSQL the change arrives with the listener's notification, a moment later; until
    # then polls are answered from the cache, without a read.
    wait_for(lambda: new_epoch() == [3001], 5)
    for _ in range(20):
        assert new_epoch() == [3001]
    reads = [s for s in statements if "epoch_metrics" in s]
    assert len(reads) == 1, reads


def test_a_write_of_this_process_is_in_the_next_poll(client: TestClient) -> None:
    caching(client)
    exp_id = created(client)
    write_here(exp_id, [row(exp_id, 1)])
    assert page(client, exp_id)["next_after_epoch"] == 1
    write_here(exp_id, [row(exp_id, 2)])
    assert [e["epoch"] for e in page(client, exp_id, 1)["epochs"]] == [2]
    assert client.post(f"/v1/experiments/{exp_id}/cancel").status_code == 200
    assert page(client, exp_id, 2)["status"] == "cancelled"


def test_another_process_write_is_seen_soon(client: TestClient) -> None:
    caching(client)
    exp_id = created(client)
    write_here(exp_id, [row(exp_id, 1)])
    assert page(client, exp_id)["next_after_epoch"] == 1
    write_elsewhere(exp_id, [row(exp_id, 2), row(exp_id, 3)])
    if get_engine().dialect.name == "sqlite":  # no notification to wait for
        assert [e["epoch"] for e in page(client, exp_id, 1)["epochs"]] == [2, 3]
    written = time.monotonic()
    while True:
        got = page(client, exp_id, 1)
        if got["epochs"]:
            break
        assert time.monotonic() - written < 2.0, "the new rows never came"
        time.sleep(0.01)
    # Both rows came together (one commit), and the page is the database's.
    assert [e["epoch"] for e in got["epochs"]] == [2, 3]
    assert got == from_database(exp_id, 1)


def test_a_resumed_runs_rewritten_rows_replace_the_cut_ones(client: TestClient) -> None:
    caching(client)
    exp_id = created(client)
    write_elsewhere(exp_id, [row(exp_id, e) for e in range(1, 9)])
    deadline = time.monotonic() + 5
    while page(client, exp_id)["next_after_epoch"] != 8:
        assert time.monotonic() < deadline
        time.sleep(0.01)
    # Attempt 2 resumes from epoch 5: rows 6-8 cut, then written again with another LR.
    write_elsewhere(exp_id, [], cut_after=5)
    deadline = time.monotonic() + 5
    while page(client, exp_id, 5)["epochs"]:  # the cut rows go (the database has none)
        assert time.monotonic() < deadline, page(client, exp_id, 5)
        time.sleep(0.01)
    assert page(client, exp_id) == from_database(exp_id)
    write_elsewhere(exp_id, [row(exp_id, e, attempt=2, lr=0.01) for e in (6, 7, 8, 9)])
    deadline = time.monotonic() + 5
    while [e["lr"] for e in page(client, exp_id, 5)["epochs"]] != [0.01] * 4:
        assert time.monotonic() < deadline, page(client, exp_id, 5)
        time.sleep(0.01)
    assert page(client, exp_id) == from_database(exp_id)
    assert page(client, exp_id, 5, 2) == from_database(exp_id, 5, 2)


def test_a_runs_detail_is_read_once_per_change_and_its_own_writes_at_once(
    client: TestClient, statements: list[str]
) -> None:
    caching(client)
    exp_id = created(client)
    first = client.get(f"/v1/experiments/{exp_id}").json()
    statements.clear()
    for _ in range(20):
        assert client.get(f"/v1/experiments/{exp_id}").json() == first
    assert statements == []
    assert client.post(f"/v1/experiments/{exp_id}/cancel").status_code == 200
    assert client.get(f"/v1/experiments/{exp_id}").json()["status"] == "cancelled"


def test_a_runs_detail_follows_another_process_soon(client: TestClient) -> None:
    from sqlalchemy import update

    from service.experiments.models import Experiment

    caching(client)
    exp_id = created(client)
    assert client.get(f"/v1/experiments/{exp_id}").json()["epochs_run"] == 0
    with get_engine().begin() as conn:  # as a worker's epoch write changes the run
        conn.execute(update(Experiment).where(Experiment.id == exp_id).values(epochs_run=3))
        if conn.dialect.name == "postgresql":
            conn.execute(select(func.pg_notify(CHANNEL, str(exp_id))))
    written = time.monotonic()
    while client.get(f"/v1/experiments/{exp_id}").json()["epochs_run"] != 3:
        assert time.monotonic() - written < 2.0, "the change never came"
        time.sleep(0.005)
    with get_engine().begin() as conn:
        conn.execute(delete(Experiment).where(Experiment.id == exp_id))
        if conn.dialect.name == "postgresql":
            conn.execute(select(func.pg_notify(CHANNEL, str(exp_id))))
    deadline = time.monotonic() + 2.0
    while client.get(f"/v1/experiments/{exp_id}").status_code != 404:
        assert time.monotonic() < deadline, "a deleted run was still served"
        time.sleep(0.005)

"""Live events over Server-Sent Events, in-process on both databases: a finished run replayed,
a resume by Last-Event-ID, a live run followed while a worker's writes land (its epochs rewritten
after a resume from an earlier checkpoint sent again), one read of the tables per epoch whatever
the number of viewers, many runs of a batch, and the errors.

The writes are the worker's own repository calls (claim, the fenced epoch write, the cut back to
a checkpoint, finish), so on PostgreSQL the listener hears them by LISTEN/NOTIFY; embedded, by
its poll."""

from __future__ import annotations

import time
from collections.abc import Iterator
from contextlib import ExitStack
from typing import Any

import pytest
from fastapi.testclient import TestClient

from service.client import Client
from service.client.sse import Event, parse
from service.config import settings
from service.sweeps.service import advance_running
from tests.support.fake_worker import Worker

SPEC: dict[str, Any] = {
    "dataset": "digits",
    "model": {"type": "mlp", "hidden": [8]},
    "solver": {"type": "SGD"},
    "base_lr": 0.1,
    "epochs": 6,
}


@pytest.fixture(autouse=True)
def _quick(monkeypatch: pytest.MonkeyPatch) -> None:
    # A keep-alive every 0.2 s lets a reader notice a stream that stopped sending (Stream.next's
    # deadline); the embedded listener looks at the database every 20 ms.
    monkeypatch.setattr(settings, "events_keepalive_s", 0.2)
    monkeypatch.setattr(settings, "events_poll_s", 0.02)


class Stream:
    """A live event stream read event by event, failing (not hanging) when nothing comes."""

    def __init__(self, lines: Iterator[str]) -> None:
        self.events = parse(lines)
        self.keepalives = 0

    def next(self, timeout: float = 10.0) -> Event:
        deadline = time.monotonic() + timeout
        for event in self.events:
            if event is not None:
                return event
            self.keepalives += 1
            assert time.monotonic() < deadline, "no event within the deadline"
        raise AssertionError("the stream ended")

    def ended(self) -> bool:
        return next(self.events, "end") == "end"


def submit(client: TestClient, **spec: Any) -> int:
    r = client.post("/v1/experiments", json={**SPEC, **spec})
    assert r.status_code == 201, r.text
    return int(r.json()["id"])


def read_all(client: TestClient, path: str, **headers: str) -> list[Event]:
    r = client.get(path, headers=headers)
    assert r.status_code == 200, r.text
    assert r.headers["content-type"].startswith("text/event-stream")
    return [e for e in parse(r.text.splitlines()) if e is not None]


def test_a_finished_run_replays_every_epoch_once_then_its_status_then_ends(
    client: TestClient,
) -> None:
    run = submit(client)
    w = Worker(run)
    w.claim()
    w.write(1, 2)
    w.write(3, 4, decision_at=3)
    w.write(5)
    w.finish()
    events = read_all(client, f"/v1/experiments/{run}/events")
    assert [(e.event, e.id) for e in events] == [
        ("epoch", "1"), ("epoch", "2"), ("epoch", "3"), ("decision", "3"), ("epoch", "4"),
        ("epoch", "5"), ("status", "5"),
    ]  # fmt: skip
    # The rows and decisions exactly as the polling API gives them.
    metrics = client.get(f"/v1/experiments/{run}/metrics").json()["epochs"]
    assert [e.json() for e in events if e.event == "epoch"] == metrics
    decisions = client.get(f"/v1/experiments/{run}/decisions").json()["decisions"]
    assert [e.json() for e in events if e.event == "decision"] == decisions
    status = events[-1].json()
    assert status["status"] == "succeeded" and status["epochs_run"] == 5
    assert status["epochs"] == 6 and status["experiment_id"] == run and status["attempt"] == 1


def test_last_event_id_or_after_epoch_resumes_without_gaps_or_repeats(client: TestClient) -> None:
    run = submit(client)
    w = Worker(run)
    w.claim()
    w.write(1, 2, 3, 4, 5, 6)
    w.finish()
    path = f"/v1/experiments/{run}/events"

    def epochs(events: list[Event]) -> list[int]:
        return [e.json()["epoch"] for e in events if e.event == "epoch"]

    assert epochs(read_all(client, path, **{"Last-Event-ID": "4"})) == [5, 6]
    assert epochs(read_all(client, f"{path}?after_epoch=2")) == [3, 4, 5, 6]
    # The header is what a reconnecting client sends: it wins over the URL's first position.
    assert epochs(read_all(client, f"{path}?after_epoch=2", **{"Last-Event-ID": "5"})) == [6]
    last = read_all(client, path, **{"Last-Event-ID": "6"})
    assert [e.event for e in last] == ["status"]


def test_a_live_run_followed_to_its_end_with_rewritten_epochs_sent_again(
    client: TestClient,
) -> None:
    run = submit(client)
    w = Worker(run)
    with client.stream("GET", f"/v1/experiments/{run}/events") as r:
        assert r.status_code == 200
        s = Stream(r.iter_lines())
        assert s.next().json()["status"] == "queued"
        w.claim()
        running = s.next().json()
        assert (running["status"], running["attempt"]) == ("running", 1)
        w.write(1, 2)
        w.write(3, decision_at=3)
        got = [s.next() for _ in range(4)]
        assert [(e.event, e.id) for e in got] == [
            ("epoch", "1"), ("epoch", "2"), ("epoch", "3"), ("decision", "3")
        ]  # fmt: skip
        w.write(4)
        w.write(5)
        assert [s.next().id for _ in range(2)] == ["4", "5"]
        # A worker resumes from the checkpoint at epoch 3: epochs 4 and 5 are written again.
        w.hand_back_and_resume(3)
        # Running again under attempt 2 (the `queued` between may not be seen: each read sends
        # the status it finds, and both changes can land between two reads).
        status = s.next().json()
        if status["status"] == "queued":
            status = s.next().json()
        assert (status["status"], status["attempt"]) == ("running", 2)
        w.write(4)
        w.write(5, 6)
        rewritten = [s.next() for _ in range(3)]
        assert [(e.event, e.id) for e in rewritten] == [("epoch", "4"), ("epoch", "5"),
                                                        ("epoch", "6")]  # fmt: skip
        # The rows now stored (attempt 2's val_loss is 1 higher), not the ones they replaced.
        stored = client.get(f"/v1/experiments/{run}/metrics").json()["epochs"]
        assert [e.json() for e in rewritten] == stored[3:]
        time.sleep(0.5)  # quiet: comment lines keep the connection open
        w.finish()
        final = s.next()
        assert final.event == "status" and final.json()["status"] == "succeeded"
        assert s.keepalives >= 1
        assert s.ended()


def test_many_viewers_cost_one_read_per_epoch(client: TestClient) -> None:
    run = submit(client)
    w = Worker(run)
    w.claim()
    listener = client.app.state.events  # type: ignore[attr-defined]
    viewers = 12
    with ExitStack() as stack:
        streams = []
        for _ in range(viewers):
            r = stack.enter_context(client.stream("GET", f"/v1/experiments/{run}/events"))
            streams.append(Stream(r.iter_lines()))
            assert streams[-1].next().json()["status"] == "running"
        reads_before = listener.stats.reads
        for epoch in range(1, 5):
            w.write(epoch)
            for s in streams:
                e = s.next()
                assert (e.event, e.id) == ("epoch", str(epoch))
        w.finish()
        for s in streams:
            assert s.next().json()["status"] == "succeeded" and s.ended()
    reads = listener.stats.reads - reads_before
    # One read per write and one for the status (a doorbell may find two commits at once, and
    # embedded a heartbeat of another process may ring it): never one per viewer.
    assert 1 <= reads <= 5 + 2, reads


def test_a_batch_streams_each_runs_status_and_progress_then_ends(client: TestClient) -> None:
    r = client.post("/v1/batches", json={"experiments": [SPEC, {**SPEC, "base_lr": 0.2}]})
    assert r.status_code == 201, r.text
    batch, ids = r.json()["batch_id"], r.json()["ids"]
    with client.stream("GET", "/v1/events", params={"batch_id": batch}) as resp:
        assert resp.status_code == 200
        s = Stream(resp.iter_lines())
        first = [s.next().json() for _ in ids]
        assert sorted((x["experiment_id"], x["status"]) for x in first) == [
            (i, "queued") for i in sorted(ids)
        ]
        a, b = Worker(ids[0]), Worker(ids[1])
        a.claim()
        a.write(1)
        seen = s.next().json()
        while seen["epochs_run"] != 1:  # the claim's own event may come first
            seen = s.next().json()
        assert seen["experiment_id"] == ids[0] and seen["status"] == "running"
        a.finish()
        b.claim()
        b.finish("failed")
        events = []
        while True:
            e = s.next()
            events.append(e)
            if e.event == "end":
                break
        assert events[-1].json() == {"runs": 2, "counts": {"succeeded": 1, "failed": 1}}
        finals = {e.json()["experiment_id"]: e.json()["status"] for e in events[:-1]}
        assert finals[ids[0]] == "succeeded" and finals[ids[1]] == "failed"
        assert s.ended()
    # Replayed once it is over: each run's status, then the end.
    replay = read_all(client, f"/v1/events?batch_id={batch}")
    assert [e.event for e in replay] == ["status", "status", "end"]


def test_unknown_runs_groups_and_bad_ids_are_errors_in_the_one_shape(client: TestClient) -> None:
    for path, loc in [
        ("/v1/experiments/999999/events", ["path", "experiment_id"]),
        ("/v1/events?sweep_id=999999", ["query", "sweep_id"]),
        ("/v1/events?batch_id=nope", ["query", "batch_id"]),
    ]:
        r = client.get(path)
        assert r.status_code == 404, path
        assert r.json()["detail"][0]["loc"] == loc
    run = submit(client)
    for headers, query in [({"Last-Event-ID": "x1"}, ""), ({}, "?after_epoch=-1"),
                           ({"Last-Event-ID": str(2**40)}, "")]:  # fmt: skip
        r = client.get(f"/v1/experiments/{run}/events{query}", headers=headers)
        assert r.status_code == 422 and set(r.json()["detail"][0]) >= {"loc", "msg", "type"}
    r = client.get("/v1/events?sweep_id=1&batch_id=x")
    assert r.status_code == 422


def finish(*ids: int, status: str = "succeeded") -> None:
    for i in ids:
        w = Worker(i)
        w.claim()
        w.finish(status)


def quiet(s: Stream, keepalives: int = 3) -> None:
    """Only keep-alive comments come, `keepalives` of them: the stream is open and says nothing."""
    start = s.keepalives
    for event in s.events:
        assert event is None, f"{event} came on a stream that should stay quiet"
        s.keepalives += 1
        if s.keepalives - start >= keepalives:
            return
    raise AssertionError("the stream ended")


def test_a_batch_whose_runs_were_all_deleted_ends_its_stream(client: TestClient) -> None:
    created = client.post("/v1/batches", json={"experiments": [SPEC, SPEC]}).json()
    batch, ids = created["batch_id"], created["ids"]
    finish(*ids)
    for i in ids:
        assert client.delete(f"/v1/experiments/{i}").status_code == 204
    with client.stream("GET", "/v1/events", params={"batch_id": batch}) as resp:
        s = Stream(resp.iter_lines())
        end = s.next()
        assert end.event == "end" and end.json() == {"runs": 0, "counts": {}}
        assert s.ended()
    # The client's wait follows that stream to its end, then reads the batch.
    got = Client(http=client).wait_batch(batch, timeout=10)
    assert got["status"] == "finished" and got["ids"] == [] and got["size"] == 2


def test_a_run_deleted_while_its_batch_is_followed_neither_holds_it_open_nor_counts(
    client: TestClient,
) -> None:
    created = client.post("/v1/batches", json={"experiments": [SPEC, SPEC, SPEC]}).json()
    batch, ids = created["batch_id"], created["ids"]
    finish(ids[0], ids[1])
    with client.stream("GET", "/v1/events", params={"batch_id": batch}) as resp:
        s = Stream(resp.iter_lines())
        assert sorted(s.next().json()["experiment_id"] for _ in ids) == ids
        assert client.delete(f"/v1/experiments/{ids[0]}").status_code == 204
        finish(ids[2], status="failed")
        e = s.next()
        while e.event != "end":
            e = s.next()
        assert e.json() == {"runs": 2, "counts": {"succeeded": 1, "failed": 1}}


def test_an_ended_sweep_whose_runs_were_all_deleted_ends_its_stream(client: TestClient) -> None:
    body = {"base": SPEC, "strategy": "grid", "parameters": {"base_lr": [0.1, 0.01]}}
    created = client.post("/v1/sweeps", json=body).json()
    sweep, ids = created["sweep_id"], created["ids"]
    finish(*ids)  # as the worker's calls, without moving the sweep on: it is still running
    for i in ids:
        assert client.delete(f"/v1/experiments/{i}").status_code == 204
    assert client.get(f"/v1/sweeps/{sweep}").json()["status"] == "running"
    with client.stream("GET", "/v1/events", params={"sweep_id": sweep}) as resp:
        s = Stream(resp.iter_lines())
        # A running sweep with no run may be about to create its next stage: not over yet.
        quiet(s)
        assert advance_running() == 1  # what the worker does after a run ends: it finishes
        end = s.next()
        assert end.event == "end" and end.json() == {"runs": 0, "counts": {}}
        assert s.ended()
    got = Client(http=client).wait_sweep(sweep, timeout=10)
    assert got["status"] == "finished" and got["experiments"] == []


def test_an_open_stream_ends_once_its_token_is_revoked(client: TestClient) -> None:
    """A revoked token is refused within about a second (docs/access.md), its streams already
    open too, quiet or not: each ends, and the reconnect is a 401 saying why. Another token's
    stream goes on."""

    def token(name: str, role: str, headers: dict[str, str] | None = None) -> dict[str, str]:
        r = client.post("/v1/tokens", json={"name": name, "role": role}, headers=headers or {})
        assert r.status_code == 201, r.text
        return {"Authorization": f"Bearer {r.json()['token']}"}

    run = submit(client)
    admin = token("root", "admin")  # the first token: the API is closed from now on
    Worker(run).claim()
    for path, name in [(f"/v1/experiments/{run}/events", "viewer"), ("/v1/events", "lister")]:
        reader = token(name, "read", admin)
        with client.stream("GET", path, headers=reader) as resp, \
             client.stream("GET", path, headers=admin) as other:  # fmt: skip
            s, kept = Stream(resp.iter_lines()), Stream(other.iter_lines())
            assert s.next().event == "status" and kept.next().event == "status"
            assert client.delete(f"/v1/tokens/{name}", headers=admin).status_code == 200
            revoked = time.monotonic()
            assert all(e is None for e in s.events), "only keep-alives until the stream ended"
            assert time.monotonic() - revoked < 5, "the revoked token's stream ran on"
            quiet(kept, 2)  # the admin's stream is still open
        r = client.get(path, headers=reader)
        assert r.status_code == 401 and "revoked" in r.json()["detail"][0]["msg"], r.text

"""Following runs over their event stream from Python and the CLI: `Client.events` takes a dropped
stream up again from the last id (scripted transport), and `glidepath watch` (in-process, both
databases) follows a live run through its stream, a rewritten epoch shown again, to the end."""

from __future__ import annotations

import json
import threading
import time
from collections.abc import Callable
from typing import Any

import httpx
import pytest
from fastapi.testclient import TestClient
from typer.testing import CliRunner

from service.cli import app
from service.client import ApiError, Client
from service.config import settings
from tests.api.test_events_api import SPEC
from tests.support.fake_worker import Worker


def sse(*events: tuple[str, int | None, dict[str, Any]]) -> bytes:
    out = b""
    for name, eid, data in events:
        out += f"event: {name}\n".encode()
        if eid is not None:
            out += f"id: {eid}\n".encode()
        out += f"data: {json.dumps(data)}\n\n".encode()
    return out


def test_events_resume_from_the_last_id_after_a_drop_and_stop_at_the_final_status() -> None:
    seen: list[httpx.Request] = []
    bodies = [
        # The first connection drops after epoch 2 (the server stopped), the second ends the run.
        sse(("status", None, {"status": "running"}), ("epoch", 1, {"epoch": 1}),
            ("epoch", 2, {"epoch": 2})) + b": keep-alive\n\n",
        sse(("epoch", 3, {"epoch": 3}), ("decision", 3, {"epoch": 3, "kind": "early_stop"}),
            ("status", None, {"status": "early_stopped"})),
    ]  # fmt: skip

    def handler(request: httpx.Request) -> httpx.Response:
        seen.append(request)
        return httpx.Response(200, content=bodies[len(seen) - 1],
                              headers={"content-type": "text/event-stream"})  # fmt: skip

    slept: list[float] = []
    http = httpx.Client(base_url="http://gp.test", transport=httpx.MockTransport(handler))
    client = Client(http=http, token="t0k", sleep=slept.append)
    got = [(e.event, e.id) for e in client.events(5, after_epoch=0)]
    assert got == [("status", None), ("epoch", "1"), ("epoch", "2"), ("epoch", "3"),
                   ("decision", "3"), ("status", "3")]  # fmt: skip
    assert [r.headers["last-event-id"] for r in seen] == ["0", "2"]
    assert seen[0].url.path == "/v1/experiments/5/events"
    assert seen[1].headers["authorization"] == "Bearer t0k"
    assert len(slept) == 1  # one backoff before taking it up again


def test_events_raise_the_api_error_of_an_unknown_run() -> None:
    def handler(request: httpx.Request) -> httpx.Response:
        item = {"loc": ["path", "experiment_id"], "msg": "not found", "type": "not_found"}
        return httpx.Response(404, json={"detail": [item]})

    http = httpx.Client(base_url="http://gp.test", transport=httpx.MockTransport(handler))
    with pytest.raises(ApiError) as raised:
        list(Client(http=http).events(9))
    assert raised.value.status_code == 404


def live_run(client: TestClient, monkeypatch: pytest.MonkeyPatch) -> tuple[int, Any]:
    """A run queued, and the app's events listener (asking SQLite often)."""
    monkeypatch.setattr(settings, "events_poll_s", 0.02)
    run = client.post("/v1/experiments", json=SPEC).json()["id"]
    return run, client.app.state.events  # type: ignore[attr-defined]


def until(followed: Callable[[], bool], within_s: float = 10) -> None:
    """Wait until `followed()` (a stream is being followed), or `within_s` has passed."""
    deadline = time.monotonic() + within_s
    while time.monotonic() < deadline and not followed():
        time.sleep(0.01)


def train_in_background(
    run: int, followed: Callable[[], bool], then: Callable[[Worker], None]
) -> threading.Thread:
    """A fake worker in a thread: epochs 1 and 2; once `followed()` (within 10 s), `then(w)`;
    then the run's end."""

    def train() -> None:
        w = Worker(run)
        w.claim()
        w.write(1, 2)
        until(followed)
        then(w)
        w.finish()

    writer = threading.Thread(target=train)
    writer.start()
    return writer


def test_watch_follows_a_live_run_over_its_stream(
    cli: CliRunner, client: TestClient, monkeypatch: pytest.MonkeyPatch
) -> None:
    run, listener = live_run(client, monkeypatch)

    def rewrite(w: Worker) -> None:
        w.hand_back_and_resume(1)
        w.write(2, 3)

    # Once the stream has sent epoch 2, so the rewrite is one it has to send.
    writer = train_in_background(
        run, lambda: any(h.epoch >= 2 for h in listener.runs.values()), rewrite
    )
    result = cli.invoke(app, ["watch", str(run), "--json", "--interval", "0.05"])
    writer.join()
    assert result.exit_code == 0, result.output
    # (The API's log lines, in-process here, share stdout with the command's JSON lines.)
    lines = [json.loads(line) for line in result.stdout.splitlines() if line.startswith("{")]
    epochs = [(x["epoch"], x["val_loss"]) for x in lines if x["type"] == "epoch"]
    # Epoch 2 again, as attempt 2 wrote it (val_loss is 1/epoch + attempt in Worker.write).
    assert epochs == [(1, 2.0), (2, 1.5), (2, 2.5), (3, 1 / 3 + 2)]
    assert [x["status"] for x in lines if x["type"] == "status"][-1] == "succeeded"
    assert lines[-1]["type"] == "final" and lines[-1]["status"] == "succeeded"
    assert listener.stats.replays >= 1  # followed through the stream, not polled


def test_wait_sees_a_live_run_end_through_its_stream(
    client: TestClient, monkeypatch: pytest.MonkeyPatch
) -> None:
    run, listener = live_run(client, monkeypatch)
    # Epoch 3 once the wait follows the run.
    writer = train_in_background(run, lambda: run in listener.runs, lambda w: w.write(3))
    [final] = Client(http=client).wait([run], timeout=60)
    writer.join()
    assert final["status"] == "succeeded" and final["epochs_run"] == 3
    assert listener.stats.replays >= 1  # through the stream, not polled


def test_wait_batch_and_wait_sweep_see_their_runs_end_through_their_streams(
    client: TestClient, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A batch and a grid sweep, their runs ended by a fake worker in a thread while the waits
    follow their streams; each wait returns once everything is final, the sweep ended."""
    from service.sweeps.service import advance_for

    monkeypatch.setattr(settings, "events_poll_s", 0.02)
    gp = Client(http=client)
    batch = gp.create_batch([SPEC, {**SPEC, "base_lr": 0.2}])
    sweep = gp.create_sweep({"base": SPEC, "strategy": "grid",
                             "parameters": {"base_lr": [0.01, 0.1]}})  # fmt: skip
    listener = client.app.state.events  # type: ignore[attr-defined]

    def work() -> None:
        until(lambda: bool(listener.groups))  # the batch's wait follows its stream
        for run in [*batch["ids"], *sweep["ids"]]:
            w = Worker(run)
            w.claim()
            w.write(1, 2)
            w.finish()
            advance_for(run)  # as the worker's task does once a run of a sweep ended

    writer = threading.Thread(target=work)
    writer.start()
    done = gp.wait_batch(batch["batch_id"], timeout=60)
    final = gp.wait_sweep(sweep["sweep_id"], timeout=60)
    writer.join()
    assert done["status"] == "finished" and done["counts"] == {"succeeded": 2}
    assert final["status"] == "finished" and final["counts"] == {"succeeded": 2}
    assert {e["status"] for e in final["experiments"]} == {"succeeded"}

"""Live events through real processes: a run followed over SSE from its start to its end by 100
subscribers at once, on the production stack (the worker's commits announced by NOTIFY to the
API's one listener). Every subscriber gets every epoch once, in order, then the final status."""

from __future__ import annotations

import asyncio
from typing import Any

import httpx
import pytest

from tests.support.stack import Stack
from tests.support.subscribers import follow_many, percentile, skews

pytestmark = pytest.mark.integration

EPOCHS = 20
SPEC: dict[str, Any] = {
    "name": "followed",
    "dataset": "digits",
    "model": {"type": "mlp", "hidden": [64]},
    "solver": {"type": "SGD", "params": {"momentum": 0.9}},
    "base_lr": 0.05,
    "epochs": EPOCHS,
    "batch_size": 32,
    "seed": 0,
}
# Trained first by the stack's one worker, so the followed run waits, queued, while the
# subscribers arrive; cancelled once they are all in, so every epoch of the followed run is seen
# live. (A short run instead left it to chance: a warm worker finished 5 epochs before 100
# subscribers had connected.)
BEFORE: dict[str, Any] = {**SPEC, "name": "before", "epochs": 200, "batch_size": 16}


@pytest.mark.parametrize(
    "stack", [pytest.param("postgres", marks=pytest.mark.postgres)], indirect=True
)
def test_a_hundred_subscribers_follow_a_live_run_to_its_end(stack: Stack) -> None:
    # A fresh API's first POST imports torch (its checks): seconds on a loaded machine.
    with httpx.Client(base_url=stack.url, timeout=60) as c:
        before = c.post("/v1/experiments", json=BEFORE)
        assert before.status_code == 201, before.text
        created = c.post("/v1/experiments", json=SPEC)
        assert created.status_code == 201, created.text
        run = created.json()["id"]

        def all_in() -> None:
            assert c.post(f"/v1/experiments/{before.json()['id']}/cancel").status_code == 200

        path = f"/v1/experiments/{run}/events"
        followed = asyncio.run(follow_many(stack.url, path, 100, 60, all_in))
        stored = c.get(f"/v1/experiments/{run}/metrics").json()["epochs"]
    assert [f.error for f in followed if f.error] == [], stack.logs()
    assert len(stored) == EPOCHS
    for f in followed:
        assert f.epochs == list(range(1, EPOCHS + 1))  # each once, in order, no gap
        assert f.final is not None and f.final["status"] == "succeeded"
        assert f.final["epochs_run"] == EPOCHS and f.statuses[-1] == "succeeded"
    live = skews(followed)
    # Followed live, not only replayed: every epoch came after every subscriber's replay.
    assert len(live) == EPOCHS, (len(live), stack.logs())
    assert percentile(list(live.values()), 99) < 1.0, sorted(live.values())

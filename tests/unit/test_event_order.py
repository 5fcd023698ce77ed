"""The order of one read's events on a run's stream: a status after the rows written before it
(a pause at a rung, a requeue, the end: their epochs_run counts them), a claim before the rows
its attempt writes (a resume rewrites epochs) and after the older attempts' rows."""

from __future__ import annotations

import asyncio

from service.events.listener import RunHub, Subscriber
from service.events.service import EpochItem, Item, RunRead, StatusItem


def status(name: str, attempt: int) -> StatusItem:
    key = (name, attempt, False, None, None)
    return StatusItem(1, key, name in ("succeeded", "pruned"), name.encode())


def epoch(e: int, attempt: int) -> EpochItem:
    return EpochItem(e, attempt, f"{e}@{attempt}".encode())


def sent(hub: RunHub, read: RunRead) -> list[bytes]:
    async def go() -> list[Item]:
        sub = Subscriber()
        hub.subscribers.add(sub)
        hub.apply(read)
        return await sub.next() or []

    return [i.data for i in asyncio.run(go())]


def test_a_status_follows_the_rows_written_before_it_and_a_claim_precedes_its_own() -> None:
    hub = RunHub(1)
    hub.status_key = status("running", 1).key
    # Epochs 6-8, then the pause at the rung after them (epochs_run 8): rows first.
    waiting = RunRead(marker=(1,), status=status("waiting", 1),
                      epochs=[epoch(6, 1), epoch(7, 1), epoch(8, 1)])  # fmt: skip
    assert sent(hub, waiting) == [b"6@1", b"7@1", b"8@1", b"waiting"]
    # Attempt 1's last rows, then a claim by attempt 2 that resumes and rewrites epoch 8.
    resumed = RunRead(marker=(2,), status=status("running", 2),
                      epochs=[epoch(9, 1), epoch(8, 2), epoch(9, 2)])  # fmt: skip
    assert sent(hub, resumed) == [b"9@1", b"running", b"8@2", b"9@2"]
    # The end after the last rows.
    end = RunRead(marker=(3,), status=status("succeeded", 2), epochs=[epoch(10, 2)])
    assert sent(hub, end) == [b"10@2", b"succeeded"]

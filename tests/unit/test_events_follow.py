"""The follow loop every event stream shares (`service.events.stream._follow`): what a subscriber
is handed, as its stream's `admit` lets it through, one chunk per hand-off, keep-alives when
quiet, nothing after the event that ends it. The streams: tests/api/test_events_api.py."""

from __future__ import annotations

import asyncio

from service.events import sse
from service.events.listener import Subscriber
from service.events.service import EndItem, EpochItem, Item, StatusItem
from service.events.stream import _follow


def epoch(n: int) -> EpochItem:
    return EpochItem(epoch=n, attempt=1, data=f"epoch {n}\n".encode())


def status(s: str, final: bool = False) -> StatusItem:
    return StatusItem(experiment_id=1, key=(s,), final=final, data=f"status {s}\n".encode())


def test_follow_sends_what_admit_lets_through_until_the_end() -> None:
    seen: list[Item] = []

    def admit(item: Item) -> tuple[bytes | None, bool]:
        seen.append(item)
        if isinstance(item, EpochItem):
            return (item.data if item.epoch % 2 else None), False  # even epochs: repeats
        if isinstance(item, StatusItem):
            return item.data, item.final
        return item.data, True

    async def main() -> list[bytes]:
        sub = Subscriber()
        sub.put([epoch(1), epoch(2), epoch(3)])
        chunks: list[bytes] = []
        stream = _follow(sub, admit)
        chunks.append(await anext(stream))
        sub.put([None])  # the hub's keep-alive tick, nothing else handed
        chunks.append(await anext(stream))
        sub.put([epoch(4), status("running"), status("succeeded", final=True), epoch(5)])
        chunks += [c async for c in stream]
        return chunks

    chunks = asyncio.run(main())
    assert chunks == [
        b"epoch 1\nepoch 3\n",  # one chunk per hand-off, the repeat left out
        sse.KEEP_ALIVE,
        b"status running\nstatus succeeded\n",  # ends at the final status
    ]
    assert epoch(5) not in seen  # nothing after the end is even looked at


def test_follow_ends_on_an_end_item_and_sends_nothing_for_a_hand_off_of_repeats() -> None:
    async def main() -> list[bytes]:
        sub = Subscriber()
        sub.put([status("running")])
        sub.put([EndItem(b"event: end\n")])
        return [c async for c in _follow(sub, admit)]

    def admit(item: Item) -> tuple[bytes | None, bool]:
        if isinstance(item, StatusItem):
            return None, False  # not news
        return item.data, True

    assert asyncio.run(main()) == [b"event: end\n"]

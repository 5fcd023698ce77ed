"""A subscriber's stream: its replay, then what its hub hands it, filtered by its cursor, with a
keep-alive comment whenever it has been quiet for EVENTS_KEEPALIVE_S."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncGenerator, AsyncIterator, Callable
from contextlib import aclosing

from service.events import sse
from service.events.listener import GroupKey, Listener, Subscriber
from service.events.service import EndItem, EpochItem, Item, StatusItem, end_item
from service.kit.auth import TTL, Revoked

# How often an open stream asks whether its token was revoked: the token cache's own TTL, so a
# revoked token's streams end about as soon as its requests are refused.
CHECK_S = TTL


class RunCursor:
    """What one subscriber of a run has been sent: the epoch and the attempt that wrote it.

    The rows a run stores never go back in attempt as the epoch grows (a resumed run cuts the
    rows after its checkpoint and writes them again under its new attempt). So a row is new to
    the subscriber when its epoch is past the cursor, or when a later attempt wrote it (a
    rewrite: sent again, and the cursor moves back to it); a row of an older attempt is one the
    subscriber has seen replaced, and one of the same attempt at or before the cursor a repeat
    (the overlap of the replay and the hub's next read)."""

    def __init__(self, epoch: int, attempt: int) -> None:
        self.epoch = epoch
        self.attempt = attempt

    def admit(self, epoch: int, attempt: int) -> bool:
        if attempt < self.attempt or (epoch <= self.epoch and attempt == self.attempt):
            return False
        self.epoch, self.attempt = epoch, attempt
        return True


# What a stream makes of one event its hub handed it: the bytes to send (None: nothing, it is
# a repeat or not news to this subscriber) and whether the stream ends after them.
Admit = Callable[[Item], tuple[bytes | None, bool]]


async def _follow(
    sub: Subscriber, admit: Admit, revoked: Revoked | None = None
) -> AsyncGenerator[bytes, None]:
    """The follow part of every stream: what the hub hands `sub`, as `admit` lets it through,
    one chunk per hand-off (nothing after the event that ends it), and a keep-alive comment
    whenever the hub says the stream has been quiet. A stream whose token can be revoked asks at
    least every CHECK_S, quiet or not, and ends once it is: a reconnect is refused (401)."""
    loop = asyncio.get_running_loop()
    checked = loop.time()
    while True:
        items: list[Item] | None
        if revoked is None:
            items = await sub.next()
        else:
            try:
                items = await asyncio.wait_for(sub.next(), CHECK_S)
            except TimeoutError:
                items = []  # quiet: nothing to send, only the check
            if loop.time() - checked >= CHECK_S:
                checked = loop.time()
                if await revoked():
                    return
            if items == []:
                continue
        if items is None:
            yield sse.KEEP_ALIVE
            continue
        chunk: list[bytes] = []
        end = False
        for item in items:
            data, end = admit(item)
            if data is not None:
                chunk.append(data)
            if end:
                break
        if chunk:
            yield b"".join(chunk)
        if end:
            return


async def run_events(
    listener: Listener, experiment_id: int, cursor: int, revoked: Revoked | None = None
) -> AsyncIterator[bytes]:
    """`epoch` (and its `decision`s) for each row after `cursor`, `status` on each change; ends
    after the final status."""
    sub = Subscriber()
    try:
        replay = await listener.join_run(experiment_id, cursor, sub)
        if replay is None:
            return  # deleted since the route found it
        sent = RunCursor(cursor, replay.attempt_at_cursor)
        out = [e.data for e in replay.epochs if sent.admit(e.epoch, e.attempt)]
        out.append(replay.status.data)
        status_key = replay.status.key
        yield b"".join(out)
        if replay.status.final or listener.closed:
            return

        def admit(item: Item) -> tuple[bytes | None, bool]:
            nonlocal status_key
            if isinstance(item, EpochItem):
                return (item.data if sent.admit(item.epoch, item.attempt) else None), False
            if isinstance(item, StatusItem):
                if item.key == status_key:
                    return None, False
                status_key = item.key
                return item.data, item.final
            return item.data, True  # EndItem

        async with aclosing(_follow(sub, admit, revoked)) as chunks:
            async for chunk in chunks:
                yield chunk
    finally:
        listener.leave_run(experiment_id, sub)


async def group_events(
    listener: Listener, key: GroupKey, revoked: Revoked | None = None
) -> AsyncIterator[bytes]:
    """A `status` event per run of the group, then one whenever its status or progress changes;
    `end` once the group is over (not for "all")."""
    sub = Subscriber()
    try:
        replay = await listener.join_group(key, sub)
        sent = {item.experiment_id: item.key for item in replay.changed}
        out = [item.data for item in replay.changed]
        if replay.ended:
            out.append(_end_of(replay.changed))
        yield b"".join(out)
        if replay.ended or listener.closed:
            return

        def admit(item: Item) -> tuple[bytes | None, bool]:
            if isinstance(item, StatusItem):
                if sent.get(item.experiment_id) == item.key:
                    return None, False
                sent[item.experiment_id] = item.key
                return item.data, False
            if isinstance(item, EndItem):
                return item.data, True
            return None, False  # a group follows statuses, not epochs

        async with aclosing(_follow(sub, admit, revoked)) as chunks:
            async for chunk in chunks:
                yield chunk
    finally:
        listener.leave_group(key, sub)


def _end_of(states: list[StatusItem]) -> bytes:
    return end_item({s.experiment_id: s for s in states}).data

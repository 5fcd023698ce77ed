"""One listener per API process: it waits for the database's doorbell, reads what changed once,
and hands the events to every subscriber, so N viewers of a run cost one read per epoch, not N.

- The doorbell: on PostgreSQL, LISTEN on the channel every writer notifies in its transaction
  (service/kit/notify.py), so it rings at commit, with the ids of the runs that changed; and a
  re-read of everything every EVENTS_RESYNC_S (a safety net, and after a reconnect). Embedded
  (SQLite, the worker in another process), a poll of `PRAGMA data_version` every EVENTS_POLL_S,
  which changes when another connection commits (no table is read).
- A hub per followed run (and per followed sweep, batch or "all runs") keeps what the listener
  last read of it: the mark (the last epoch row and the highest attempt among the rows), the
  status. A read returns the rows after the mark and any row a later attempt wrote (a run resumed
  from an earlier checkpoint rewrites the epochs after it), so rewritten epochs go out again.
- A subscriber first reads its own replay from the tables (the rows after its cursor), then
  follows the hub. The gate keeps replays and the listener's reads apart: every event a
  subscriber gets from its hub comes from a read that began after its replay, never an older one.
  The overlap (rows both in the replay and in the next read) is dropped by the subscriber's
  cursor (stream.py).

The database stays the source of truth: a notification carries no data, a hub holds no history.
"""

from __future__ import annotations

import asyncio
import signal
import sqlite3
import threading
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager
from dataclasses import dataclass
from types import FrameType
from typing import Any

from anyio import to_thread
from sqlalchemy.engine import make_url

from service.config import settings
from service.events import service
from service.events.repository import EventsRepository
from service.events.service import (
    EndItem,
    GroupPlan,
    GroupRead,
    Item,
    RunPlan,
    RunRead,
    RunReplay,
    StatusItem,
)
from service.experiments.polls import PollCache
from service.kit.db import session_scope
from service.kit.logging import get_logger
from service.kit.notify import CHANNEL
from service.training.status import ExperimentStatus

log = get_logger(__name__)

GroupKey = tuple[str, int | str | None]  # ("sweep", 3), ("batch", "b-…"), ("all", None)


class Subscriber:
    """One open stream: the events its hub hands it, in order (and KEEP_ALIVE when it has been
    quiet: one ticker for every stream, not a timer per stream and event)."""

    __slots__ = ("items", "last", "loop", "waiter")

    def __init__(self) -> None:
        self.loop = asyncio.get_running_loop()
        self.items: list[Item | None] = []
        self.waiter: asyncio.Future[None] | None = None
        self.last = self.loop.time()  # when it was last handed something

    def put(self, items: list[Item | None]) -> None:
        """Hand it events (None: a keep-alive), waking its stream once. (An asyncio.Queue per
        item cost a tenth of the fan-out's time with 1,000 subscribers.)"""
        self.items.extend(items)
        if self.waiter is not None and not self.waiter.done():
            self.waiter.set_result(None)

    async def next(self) -> list[Item] | None:
        """Everything handed to it since (at least one event), or None: say something to keep
        the connection open."""
        while not self.items:
            self.waiter = self.loop.create_future()
            try:
                await self.waiter
            finally:
                self.waiter = None
        items, self.items = self.items, []
        self.last = self.loop.time()
        real = [i for i in items if i is not None]
        return real or None


class _Hub:
    def __init__(self) -> None:
        self.subscribers: set[Subscriber] = set()
        self.ready = False  # its first subscriber's replay has set its mark
        self.init_lock = asyncio.Lock()
        # Replay reads not yet begun, by cursor: subscribers arriving meanwhile share them.
        self.replays: dict[Any, asyncio.Future[Any]] = {}

    def send(self, items: list[Item]) -> None:
        handed: list[Item | None] = list(items)
        for sub in self.subscribers:
            sub.put(handed)


class RunHub(_Hub):
    def __init__(self, experiment_id: int) -> None:
        super().__init__()
        self.experiment_id = experiment_id
        self.epoch = 0
        self.attempt = 0
        self.marker: tuple[Any, ...] | None = None
        self.status_key: tuple[Any, ...] | None = None
        self.epochs_total = 0

    def start(self, replay: RunReplay) -> None:
        """Its first subscriber's replay: the last row read before it is the mark."""
        self.epoch, self.attempt = replay.last
        self.status_key = replay.status.key
        self.epochs_total = replay.epochs_total
        self.ready = True

    def plan(self) -> RunPlan:
        return RunPlan(self.experiment_id, self.epoch, self.attempt, self.marker,
                       self.status_key, self.epochs_total)  # fmt: skip

    def apply(self, read: RunRead) -> None:
        if read.gone:  # deleted: nothing more will come
            self.send([EndItem()])
            return
        self.marker = read.marker
        if read.epochs:
            self.epoch = read.epochs[-1].epoch
            self.attempt = max(self.attempt, *(e.attempt for e in read.epochs))
        items: list[Item] = list(read.epochs)
        status = read.status
        if status is not None:
            # A status goes after the rows written before it (a pause at a rung, a requeue, the
            # end: their epochs_run counts them); a claim, an attempt starting, before the rows
            # that attempt writes (a resume rewrites epochs), after the older attempts' rows.
            previous, self.status_key = self.status_key, status.key
            name, attempt = status.key[0], status.key[1]  # status_item's key
            if name == ExperimentStatus.RUNNING and (previous is None or previous[1] != attempt):
                older = [e for e in read.epochs if e.attempt < attempt]
                items = [*older, status, *(e for e in read.epochs if e.attempt >= attempt)]
            else:
                items = [*items, status]
        if items:
            self.send(items)


class GroupHub(_Hub):
    def __init__(self, key: GroupKey) -> None:
        super().__init__()
        self.kind, self.key = key
        self.states: dict[int, StatusItem] = {}
        self.epochs: dict[int, int] = {}
        self.max_id: int | None = None
        self.ended = False

    def start(self, replay: GroupRead) -> None:
        self._keep(replay)
        self.ended = replay.ended
        self.ready = True

    def _keep(self, read: GroupRead) -> None:
        for i in read.gone:
            self.states.pop(i, None)
            self.epochs.pop(i, None)
        self.epochs.update(read.epochs)
        for item in read.changed:
            self.states[item.experiment_id] = item
        self.max_id = read.max_id
        if self.kind == "all":  # a final run does not change again: stop reading it
            for item in read.changed:
                if item.final:
                    self.states.pop(item.experiment_id, None)
                    self.epochs.pop(item.experiment_id, None)

    def plan(self) -> GroupPlan:
        return GroupPlan(self.kind, self.key, dict(self.states), dict(self.epochs), self.max_id)

    def apply(self, read: GroupRead) -> None:
        items: list[Item] = list(read.changed)
        self._keep(read)
        if read.ended and not self.ended:
            self.ended = True
            items.append(service.end_item(self.states))
        if items:
            self.send(items)

    def touched(self, ids: set[int], sweeps: set[int]) -> bool:
        """Whether a notification concerns this group: one of its runs, a newer run (a batch's
        or sweep's runs are inserted with it, a sweep's next stage later), its sweep."""
        if self.kind == "all" or (self.kind == "sweep" and self.key in sweeps):
            return True
        newest = self.max_id or 0
        return any(i in self.states or i > newest for i in ids)


class Gate:
    """Replays run together, a read of the listener alone: so whatever a subscriber receives
    from its hub was read after its replay. A waiting read holds back new replays (1,000
    subscribers arriving at once cannot starve the live ones)."""

    def __init__(self) -> None:
        self._cond = asyncio.Condition()
        self._replays = 0
        self._reading = False

    @asynccontextmanager
    async def replay(self) -> AsyncIterator[None]:
        async with self._cond:
            await self._cond.wait_for(lambda: not self._reading)
            self._replays += 1
        try:
            yield
        finally:
            async with self._cond:
                self._replays -= 1
                self._cond.notify_all()

    @asynccontextmanager
    async def read(self) -> AsyncIterator[None]:
        async with self._cond:
            await self._cond.wait_for(lambda: not self._reading)
            self._reading = True
            await self._cond.wait_for(lambda: self._replays == 0)
        try:
            yield
        finally:
            async with self._cond:
                self._reading = False
                self._cond.notify_all()


@dataclass
class Stats:
    """Counted for the logs (and the fan-out benchmark): `reads` is the listener's reads of the
    tables, one per doorbell that concerned a followed run, whatever the number of viewers;
    `replays` the reads for subscribers' replays (shared by those arriving together)."""

    reads: int = 0
    replays: int = 0
    notifications: int = 0
    subscribers: int = 0


class Listener:
    """Started on the first subscriber, or with the app where the metrics pages' cache needs
    its doorbell (`start`); stopped with the app (`close`). `polls` hears every notification and
    whether LISTEN holds (PostgreSQL), so that the cache never outlives a change."""

    def __init__(self, polls: PollCache | None = None) -> None:
        self.polls = polls
        self.database_url = ""  # read when it starts (tests point the settings elsewhere first)
        self.runs: dict[int, RunHub] = {}
        self.groups: dict[GroupKey, GroupHub] = {}
        self.gate = Gate()
        self.stats = Stats()
        self.closed = False
        self._wake = asyncio.Event()
        self._pending: set[str] = set()
        self._everything = False
        self._tasks: list[asyncio.Task[None]] = []
        self._replay_slots = asyncio.Semaphore(4)

    @property
    def postgres(self) -> bool:
        return make_url(self.database_url).get_backend_name() == "postgresql"

    # -- subscribers ------------------------------------------------------------------------

    async def join_run(self, experiment_id: int, cursor: int, sub: Subscriber) -> RunReplay | None:
        """Subscribe to the run and read its replay (None: no such run; not subscribed)."""
        self.start()
        async with self.gate.replay():
            hub = self.runs.get(experiment_id)
            if hub is None:
                hub = self.runs[experiment_id] = RunHub(experiment_id)
                self._wake.set()  # a poll loop asleep for want of hubs
            hub.subscribers.add(sub)
            self.stats.subscribers += 1
            try:
                replay = await self._replay(
                    hub, cursor, lambda: service.replay_run(experiment_id, cursor)
                )
            except BaseException:
                self.leave_run(experiment_id, sub)
                raise
        if replay is None:
            self.leave_run(experiment_id, sub)
        return replay

    def leave_run(self, experiment_id: int, sub: Subscriber) -> None:
        hub = self.runs.get(experiment_id)
        if hub is not None and sub in hub.subscribers:
            hub.subscribers.discard(sub)
            self.stats.subscribers -= 1
            if not hub.subscribers:
                del self.runs[experiment_id]

    async def join_group(self, key: GroupKey, sub: Subscriber) -> GroupRead:
        self.start()
        async with self.gate.replay():
            hub = self.groups.get(key)
            if hub is None:
                hub = self.groups[key] = GroupHub(key)
                self._wake.set()
            hub.subscribers.add(sub)
            self.stats.subscribers += 1
            try:
                return await self._replay(hub, None, lambda: service.replay_group(*key))
            except BaseException:
                self.leave_group(key, sub)
                raise

    def following(self, experiment_id: int) -> bool:
        """Someone follows the run already (so it existed at the last read)."""
        hub = self.runs.get(experiment_id)
        return hub is not None and hub.ready

    def leave_group(self, key: GroupKey, sub: Subscriber) -> None:
        hub = self.groups.get(key)
        if hub is not None and sub in hub.subscribers:
            hub.subscribers.discard(sub)
            self.stats.subscribers -= 1
            if not hub.subscribers:
                del self.groups[key]

    async def _replay(self, hub: RunHub | GroupHub, cursor: Any, read: Callable[[], Any]) -> Any:
        """The subscriber's replay: a read of its own, or one it shares with subscribers from the
        same cursor that registered before that read began (a crowd arriving at once, e.g. every
        dashboard reconnecting after a restart, costs a few reads, not one each)."""
        shared = hub.replays.get(cursor)
        if shared is None:
            shared = hub.replays[cursor] = asyncio.ensure_future(
                self._replay_read(hub, cursor, read)
            )
        # shield: one subscriber leaving does not cancel the read the others wait for.
        return await asyncio.shield(shared)

    async def _replay_read(
        self, hub: RunHub | GroupHub, cursor: Any, read: Callable[[], Any]
    ) -> Any:
        # A few at a time: more would only contend for the database's connections, while waiting
        # here lets later subscribers share this read.
        async with self._replay_slots:
            del hub.replays[cursor]  # from here on, a new subscriber needs a read of its own
            self.stats.replays += 1
            if hub.ready:
                return await to_thread.run_sync(read)
            # The first read sets the hub's mark; the others wait for it (a mark read after a
            # replay could skip rows that replay did not have).
            async with hub.init_lock:
                replay = await to_thread.run_sync(read)
                if replay is not None and not hub.ready:
                    hub.start(replay)
                return replay

    # -- the doorbell and the reads ---------------------------------------------------------

    def start(self, only_with_notifications: bool = False) -> None:
        """Ring from now on (PostgreSQL: LISTEN): at the first subscriber, or before any where
        the metrics pages' cache uses the doorbell too (the app's lifespan, with
        `only_with_notifications`: on SQLite the cache asks `PRAGMA data_version` itself)."""
        if self._tasks or self.closed:
            return
        self.database_url = settings.effective_database_url
        if only_with_notifications and not self.postgres:
            return
        loops = [self._listen(), self._read_loop()] if self.postgres else [self._poll_loop()]
        loops.append(self._keep_alive())
        self._tasks = [asyncio.create_task(loop) for loop in loops]

    def _ring(self, tokens: list[str] | None) -> None:
        if tokens is None:
            self._everything = True
        else:
            self._pending.update(tokens)
        self._wake.set()

    async def _listen(self) -> None:
        """PostgreSQL: LISTEN, and ring for every notification; reconnect when the connection
        drops (re-reading everything then: notifications sent meanwhile are lost)."""
        import psycopg

        dsn = make_url(self.database_url).set(drivername="postgresql")
        while True:
            try:
                conn = await psycopg.AsyncConnection.connect(
                    dsn.render_as_string(hide_password=False), autocommit=True
                )
                async with conn:
                    await conn.execute(f"LISTEN {CHANNEL}")
                    self._ring(None)
                    self._polls_live(True)
                    async for note in conn.notifies():
                        self.stats.notifications += 1
                        tokens = note.payload.split(",")
                        if self.polls is not None:
                            self.polls.changed(tokens)
                        self._ring(tokens)
            except asyncio.CancelledError:
                self._polls_live(False)
                raise
            except Exception:
                self._polls_live(False)
                log.warning("events_listen_failed", exc_info=True)
                await asyncio.sleep(1.0)

    def _polls_live(self, live: bool) -> None:
        if self.polls is not None:
            self.polls.live(live)

    async def _read_loop(self) -> None:
        while True:
            try:
                async with asyncio.timeout(settings.events_resync_s):
                    await self._wake.wait()
            except TimeoutError:
                self._everything = True
            self._wake.clear()
            tokens, everything = self._pending, self._everything
            self._pending, self._everything = set(), False
            await self._read(None if everything else tokens)

    async def _poll_loop(self) -> None:
        """Embedded: read whenever another connection has committed since the last look."""
        path = make_url(self.database_url).database or ""
        conn = sqlite3.connect(path, check_same_thread=False, timeout=30)
        # The task is cancelled at shutdown while a thread may still be asking: closing the
        # connection under that thread crashed the process (a segfault in SQLite, seen once in
        # CI). The lock makes the close wait for the ask, and an ask after the close return.
        held, closed = threading.Lock(), False

        def data_version() -> int | None:
            with held:
                return None if closed else int(conn.execute("PRAGMA data_version").fetchone()[0])

        seen: int | None = None
        try:
            while True:
                if not (self.runs or self.groups):
                    self._wake.clear()
                    await self._wake.wait()
                version = await to_thread.run_sync(data_version)
                if version != seen:
                    seen = version
                    await self._read(None)
                await asyncio.sleep(settings.events_poll_s)
        finally:
            with held:  # microseconds: a PRAGMA's read of a counter
                closed = True
                conn.close()

    async def _keep_alive(self) -> None:
        """Hand None to every stream quiet for EVENTS_KEEPALIVE_S (checked four times as often,
        so the comment comes within 1.25 times that)."""
        loop = asyncio.get_running_loop()
        while True:
            every = settings.events_keepalive_s
            await asyncio.sleep(every / 4)
            now = loop.time()
            for hub in [*self.runs.values(), *self.groups.values()]:
                for sub in hub.subscribers:
                    if now - sub.last >= every and not sub.items:
                        sub.last = now
                        sub.put([None])

    async def _read(self, tokens: set[str] | None) -> None:
        """One read of the tables for every hub the tokens concern (None: all), then the
        events to their subscribers, before any new replay may start."""
        if tokens is not None and not tokens:
            return
        ids = {int(t) for t in tokens or () if t.isdigit()}
        sweeps = {int(t[1:]) for t in tokens or () if t.startswith("s") and t[1:].isdigit()}
        async with self.gate.read():
            every = tokens is None
            runs = [h for h in self.runs.values() if h.ready and (every or h.experiment_id in ids)]
            groups = [
                g for g in self.groups.values()
                if g.ready and not g.ended and (every or g.touched(ids, sweeps))
            ]  # fmt: skip
            if not runs and not groups:
                return
            run_plans, group_plans = [h.plan() for h in runs], [g.plan() for g in groups]
            try:
                run_reads, group_reads = await to_thread.run_sync(_read_all, run_plans, group_plans)
            except Exception:
                log.warning("events_read_failed", exc_info=True)
                self._ring(None)  # read everything again at the next doorbell
                return
            self.stats.reads += 1
            for hub, run_read in zip(runs, run_reads, strict=True):
                hub.apply(run_read)
            for group, group_read in zip(groups, group_reads, strict=True):
                group.apply(group_read)

    # -- the end ---------------------------------------------------------------------------

    def end_streams(self) -> None:
        """Close every open stream (the server is stopping); new ones end at once."""
        self.closed = True
        for hub in [*self.runs.values(), *self.groups.values()]:
            hub.send([EndItem()])

    def end_streams_on_exit(self) -> None:
        """uvicorn stops the app only once every response has ended, and an event stream does
        not end by itself: on SIGINT/SIGTERM, end the streams, then let uvicorn's own handler
        run. Only in the main thread (where uvicorn installs its handlers; not under tests)."""
        if threading.current_thread() is not threading.main_thread():
            return
        loop = asyncio.get_running_loop()
        for sig in (signal.SIGINT, signal.SIGTERM):
            previous = signal.getsignal(sig)
            if not callable(previous):
                continue

            def handler(signum: int, frame: FrameType | None, previous: Any = previous) -> None:
                loop.call_soon_threadsafe(self.end_streams)
                previous(signum, frame)

            signal.signal(sig, handler)

    async def close(self) -> None:
        self.end_streams()
        for task in self._tasks:
            task.cancel()
        await asyncio.gather(*self._tasks, return_exceptions=True)
        self._tasks = []
        s = self.stats
        log.info("events_listener_stopped", reads=s.reads, replays=s.replays,
                 notifications=s.notifications)  # fmt: skip


def _read_all(
    run_plans: list[RunPlan], group_plans: list[GroupPlan]
) -> tuple[list[RunRead], list[GroupRead]]:
    """The one read: every run and group concerned, in one session."""
    with session_scope() as session:
        repo = EventsRepository(session)
        runs = [service.read_run(repo, p) for p in run_plans]
        groups = [service.read_group(repo, p) for p in group_plans]
    return runs, groups

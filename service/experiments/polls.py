"""The metrics pages' cache: every open dashboard and `glidepath watch` polls
`GET /v1/experiments/{id}/metrics?after_epoch=<cursor>` about once a second, and a run being
watched gets an epoch every few milliseconds to seconds. Answered from the database each time,
200 pollers cost 200 reads a second (and ~5 ms of the API's CPU each). Here each API process
keeps the tail of each polled run (its status and its last rows, already dumped as JSON), cuts
every poller's page from it, and reads only what is new when the run changes: one small read per
change of a run, whatever the number of pollers, and none for a run nobody polls.

Never staler than a read: a tail is used only while nothing has changed the run since its read
began; otherwise the poll waits for a new read (begun after the change was known), shared with
every poll that arrives meanwhile. A change is known:
- from a commit of this process (a cancel, a delete), at once, on either backend
  (`notify.on_commit`): a client sees its own writes;
- from another process's commit (the worker's epochs): on PostgreSQL by the events listener's
  notifications (events/listener.py), on SQLite by `PRAGMA data_version`, asked at each poll
  (microseconds, no table read). A client told of an epoch by an event stream finds it in the
  next poll.
On PostgreSQL while the listener is not connected (notifications may be lost), every poll reads
the database.

The same cache holds each polled run's detail (`GET /v1/experiments/{id}`, what scripts poll to
wait for a run: ~6 ms of the API's CPU a read, 0.8 ms from the cache), with the same rules.

A poll whose cursor is older than the tail's first row reads its own page, as before. The rows
only grow within an attempt; a resumed run cuts the rows after its checkpoint and writes them
again (`read_tail` sees both).
"""

from __future__ import annotations

import asyncio
import bisect
import sqlite3
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from typing import Any, Generic, TypeVar

from sqlalchemy.engine import make_url
from starlette.concurrency import run_in_threadpool

from service.experiments import service
from service.experiments.repository import ExperimentRepository
from service.kit import notify
from service.kit.db import read_scope
from service.kit.errors import NotFound

# Rows a tail keeps behind its newest one: a dashboard that opens a run reads its history from
# here (200 dashboards opening a 3,000-epoch run each read 1,000-row pages of their own: ~3 s
# of the API's CPU in the first second, every poll waiting behind them). Further behind, a
# poller reads its own page.
KEEP = 10_000
READ = KEEP  # rows a tail's read may return; more means pollers far behind: not cached
MAX_RUNS = 256  # runs whose tails (and details) one process keeps (the oldest read goes first)
MAX_ROWS = 200_000  # rows all tails keep together (~250 bytes each), the oldest read going first
MAX_STAMPS = 100_000  # runs whose change counts are kept before starting over

Stamp = tuple[int, int]  # (changes to any run, changes to this run)
V = TypeVar("V")


@dataclass(frozen=True)
class Tail:
    """What the reads so far saw of a run: its status and every row after `base` (dumped, with
    the attempt that wrote it)."""

    base: int
    status: str
    epochs: list[int]
    attempts: list[int]
    rows: list[bytes]

    @property
    def last(self) -> int:
        return self.epochs[-1] if self.epochs else self.base

    def page(self, experiment_id: int, after_epoch: int, limit: int) -> bytes:
        i = bisect.bisect_right(self.epochs, after_epoch)
        rows = self.rows[i : i + limit]
        last = self.epochs[i + len(rows) - 1] if rows else after_epoch
        return service.page_json(experiment_id, self.status, rows, last)


def read_page(experiment_id: int, after_epoch: int, limit: int) -> bytes:
    with read_scope() as session:
        return service.metrics_json(session, experiment_id, after_epoch, limit)


def read_tail(experiment_id: int, base: int, kept: Tail | None) -> Tail | None:
    """The run's status and rows after `base`: only what is new since `kept` (rows after its
    last, and rows a later attempt rewrote), or all of them when rows it holds were cut (a
    resumed run's first transaction deletes the rows after its checkpoint; rows come in epoch
    order, so the newest stored epoch is below `kept`'s until every cut row is written again).
    None when there were more than READ."""
    with read_scope() as session:
        repo = ExperimentRepository(session)
        since = None
        if kept is not None:
            newer_attempt = max(kept.attempts, default=0)
            since = repo.poll_since(experiment_id, base, kept.last, newer_attempt, READ + 1)
            if since is not None and since.newest < kept.last:
                kept = since = None
        if since is None:
            since = repo.poll_since(experiment_id, base, base, -1, READ + 1)
    if since is None:
        raise NotFound(f"experiment {experiment_id} not found", loc=service.PATH_ID)
    if len(since.rows) > READ:
        return None
    epochs = [r[1] for r in since.rows]
    attempts = [r[0] for r in since.rows]
    rows = [service.row_json(r[1:]) for r in since.rows]
    if kept is not None:  # its rows after `base` and before the first one read again
        lo = bisect.bisect_right(kept.epochs, base)
        hi = bisect.bisect_left(kept.epochs, epochs[0]) if epochs else len(kept.epochs)
        epochs = kept.epochs[lo:hi] + epochs
        attempts = kept.attempts[lo:hi] + attempts
        rows = kept.rows[lo:hi] + rows
    return Tail(base, since.status, epochs, attempts, rows)


class Changes:
    """Changes seen so far: to any run (`every`), and to each run."""

    def __init__(self) -> None:
        self.every = 0
        self.runs: dict[int, int] = {}

    def bump(self, tokens: Iterable[str] | None) -> None:
        """`tokens` as notified: run ids, `s<sweep id>`; None: any run. Plain counter updates
        (called from the event loop, and from threads that commit)."""
        if tokens is None:
            self.every += 1
            return
        for token in tokens:
            if token.isdigit():
                run = int(token)
                self.runs[run] = self.runs.get(run, 0) + 1
            else:  # a sweep's change (a cancel ends its waiting runs): any of its runs
                self.every += 1
        if len(self.runs) > MAX_STAMPS:
            self.runs = {}
            self.every += 1

    def of(self, experiment_id: int) -> Stamp:
        return self.every, self.runs.get(experiment_id, 0)


@dataclass
class Read(Generic[V]):
    """A read in flight, the changes known when it began, and where it began (a tail's base)."""

    stamp: Stamp
    task: asyncio.Future[V | None]
    base: int = 0


@dataclass
class Stamped(Generic[V]):
    """Per run, what its newest read gave (None: nothing to keep) with the changes known when
    that read began, and the read in flight. The tails and the details each have one."""

    weigh: Callable[[V], int] = lambda _: 0  # a value's share of `budget`
    budget: int = 0
    kept: dict[int, tuple[Stamp, V]] = field(default_factory=dict)
    reads: dict[int, Read[V]] = field(default_factory=dict)
    weight: int = 0  # of what is kept

    def fresh(self, experiment_id: int, stamp: Stamp) -> V | None:
        """What the last read gave, while nothing changed the run since it began."""
        kept = self.kept.get(experiment_id)
        return kept[1] if kept is not None and kept[0] == stamp else None

    def last(self, experiment_id: int) -> V | None:
        kept = self.kept.get(experiment_id)
        return None if kept is None else kept[1]

    def begin(
        self, experiment_id: int, stamp: Stamp, base: int, fn: Callable[..., V | None], *args: Any
    ) -> Read[V]:
        """`fn(*args)` on the thread pool, the run's read in flight from now."""
        task = asyncio.ensure_future(run_in_threadpool(fn, *args))
        self.reads[experiment_id] = read = Read(stamp, task, base)
        task.add_done_callback(lambda _: self._land(experiment_id, read))
        return read

    def _land(self, experiment_id: int, read: Read[V]) -> None:
        if self.reads.get(experiment_id) is read:
            del self.reads[experiment_id]
        kept = self._drop(experiment_id)
        task = read.task
        value = None if task.cancelled() or task.exception() is not None else task.result()
        if value is None:
            return  # gone, unreadable or not to keep: the next poll reads again
        # A read that began later saw at least as much: keep it.
        newer = kept is not None and kept[0] > read.stamp
        keep = kept if newer and kept is not None else (read.stamp, value)
        self.weight += self.weigh(keep[1])
        self.kept[experiment_id] = keep
        while len(self.kept) > MAX_RUNS or self.weight > self.budget > 0:
            self._drop(next(iter(self.kept)))  # the oldest read goes first

    def _drop(self, experiment_id: int) -> tuple[Stamp, V] | None:
        kept = self.kept.pop(experiment_id, None)
        if kept is not None:
            self.weight -= self.weigh(kept[1])
        return kept


class PollCache:
    """One per API process (app.state.polls). Off until `start` (the app's lifespan): a poll
    then reads the database, as it does while the cache cannot know of every change."""

    def __init__(self) -> None:
        self.changes = Changes()
        self._tails: Stamped[Tail] = Stamped(lambda tail: len(tail.rows), MAX_ROWS)
        self._details: Stamped[bytes] = Stamped()
        self._live = False
        self._sqlite: sqlite3.Connection | None = None
        self._version: int | None = None
        self._unhook: Callable[[], None] | None = None

    # -- what changed ----------------------------------------------------------------------

    def start(self, database_url: str) -> None:
        """Begin caching. On SQLite at once; on PostgreSQL once the listener is `live`."""
        self._unhook = notify.on_commit(self.changed)
        url = make_url(database_url)
        if url.get_backend_name() == "sqlite" and url.database not in (None, "", ":memory:"):
            self._sqlite = sqlite3.connect(url.database or "", check_same_thread=False)
            self._live = True

    @property
    def caching(self) -> bool:
        """Whether polls are answered from the cache now."""
        return self._live

    def stop(self) -> None:
        self.live(False)
        if self._unhook is not None:
            self._unhook()
        if self._sqlite is not None:
            self._sqlite.close()
            self._sqlite = None

    def live(self, live: bool) -> None:
        """The listener (dis)connected: notifications may have been missed, start afresh."""
        self._live = live
        self.changes.bump(None)

    def changed(self, tokens: Iterable[str] | None) -> None:
        """Runs changed: committed by this process, or notified by another."""
        self.changes.bump(tokens)

    def _stamp(self, experiment_id: int) -> Stamp:
        if self._sqlite is not None:
            version = self._sqlite.execute("PRAGMA data_version").fetchone()[0]
            if version != self._version:
                self._version = version
                self.changes.bump(None)
        return self.changes.of(experiment_id)

    # -- a run's detail (GET /v1/experiments/{id}) ------------------------------------------

    async def detail(self, experiment_id: int, read: Callable[[], bytes]) -> bytes:
        """`read()` (run on the thread pool: the run's JSON), or what the last one gave while
        the run has not changed since it began."""
        if not self._live:
            return await run_in_threadpool(read)
        stamp = self._stamp(experiment_id)
        body = self._details.fresh(experiment_id, stamp)
        if body is not None:
            return body
        pending = self._details.reads.get(experiment_id)
        if pending is None or pending.stamp != stamp:
            pending = self._details.begin(experiment_id, stamp, 0, read)
        # shield: one poller hanging up does not cancel the read others wait for
        body = await asyncio.shield(pending.task)
        assert body is not None
        return body

    # -- the pages -------------------------------------------------------------------------

    async def page(self, experiment_id: int, after_epoch: int, limit: int) -> bytes:
        """The metrics page, as `service.metrics_json` reads it."""
        if not self._live:
            return await run_in_threadpool(read_page, experiment_id, after_epoch, limit)
        stamp = self._stamp(experiment_id)
        tail = self._tails.fresh(experiment_id, stamp)
        if tail is not None and after_epoch >= tail.base:
            return tail.page(experiment_id, after_epoch, limit)
        fresh = await asyncio.shield(self._read(experiment_id, after_epoch, stamp))
        if fresh is None or after_epoch < fresh.base:
            return await run_in_threadpool(read_page, experiment_id, after_epoch, limit)
        return fresh.page(experiment_id, after_epoch, limit)

    def _read(
        self, experiment_id: int, after_epoch: int, stamp: Stamp
    ) -> asyncio.Future[Tail | None]:
        """A read of the run's tail begun now, or the one in flight if it began with the same
        changes known, from a base at or before this poll's cursor."""
        pending = self._tails.reads.get(experiment_id)
        if pending is not None and pending.stamp == stamp and pending.base <= after_epoch:
            return pending.task
        # The next tail starts at most KEEP rows behind the newest row the last one had.
        tail = self._tails.last(experiment_id)
        base = after_epoch if tail is None else max(tail.base, min(after_epoch, _behind(tail)))
        return self._tails.begin(
            experiment_id, stamp, base, read_tail, experiment_id, base, tail
        ).task


def _behind(tail: Tail) -> int:
    """The epoch KEEP rows behind the tail's newest (its base while it has fewer rows)."""
    return tail.epochs[-KEEP] - 1 if len(tail.epochs) > KEEP else tail.base

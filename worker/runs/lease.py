"""Keeps a worker's claim on a run alive and notices cancel requests, off the training thread.

One heartbeat thread per process renews every lease the process holds, started with its first
lease and kept: starting a thread per run cost ~2.5 ms of every run on a busy two-core machine
(py-spy: the run waited for the new thread to be scheduled), which a run of a few hundred
milliseconds, as a pruned sweep's are, pays in full."""

from __future__ import annotations

import os
import threading
import time

from service.experiments.repository import ExperimentRepository
from service.kit.db import session_scope
from service.kit.logging import get_logger

log = get_logger(__name__)


_active: set[Lease] = set()
_active_lock = threading.Lock()
_changed = threading.Condition(_active_lock)  # a lease came or went: the thread looks again
_thread: tuple[int, threading.Thread] | None = None  # (the pid that started it, the thread)


def request_shutdown() -> None:
    """The worker process is stopping: every run it holds stops at its next batch boundary
    and is handed back to the queue (see run.py)."""
    with _active_lock:
        for lease in _active:
            lease.shutdown = True
            lease.stop.set()


class Lease:
    """A run held by this process: renewed every `lease_s / 3` seconds (2 s at most). Sets
    `stop` when the run is cancelled or the lease is lost (another attempt took over); the loop
    checks `stop` at each batch boundary, which costs nothing, instead of asking the database
    per batch."""

    def __init__(self, experiment_id: int, attempt: int, lease_s: float) -> None:
        self.experiment_id, self.attempt, self.lease_s = experiment_id, attempt, lease_s
        self.interval = max(0.2, min(lease_s / 3, 2.0))
        self.due = 0.0  # when the next beat is (time.monotonic)
        self.stop = threading.Event()
        self.cancelled = False
        self.lost = False
        self.shutdown = False

    def start(self) -> None:
        with _active_lock:
            self.due = time.monotonic() + self.interval
            _active.add(self)
            _ensure_thread()
            _changed.notify()

    def beat(self) -> None:
        with session_scope() as session:
            ours, cancel = ExperimentRepository(session).heartbeat(
                self.experiment_id, self.attempt, self.lease_s
            )
        if not ours:
            self.lost = True
            self.stop.set()
        elif cancel:
            self.cancelled = True
            self.stop.set()

    def close(self) -> None:
        """No beat starts after this (one under way finishes)."""
        with _active_lock:
            _active.discard(self)
            _changed.notify()


def _ensure_thread() -> None:
    """Start the heartbeat thread unless this process has one (a forked child has none)."""
    global _thread
    if _thread is None or _thread[0] != os.getpid() or not _thread[1].is_alive():
        thread = threading.Thread(target=_beat_forever, name="leases", daemon=True)
        thread.start()
        _thread = (os.getpid(), thread)


def _beat_forever() -> None:
    while True:
        with _active_lock:
            now = time.monotonic()
            due = [lease for lease in _active if lease.due <= now]
            if not due:
                soonest = min((lease.due for lease in _active), default=None)
                _changed.wait(None if soonest is None else soonest - now)
                continue
            for lease in due:
                lease.due = now + lease.interval
        for lease in due:
            try:
                lease.beat()
            except Exception:  # the DB is briefly away: the next beat retries within the lease
                log.warning("heartbeat_failed", experiment_id=lease.experiment_id,
                            attempt=lease.attempt, exc_info=True)  # fmt: skip

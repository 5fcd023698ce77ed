"""Keeps a worker's claim on a run alive and notices cancel requests, off the training thread."""

from __future__ import annotations

import threading

from service.experiments.repository import ExperimentRepository
from service.kit.db import session_scope
from service.kit.logging import get_logger

log = get_logger(__name__)


_active: set[Lease] = set()
_active_lock = threading.Lock()


def request_shutdown() -> None:
    """The worker process is stopping: every run it holds stops at its next batch boundary
    and is handed back to the queue (see run.py)."""
    with _active_lock:
        for lease in _active:
            lease.shutdown = True
            lease.stop.set()


class Lease(threading.Thread):
    """Renews the lease every `lease_s / 3` seconds. Sets `stop` when the run is cancelled or the
    lease is lost (another attempt took over); the loop checks `stop` at each batch boundary,
    which costs nothing, instead of asking the database per batch."""

    def __init__(self, experiment_id: int, attempt: int, lease_s: float) -> None:
        super().__init__(name=f"lease-{experiment_id}", daemon=True)
        self.experiment_id, self.attempt, self.lease_s = experiment_id, attempt, lease_s
        self.stop = threading.Event()
        self.cancelled = False
        self.lost = False
        self.shutdown = False
        self._done = threading.Event()
        with _active_lock:
            _active.add(self)

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

    def run(self) -> None:
        interval = max(0.2, min(self.lease_s / 3, 2.0))
        while not self._done.wait(interval):
            try:
                self.beat()
            except Exception:  # the DB is briefly away: the next beat retries within the lease
                log.warning("heartbeat_failed", experiment_id=self.experiment_id,
                            attempt=self.attempt, exc_info=True)  # fmt: skip

    def close(self) -> None:
        self._done.set()
        with _active_lock:
            _active.discard(self)

"""Work done behind its caller: after a commit, what need not hold up the request or the run that
committed (marking outbox messages sent, deleting the objects of dropped checkpoints). A `Lane`
runs its jobs in order on one daemon thread; lanes do not wait on each other, so slow deletes
never hold back a batch's sends. A job that raises is logged. A process that dies first leaves
its jobs undone, which each caller allows for (the relay sends again what is not marked sent; an
object no row points at is only space)."""

from __future__ import annotations

import queue
import threading
from collections.abc import Callable

from service.kit.logging import get_logger

log = get_logger(__name__)


class Lane:
    def __init__(self, name: str) -> None:
        self.name = name
        self._jobs: queue.SimpleQueue[Callable[[], object]] = queue.SimpleQueue()
        self._lock = threading.Lock()
        self._thread: threading.Thread | None = None

    def put(self, job: Callable[[], object]) -> None:
        self._jobs.put(job)
        self.start()

    def start(self) -> None:
        """Start the thread now if it is not running: a process that warms up (a worker, the
        API) does not pay for it (~7 ms on a busy 2-core machine) in its first job's caller."""
        with self._lock:
            if self._thread is None or not self._thread.is_alive():
                self._thread = threading.Thread(target=self._drain, name=self.name, daemon=True)
                self._thread.start()

    def wait(self, timeout_s: float = 10.0) -> bool:
        """Wait until the jobs put so far are done; False on timeout. For whoever is about to
        point the process elsewhere (tests switching databases) or to look at what they did."""
        done = threading.Event()
        self.put(done.set)
        return done.wait(timeout_s)

    def _drain(self) -> None:
        while True:
            job = self._jobs.get()
            try:
                job()
            except Exception:  # the jobs handle their own failures; this keeps the lane alive
                log.warning("job_failed", lane=self.name, exc_info=True)

"""Housekeeping in the background of the API process (and of `glidepath up`): send outbox
messages that never reached the broker, re-send the tasks of runs a broker lost, return runs
with expired leases to the queue, and move on sweeps whose runs ended without a worker noticing
(reaped or cancelled while queued)."""

from __future__ import annotations

import logging
import threading

from service.config import settings
from service.dispatch.service import relay_pending, resend_stale

log = logging.getLogger(__name__)


def tick() -> None:
    from service.experiments.reaper import reap
    from service.sweeps.service import advance_running

    jobs = {
        "sent": relay_pending,
        "re-sent": lambda: resend_stale(settings.resend_after_seconds),
        "reaped": reap,
        "sweeps moved on": advance_running,
    }
    done = {}
    for name, job in jobs.items():
        try:  # each on its own: one failing (say, the broker is down) must not stop the others
            done[name] = job()
        except Exception:
            log.warning("housekeeping (%s) failed", name, exc_info=True)
    if any(done.values()):
        log.info("housekeeping: %s", ", ".join(f"{k} {v}" for k, v in done.items()))


class Relay(threading.Thread):
    def __init__(self, interval_s: float = 2.0) -> None:
        super().__init__(name="outbox-relay", daemon=True)
        self.interval_s = interval_s
        self._stop = threading.Event()

    def run(self) -> None:
        while not self._stop.wait(self.interval_s):
            try:
                tick()
            except Exception:  # DB or broker away: try again next tick
                log.warning("housekeeping failed", exc_info=True)

    def stop(self) -> None:
        self._stop.set()

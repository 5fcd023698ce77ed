"""Housekeeping, in the background of every API process (and of `glidepath up`): what keeps the
database and the broker in step when a process dies at the wrong moment.

- send outbox messages that never reached the broker (`dispatch.relay_pending`);
- re-send the tasks of runs a broker lost (`dispatch.resend_stale`);
- reap: return runs whose worker vanished (lease expired) to the queue, a bounded number of
  times; cancelled ones end;
- move on sweeps whose runs ended without a worker noticing (reaped or cancelled while queued);
- forget workers not seen for a day (the registry keeps a restarted worker's old row till then).
"""

from __future__ import annotations

import threading

from service.config import settings
from service.dispatch import service as dispatch
from service.experiments.repository import ExperimentRepository
from service.kit.db import session_scope
from service.kit.logging import get_logger
from service.kit.time import utcnow
from service.sweeps.service import advance_running
from service.training.status import ExperimentStatus
from service.workers import service as workers

log = get_logger(__name__)


def reap(max_attempts: int | None = None) -> int:
    """Handle every run whose lease has expired; returns how many were handled."""
    max_attempts = max_attempts or settings.max_attempts
    handled = 0
    with session_scope() as session:
        repo = ExperimentRepository(session)
        for experiment_id, attempt, cancel, queue in repo.expired():
            if cancel:
                becomes = ExperimentStatus.CANCELLED
                done = repo.requeue_expired(
                    experiment_id,
                    attempt,
                    status=becomes,
                    finished_at=utcnow(),
                    stop_reason="cancelled; its worker was lost",
                )
            elif (lost := repo.lost_attempts(experiment_id, attempt) + 1) >= max_attempts:
                # Lost workers only: a hand-back at shutdown or a pause at a pruner's rung also
                # starts a new attempt, and says nothing about the run's health.
                becomes = ExperimentStatus.FAILED
                done = repo.requeue_expired(
                    experiment_id, attempt, status=becomes, finished_at=utcnow(),
                    error=f"its worker was lost {lost} times (GLIDEPATH_MAX_ATTEMPTS="
                    f"{max_attempts}); last lease expired without a heartbeat",
                )  # fmt: skip
            else:
                becomes = ExperimentStatus.QUEUED
                done = repo.requeue_expired(experiment_id, attempt, status=becomes)
                if done:
                    dispatch.enqueue(session, experiment_id, queue, dispatch.RUN_TASK)
            if done:
                log.warning("reaped", experiment_id=experiment_id, attempt=attempt,
                            now=str(becomes), reason="lease expired")  # fmt: skip
                handled += 1
    return handled


def tick() -> None:
    jobs = {
        "sent": dispatch.relay_pending,
        "resent": lambda: dispatch.resend_stale(settings.resend_after_seconds),
        "reaped": reap,
        "sweeps_moved_on": advance_running,
        "workers_forgotten": workers.forget_stale,
    }
    done = {}
    for name, job in jobs.items():
        try:  # each on its own: one failing (say, the broker is down) must not stop the others
            done[name] = job()
        except Exception:
            log.warning("housekeeping_failed", job=name, exc_info=True)
    if any(done.values()):
        log.info("housekeeping", **done)


class Housekeeping(threading.Thread):
    def __init__(self, interval_s: float = 2.0) -> None:
        super().__init__(name="housekeeping", daemon=True)
        self.interval_s = interval_s
        self._stop = threading.Event()

    def run(self) -> None:
        while not self._stop.wait(self.interval_s):
            try:
                tick()
            except Exception:  # DB or broker away: try again next tick
                log.warning("housekeeping_failed", exc_info=True)

    def stop(self) -> None:
        self._stop.set()

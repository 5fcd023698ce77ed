"""Housekeeping, in the background of the API (and of `glidepath up`): what keeps the database
and the broker in step when a process dies at the wrong moment. Every API process runs the thread,
but only the one holding the `housekeeping` leader lock (kit/leader.py) does the work; the others
ask for the lock every GLIDEPATH_HOUSEKEEPING_RETRY_S and take over when its holder dies.

- send outbox messages that never reached the broker (`dispatch.relay_pending`);
- re-send the tasks of runs a broker lost (`dispatch.resend_stale`);
- reap: return runs whose worker vanished (lease expired) to the queue, a bounded number of
  times; cancelled ones end;
- move on sweeps whose runs ended without a worker noticing (reaped or cancelled while queued);
- forget workers not seen for a day (the registry keeps a restarted worker's old row till then);
- on the embedded broker, remove the hidden files of message writes a killed process left
  (`filebroker.remove_leftovers`).
"""

from __future__ import annotations

import os
import threading

from sqlalchemy.orm import Session

from service.config import settings
from service.dispatch import broker, filebroker
from service.dispatch import service as dispatch
from service.experiments.repository import ExperimentRepository
from service.kit.db import session_scope
from service.kit.leader import LeaderLock, leader_lock
from service.kit.logging import get_logger
from service.kit.time import utcnow
from service.sweeps.service import advance_running
from service.training.status import ExperimentStatus
from service.workers import service as workers

log = get_logger(__name__)


def reap(max_attempts: int | None = None) -> int:
    """Handle every run whose lease has expired; returns how many were handled."""
    with session_scope() as session:
        return reap_in(session, max_attempts)


def reap_in(session: Session, max_attempts: int | None = None, only: int | None = None) -> int:
    """`reap` in the caller's transaction; `only`: this run, if its lease has expired (a worker
    about to claim a run that is not queued asks first, in its claim's transaction, so that a
    run lost too often fails whether the reaper or a worker comes first)."""
    max_attempts = max_attempts or settings.max_attempts
    handled = 0
    repo = ExperimentRepository(session)
    for experiment_id, attempt, cancel, queue in repo.expired(only=only):
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


def remove_broker_leftovers() -> int:
    if not settings.is_embedded_broker:
        return 0  # Redis keeps no files
    return filebroker.remove_leftovers(broker.queue_folder())


def tick() -> None:
    jobs = {
        "sent": dispatch.relay_pending,
        "resent": lambda: dispatch.resend_stale(settings.resend_after_seconds),
        "reaped": reap,
        "sweeps_moved_on": advance_running,
        "workers_forgotten": workers.forget_stale,
        "broker_leftovers_removed": remove_broker_leftovers,
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
    """Runs `tick` every `interval_s` while this process holds the leader lock; without it, asks
    for the lock every `retry_s` (the first time at once)."""

    def __init__(
        self, interval_s: float = 2.0, retry_s: float | None = None, lock: LeaderLock | None = None
    ) -> None:
        super().__init__(name="housekeeping", daemon=True)
        self.interval_s = interval_s
        self.retry_s = retry_s or settings.housekeeping_retry_s
        self.lock = lock or leader_lock(settings.effective_database_url, "housekeeping")
        self.leading = False
        self._halt = threading.Event()

    def run(self) -> None:
        wait = 0.0
        try:
            while not self._halt.wait(wait):
                led = self.leading
                if not self._lead():
                    wait = self.retry_s
                    continue
                wait = self.interval_s
                if led:  # a new leader's first tick comes one interval after its election
                    try:
                        tick()
                    except Exception:  # DB or broker away: try again next tick
                        log.warning("housekeeping_failed", exc_info=True)
        finally:
            if self.leading:
                self.leading = False
                self.lock.release()
                log.info("housekeeping_released", pid=os.getpid())

    def _lead(self) -> bool:
        """Whether this process leads now: still holds the lock, or just took it."""
        try:
            if self.leading and not self.lock.held():
                self.leading = False
                log.warning("housekeeping_lost", pid=os.getpid())
            elif not self.leading and self.lock.try_acquire():
                self.leading = True
                log.info("housekeeping_elected", pid=os.getpid())
        except Exception:  # the database is away: ask again at the next try
            log.warning("housekeeping_election_failed", exc_info=True)
        return self.leading

    def stop(self, timeout: float = 10.0) -> None:
        """Stop and release the lock, so that another process takes over at its next try."""
        self._halt.set()
        if self.is_alive():
            self.join(timeout)

"""Runs whose worker vanished (its lease ran out) go back to the queue, a bounded number of
times; cancelled ones end. With the relay, this is what makes a lost worker or message harmless."""

from __future__ import annotations

import logging

from service.config import settings
from service.dispatch import service as dispatch
from service.experiments.repository import ExperimentRepository
from service.kit.db import session_scope
from service.kit.time import utcnow

log = logging.getLogger(__name__)


def reap(max_attempts: int | None = None) -> int:
    """Handle every run whose lease has expired; returns how many were handled."""
    max_attempts = max_attempts or settings.max_attempts
    handled = 0
    with session_scope() as session:
        repo = ExperimentRepository(session)
        for experiment_id, attempt, cancel, queue in repo.expired():
            if cancel:
                done = repo.requeue_expired(
                    experiment_id,
                    attempt,
                    status="cancelled",
                    finished_at=utcnow(),
                    stop_reason="cancelled; its worker was lost",
                )
            elif attempt >= max_attempts:
                done = repo.requeue_expired(
                    experiment_id, attempt, status="failed", finished_at=utcnow(),
                    error=f"its worker was lost {attempt} times (GLIDEPATH_MAX_ATTEMPTS="
                    f"{max_attempts}); last lease expired without a heartbeat",
                )  # fmt: skip
            else:
                done = repo.requeue_expired(experiment_id, attempt, status="queued")
                if done:
                    dispatch.enqueue(session, experiment_id, queue, dispatch.RUN_TASK)
            if done:
                log.warning("experiment %s: lease of attempt %s expired; %s", experiment_id,
                            attempt, "cancelled" if cancel else "re-queued or failed")  # fmt: skip
                handled += 1
    return handled

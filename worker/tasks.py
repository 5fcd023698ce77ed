"""Celery tasks: thin wrappers that take an id and call plain functions."""

from __future__ import annotations

from service.dispatch.service import RUN_TASK
from service.kit.logging import get_logger
from service.sweeps.service import advance_for
from worker.celery_app import celery_app
from worker.runs.lifecycle import run_experiment as run

log = get_logger(__name__)


@celery_app.task(name=RUN_TASK)
def run_experiment(experiment_id: int) -> str:
    # A run that needs nothing once it has ended is finished by the epoch writer while this
    # worker takes its next task (runs/finish.py `finish_run_behind`).
    outcome = run(experiment_id, finish_behind=True)
    if outcome.ended_run and outcome.in_sweep:
        try:  # the run ended: its sweep may have a next stage to launch
            advance_for(experiment_id)
        except Exception:  # the relay's periodic check moves the sweep on instead
            log.warning("sweep_advance_failed", experiment_id=experiment_id, exc_info=True)
    return outcome.status

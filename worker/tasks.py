"""Celery tasks: thin wrappers that take an id and call one plain function."""

from __future__ import annotations

from service.dispatch.service import RUN_TASK
from worker.celery_app import celery_app


@celery_app.task(name=RUN_TASK)
def run_experiment(experiment_id: int) -> str:
    from worker.engine.run import run_experiment as run

    return run(experiment_id).status

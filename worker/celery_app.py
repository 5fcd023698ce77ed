"""The worker's Celery app: the service's broker settings (`service.dispatch.broker`) plus the
task bodies of `worker.tasks`."""

from __future__ import annotations

from typing import Any

from celery.signals import worker_process_init, worker_shutting_down

from service.dispatch.broker import make_celery
from service.kit.db import dispose_engine
from worker.runs.lease import request_shutdown

celery_app = make_celery(include=["worker.tasks"])


@worker_process_init.connect
def _dispose_engine_after_fork(**_: Any) -> None:
    # A forked child must not reuse its parent's pooled DB connections (as Superset does).
    dispose_engine()


@worker_shutting_down.connect
def _hand_runs_back(**_: Any) -> None:
    # Celery's warm shutdown waits for the running task; a training run could take hours.
    # Stop it at the next batch boundary instead and hand it back to the queue (runs/finish.py).
    request_shutdown()

"""The Celery app. The broker is a doorbell: a message only says "experiment N wants running";
every fact lives in the database, so lost or duplicated messages cost nothing (DESIGN.md)."""

from __future__ import annotations

from typing import Any

from celery import Celery
from celery.signals import worker_process_init, worker_shutting_down

from service.config import settings


def _broker_options() -> dict[str, Any]:
    if settings.is_embedded_broker:
        # kombu's file-system transport: producers and consumers on one machine share a folder.
        folder = settings.broker_dir / "queue"
        processed = settings.broker_dir / "processed"
        control = settings.broker_dir / "control"  # broadcast; kombu defaults to ./control
        for d in (folder, processed, control):
            d.mkdir(parents=True, exist_ok=True)
        return {
            "data_folder_in": str(folder),
            "data_folder_out": str(folder),
            "processed_folder": str(processed),
            "control_folder": str(control),
            "store_processed": False,
            "polling_interval": 0.1,
        }
    # Redis redelivers an unacked message after visibility_timeout; the lease makes a second
    # delivery harmless, so the timeout only bounds how long a lost message waits.
    return {"visibility_timeout": 3600}


def make_celery() -> Celery:
    app = Celery("glidepath", broker=settings.effective_broker_url, include=["worker.tasks"])
    app.conf.update(
        broker_transport_options=_broker_options(),
        broker_connection_retry_on_startup=True,
        task_ignore_result=True,  # results live in the database, not in a result backend
        task_serializer="json",
        accept_content=["json"],
        task_acks_late=True,
        task_reject_on_worker_lost=True,
        worker_prefetch_multiplier=1,
        task_default_queue="cpu",
        worker_hijack_root_logger=False,
        broker_heartbeat=0,
    )
    return app


celery_app = make_celery()


@worker_process_init.connect
def _dispose_engine_after_fork(**_: Any) -> None:
    # A forked child must not reuse its parent's pooled DB connections (as Superset does).
    from service.kit.db import dispose_engine

    dispose_engine()


@worker_shutting_down.connect
def _hand_runs_back(**_: Any) -> None:
    # Celery's warm shutdown waits for the running task; a training run could take hours.
    # Stop it at the next batch boundary instead and hand it back to the queue (run.py).
    from worker.engine.lease import request_shutdown

    request_shutdown()

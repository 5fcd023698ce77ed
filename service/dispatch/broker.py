"""The broker, as the API sees it: a Celery app that only sends tasks by name and answers the
readiness check. The worker builds its own app from the same `make_celery` (worker/celery_app.py)
and adds the task bodies; the service never imports them. The broker is a doorbell: a message
only says "experiment N wants running"; every fact lives in the database (DESIGN.md)."""

from __future__ import annotations

from functools import cache
from pathlib import Path
from typing import Any

from celery import Celery

from service.config import settings
from service.dispatch import filebroker


def queue_folder() -> Path:
    """The embedded broker's messages, one file each, named `<ms>_<uuid>.<queue>.msg` by kombu."""
    return settings.broker_dir / "queue"


def _broker_options() -> dict[str, Any]:
    if settings.is_embedded_broker:
        # kombu's file-system transport: producers and consumers on one machine share a folder.
        folder = queue_folder()
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
            "polling_interval": 0.01,
        }
    # No ack emulation: kombu's bookkeeping of unacked messages in Redis (a pipeline when a
    # message is delivered, another when it is acked, a restore loop) cost ~1 ms between two
    # runs on a worker (sweep_throughput.py, old and new alternating: median 5.3 -> 4.2 ms),
    # and it recovers nothing the database does not: a message lost with its worker (killed
    # after taking it) belongs to a run still queued, which the outbox re-sends after
    # RESEND_AFTER_SECONDS, or running under a lease, which the reaper requeues and re-sends
    # when it expires (DESIGN.md: the broker is a doorbell). Redis's own redelivery came after
    # its visibility timeout, an hour. A worker that stops cleanly still puts back what it took
    # and did not start.
    return {"ack_emulation": False}


def make_celery(include: list[str] | None = None) -> Celery:
    app = Celery("glidepath", broker=settings.effective_broker_url, include=include or [])
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
    if settings.is_embedded_broker:
        # kombu's file-system transport, with messages renamed into place whole (filebroker.py).
        app.conf.broker_transport = filebroker.TRANSPORT
    return app


@cache
def sender() -> Celery:
    """The API's app, made on first use (settings may change before then, as in tests)."""
    return make_celery()


def warm() -> None:
    """Pay the sender's one-time costs now, not in the first message a process sends (an API's
    first POST; a worker's first is a rung's promoted runs): Celery looks its result backend up
    through the installed packages' entry points (~15 ms, though results are ignored) and builds
    its task sender (~3 ms); the broker connection is made and the runs' queues declared
    (~4 ms on Redis). Declaring is idempotent and sends no message."""
    app = sender()
    _ = app.backend, app.amqp, app.producer_pool, app.amqp.send_task_message
    with app.producer_or_acquire() as producer:
        for name in dict.fromkeys(["auto", *settings.worker_queues.split(",")]):
            producer.maybe_declare(app.amqp.queues[name.strip()])


def send_task(task: str, experiment_id: int, queue: str) -> None:
    sender().send_task(task, args=[experiment_id], queue=queue)


def check() -> dict[str, Any]:
    """For `/readyz`: can we reach the broker right now?"""
    try:
        with sender().connection_for_write() as conn:
            conn.ensure_connection(max_retries=1, timeout=2)
        return {"ok": True, "url": settings.effective_broker_url.split("@")[-1]}
    except Exception as exc:
        return {"ok": False, "error": str(exc).splitlines()[0][:200]}

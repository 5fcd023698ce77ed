"""The worker's Celery app: the service's broker settings (`service.dispatch.broker`) plus the
task bodies of `worker.tasks`."""

from __future__ import annotations

import logging
from typing import Any

from celery.signals import worker_process_init, worker_ready, worker_shutdown, worker_shutting_down

from service.dispatch import service as dispatch
from service.dispatch.broker import make_celery
from service.kit import gc_pauses
from service.kit.db import dispose_engine
from service.training import checks
from worker.runs import epoch_writer, registry
from worker.runs.lease import request_shutdown

celery_app = make_celery(include=["worker.tasks"])


# Celery's own line for each task ("Task ... received", "Task ... succeeded in 0.1s") says what
# the run's `claimed` and `finished` events say with its id; formatted through structlog the two
# took ~0.45 ms of the gap between two runs on a worker (py-spy, 200 small runs).
TASK_LINES = ("celery.worker.strategy", "celery.app.trace")


def quiet_task_lines() -> None:
    """Celery's per-task lines off (a failure still logs); called before the worker starts, as
    Celery reads the level once. `--log-level debug` keeps them."""
    for name in TASK_LINES:
        logging.getLogger(name).setLevel(logging.WARNING)


@worker_process_init.connect
def _dispose_engine_after_fork(**_: Any) -> None:
    # A forked child must not reuse its parent's pooled DB connections (as Superset does).
    dispose_engine()


def queues_for(device_queues: list[str]) -> list[str]:
    """The queues to consume: the device queues and the capability queues of the plugins
    installed here (a run needing a plugin is routed only to workers that offer it)."""
    return registry.queues(device_queues)


@worker_ready.connect
def _register(sender: Any, **_: Any) -> None:
    dispatch.warm()  # this process sends too: a rung's promoted runs, a hand-back
    epoch_writer.prestart()  # its first run does not wait for the writer process to start
    checks.warm()  # nor for torch's lazy imports
    # Registered last: `alive` in GET /v1/workers means it takes work now. Before the 1-2 s
    # warm-up above (the consumer waits for this handler), a worker just started showed alive
    # while a burst of short runs all went to the other one. The solo pool runs tasks in this
    # process: its pid is the one runs are held under.
    registry.start(sorted(sender.app.amqp.queues.consume_from))
    # Warmed up, its modules imported: a full collection walked ~460k long-lived objects
    # (torch, scikit-learn, Celery) for ~160 ms, a stall of twenty 8 ms epochs in whatever run
    # it fell. Frozen, one walks what was made since (~13 ms). The same as the API's.
    gc_pauses.install()


@worker_shutdown.connect
def _deregister(**_: Any) -> None:
    registry.stop()


@worker_shutting_down.connect
def _hand_runs_back(**_: Any) -> None:
    # Celery's warm shutdown waits for the running task; a training run could take hours.
    # Stop it at the next batch boundary instead and hand it back to the queue (runs/finish.py).
    request_shutdown()

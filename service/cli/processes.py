"""`glidepath up/api/worker/migrate`: the commands that start the service's processes. The only
module of `service/` that may import the worker (to start it); import-linter checks that."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
from typing import Annotated

import typer

HOST = typer.Option("127.0.0.1", help="Interface to listen on.")
PORT = typer.Option(8000, help="Port to listen on.")


def _logging(level: str = "info") -> None:
    from service.kit.logging import configure

    configure(level=level)


def migrate(revision: str = typer.Argument("head", help="Alembic revision to upgrade to.")) -> None:
    """Apply database migrations (creates the SQLite file in embedded mode)."""
    from service.kit import migrate as m

    m.upgrade(revision=revision)
    typer.echo(f"database at {revision}")


def api(host: str = HOST, port: int = PORT, log_level: str = "info") -> None:
    """Serve the HTTP API (and the outbox relay)."""
    import uvicorn

    _logging(log_level)
    # log_config=None: uvicorn's records go through our structured formatter (kit/logging.py).
    uvicorn.run("service.app:app", host=host, port=port, log_level=log_level, log_config=None)


def worker(
    queues: Annotated[
        str | None,
        typer.Option(help="Comma-separated queues; default from GLIDEPATH_WORKER_QUEUES."),
    ] = None,
    name: Annotated[str | None, typer.Option(help="Celery node name.")] = None,
    gpus: Annotated[
        str,
        typer.Option(
            help="auto (all visible GPUs, else CPU), all, none (one CPU worker), or ids "
            "such as 0,1: one worker process per GPU on the gpu and auto queues."
        ),
    ] = "auto",
    log_level: str = "info",
) -> None:
    """Run Celery worker process(es): solo pool, one run at a time each."""
    from service.config import settings
    from worker import gpus as gpu_workers

    _logging(log_level)
    try:
        children = gpu_workers.plan(gpus, 0 if gpus == "none" else gpu_workers.visible_gpu_count())
    except ValueError as exc:
        raise typer.BadParameter(str(exc), param_hint="--gpus") from None
    if children:
        raise typer.Exit(gpu_workers.supervise(children))

    from worker.celery_app import celery_app, queues_for

    argv = [
        "worker",
        "--pool",
        "solo",
        "--concurrency",
        "1",
        "--loglevel",
        log_level,
        "--queues",
        ",".join(queues_for((queues or settings.worker_queues).split(","))),
        # mingle/gossip need broadcast messages: the file-system broker has none, and runs
        # are coordinated through the database anyway.
        "--without-mingle",
        "--without-gossip",
    ]
    if name:
        argv += ["--hostname", name]
    celery_app.worker_main(argv)


def up(host: str = HOST, port: int = PORT) -> None:
    """API and an embedded worker in one command; Ctrl-C stops both."""
    from service.kit import migrate as m

    m.upgrade()
    worker_proc = subprocess.Popen([sys.executable, "-m", "service.cli", "worker"], env=os.environ)
    # uvicorn restores the previous SIGTERM handler after its shutdown and re-raises the signal:
    # with the default handler this process would die before `finally` stops the worker (a
    # `docker stop` or systemd stop sends SIGTERM to this process only). Exit instead.
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(0))
    try:
        api(host=host, port=port, log_level="info")
    finally:
        if worker_proc.poll() is None:
            worker_proc.send_signal(signal.SIGTERM)  # warm shutdown: the run is handed back
            try:
                worker_proc.wait(timeout=30)
            except subprocess.TimeoutExpired:
                worker_proc.kill()
                worker_proc.wait()


def register(app: typer.Typer) -> None:
    """Add the process commands to the `glidepath` app."""
    for fn in (migrate, api, worker, up):
        app.command(fn.__name__)(fn)

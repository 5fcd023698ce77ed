"""`glidepath up/api/worker/migrate`: the commands that start the service's processes. The only
module of `service/` that may import the worker (to start it); import-linter checks that."""

from __future__ import annotations

import ctypes
import gc
import importlib.util
import os
import shutil
import signal
import subprocess
import sys
import tempfile
from typing import Annotated, Any

import typer

HOST = typer.Option("127.0.0.1", help="Interface to listen on.")
PORT = typer.Option(8000, help="Port to listen on.")
# uvicorn's httptools (h11 where it is missing), with TCP_NODELAY and a 503 in the error shape
# past the connection limit (http_protocol.py).
HTTP_PROTOCOL = "service.cli.http_protocol:" + (
    "ApiHttpToolsProtocol" if importlib.util.find_spec("httptools") else "ApiH11Protocol"
)


def _logging(level: str = "info") -> None:
    from service.kit.logging import configure

    configure(level=level)


def migrate(revision: str = typer.Argument("head", help="Alembic revision to upgrade to.")) -> None:
    """Apply database migrations (creates the SQLite file in embedded mode)."""
    from service.kit import migrate as m

    m.upgrade(revision=revision)
    typer.echo(f"database at {revision}")


def api(
    host: str = HOST,
    port: int = PORT,
    workers: Annotated[
        int | None,
        typer.Option(
            min=1,
            help="API processes sharing the port (default GLIDEPATH_API_WORKERS, 1); "
            "housekeeping runs in exactly one of them.",
        ),
    ] = None,
    log_level: str = "info",
) -> None:
    """Serve the HTTP API (and housekeeping: the outbox relay, the reaper)."""
    import uvicorn

    from service.config import settings

    _logging(log_level)
    # Each process uvicorn starts is a fresh interpreter: `serve` configures its logging.
    os.environ["GLIDEPATH_LOG_LEVEL"] = log_level
    _open_files(settings.api_limit_concurrency + 256)  # + the pool, logs, uploads
    processes = workers or settings.api_workers
    metrics_dir = _metrics_dir(processes)
    try:
        uvicorn.run(
            "service.cli.processes:serve",
            factory=True,
            host=host,
            port=port,
            workers=processes,
            http=HTTP_PROTOCOL,
            log_level=log_level,
            # None: uvicorn's records go through our structured formatter (kit/logging.py).
            log_config=None,
            timeout_keep_alive=settings.api_keep_alive_s,
            limit_concurrency=settings.api_limit_concurrency,
            backlog=settings.api_backlog,
            h11_max_incomplete_event_size=settings.api_max_header_bytes,
            timeout_graceful_shutdown=settings.api_graceful_shutdown_s,
        )
    finally:
        if metrics_dir is not None:
            shutil.rmtree(metrics_dir, ignore_errors=True)


def _metrics_dir(processes: int) -> str | None:
    """Several API processes share one port, and a scrape of /metrics reaches any one of them:
    their HTTP figures go to files in one folder, which each process sums when scraped
    (prometheus_client's multiprocess mode, docs/metrics.md). A fresh folder per start (made
    here, removed at exit; the processes inherit it); an operator's PROMETHEUS_MULTIPROC_DIR is
    used as it is."""
    if processes < 2 or os.environ.get("PROMETHEUS_MULTIPROC_DIR"):
        return None
    path = tempfile.mkdtemp(prefix="glidepath-metrics-")
    os.environ["PROMETHEUS_MULTIPROC_DIR"] = path
    return path


def serve() -> Any:
    """The app, as each API process loads it (uvicorn's factory)."""
    import multiprocessing

    _logging(os.environ.get("GLIDEPATH_LOG_LEVEL", "info"))
    parent = multiprocessing.parent_process()
    if parent is not None:
        # One of several: die with the supervisor, or a SIGKILLed `glidepath api` would leave
        # its processes serving the port.
        PR_SET_PDEATHSIG = 1
        ctypes.CDLL("libc.so.6", use_errno=True).prctl(PR_SET_PDEATHSIG, signal.SIGTERM)
        if os.getppid() != parent.pid:  # it died before we asked
            os.kill(os.getpid(), signal.SIGTERM)
    from service.app import app
    from service.kit import gc_pauses

    gc_pauses.install()  # a server's full collections walked ~10^6 long-lived objects
    return app


def _open_files(wanted: int) -> None:
    """Raise this process's open-files limit (inherited by its children) towards `wanted`: each
    open connection is a descriptor, and the usual soft limit is 1,024."""
    import resource

    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if hard != resource.RLIM_INFINITY:
        wanted = min(wanted, hard)
    if soft != resource.RLIM_INFINITY and soft < wanted:
        resource.setrlimit(resource.RLIMIT_NOFILE, (wanted, hard))


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

    from worker.celery_app import celery_app, queues_for, quiet_task_lines

    if log_level.lower() != "debug":
        quiet_task_lines()

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
    try:
        celery_app.worker_main(argv)
    finally:
        # The interpreter's exit collects every object (torch, scikit-learn, Celery: ~250k):
        # 2-3 s of a stopping worker on 2 vCPUs. Frozen objects are skipped; the OS frees them.
        gc.freeze()


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
        api(host=host, port=port, workers=1, log_level="info")
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

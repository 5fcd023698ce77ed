"""GET /metrics with 10,000 runs stored: how long a scrape takes on a real API process.

    .venv/bin/python benchmarks/metrics_scrape.py                    # both stacks
    .venv/bin/python benchmarks/metrics_scrape.py --stack embedded   # SQLite + file broker
    .venv/bin/python benchmarks/metrics_scrape.py --runs 10000 --epochs 10 --scrapes 200

Each stack gets a fresh database (SQLite; PostgreSQL at GLIDEPATH_TEST_PG with Redis at
--redis-url), filled through SQL with `--runs` runs (most ended, some queued, running or
cancelled), `--epochs` epoch rows per started run, a decision per ten runs, and four registered
workers; then `glidepath api` starts on it. Timed, as a client sees it (request sent → body
read, one kept-alive connection):

- baseline: GET /healthz, in the same run; and GET /v1/workers, a guarded route that reads
  the database (a session, the token check, one small query), for what any such route costs;
- first: the process's first scrape, which reads the whole history once;
- steady, idle: scrapes with nothing new between them;
- steady, live: before each scrape (untimed) one new run and --live-epochs epoch rows arrive;
- the same in-process: the route's `render` called in this script's own process on a session
  of its own (the database, the broker and the text, without HTTP).

The database is VACUUM ANALYZEd (ANALYZE on SQLite) after the bulk load, as autovacuum would.

Prints p50/p99 of each against the target (a scrape ≤ 10 ms with 10,000 runs).
"""

from __future__ import annotations

import argparse
import contextlib
import random
import statistics
import sys
import tempfile
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import httpx
from prometheus_client.parser import text_string_to_metric_families
from sqlalchemy import create_engine, func, insert, select, text
from sqlalchemy.engine import Engine
from sqlalchemy.orm import Session

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from benchmarks.load_test import backend_for
from service.experiments.models import Decision, EpochRow, Experiment
from service.kit import migrate
from service.workers.models import WorkerRow
from tests.support.stack import Backend, start_stack

TARGET_MS = 10.0
SPEC: dict[str, Any] = {"name": "bench", "dataset": "digits", "model": {"type": "mlp"},
                        "base_lr": 0.05, "epochs": 10}  # fmt: skip
ENDED = ["succeeded"] * 6 + ["early_stopped", "failed", "diverged"]


def fill(engine: Engine, runs: int, epochs: int) -> dict[str, int]:
    """The runs, their epochs and decisions, and the workers, in a few large INSERTs."""
    rng = random.Random(0)
    now = datetime.now(UTC)
    run_rows, counts = [], {"epochs": 0, "decisions": 0}
    for i in range(runs):
        r = rng.random()
        status = ("queued" if r < 0.05 else "running" if r < 0.06 else "cancelled" if r < 0.1
                  else rng.choice(ENDED))  # fmt: skip
        created = now - timedelta(seconds=runs - i)
        started = None if status in ("queued", "cancelled") else created + timedelta(
            seconds=rng.expovariate(1 / 30))  # fmt: skip
        run_rows.append({"name": f"bench-{i}", "spec": SPEC, "status": status, "queue": "auto",
                         "created_at": created, "updated_at": created, "started_at": started,
                         "attempt": 0 if started is None else 1,
                         "epochs_run": 0 if started is None else epochs})  # fmt: skip
    with engine.begin() as conn:
        conn.execute(insert(Experiment), run_rows)
        ids = list(conn.scalars(select(Experiment.id).where(Experiment.started_at.is_not(None))))
        batch: list[dict[str, Any]] = []
        for exp_id in ids:
            for epoch in range(1, epochs + 1):
                batch.append({"experiment_id": exp_id, "epoch": epoch, "lr": 0.05,
                              "train_loss": 1.0 / epoch, "val_loss": 1.0 / epoch,
                              "duration_s": rng.lognormvariate(-1, 0.5), "attempt": 1,
                              "created_at": now})  # fmt: skip
            if len(batch) >= 20_000:
                conn.execute(insert(EpochRow), batch)
                counts["epochs"] += len(batch)
                batch = []
        conn.execute(insert(EpochRow), batch)
        counts["epochs"] += len(batch)
        decisions = [{"experiment_id": exp_id, "epoch": epochs, "kind": "reduce_lr",
                      "reason": "plateau"} for exp_id in ids[::10]]  # fmt: skip
        conn.execute(insert(Decision), decisions)
        counts["decisions"] = len(decisions)
        conn.execute(insert(WorkerRow), [
            {"id": f"bench-host:{p}", "host": "bench-host", "pid": p, "queues": ["auto", "cpu"],
             "devices": [], "plugins": {"models": {}, "datasets": {}}, "current_run": None,
             "started_at": now, "last_seen": now} for p in range(4)])  # fmt: skip
    counts["runs"] = runs
    return counts


def live_rows(engine: Engine, epochs: int, serial: int) -> None:
    """What a busy fleet adds between two scrapes: a new run, and epochs of a running one."""
    now = datetime.now(UTC)
    with engine.begin() as conn:
        run = insert(Experiment).values(
            name=f"live-{serial}", spec=SPEC, status="running", queue="auto", created_at=now,
            updated_at=now, started_at=now, attempt=1)  # fmt: skip
        exp_id = conn.execute(run.returning(Experiment.id)).scalar_one()
        conn.execute(insert(EpochRow), [
            {"experiment_id": exp_id, "epoch": e, "lr": 0.05, "duration_s": 0.2, "attempt": 1,
             "created_at": now} for e in range(1, epochs + 1)])  # fmt: skip


def timed(client: httpx.Client, path: str) -> float:
    t0 = time.perf_counter()
    r = client.get(path)
    elapsed = (time.perf_counter() - t0) * 1000
    r.raise_for_status()
    return elapsed


def pct(xs: list[float], q: int) -> float:
    return statistics.quantiles(xs, n=100, method="inclusive")[q - 1] if len(xs) > 1 else xs[0]


def line(label: str, xs: list[float], baseline: list[float] | None = None) -> str:
    p50, p99 = pct(xs, 50), pct(xs, 99)
    out = f"  {label:<22} p50 {p50:7.2f} ms   p99 {p99:7.2f} ms"
    if baseline is not None:
        b50 = pct(baseline, 50)
        verdict = "met" if p99 <= TARGET_MS else "MISSED"
        out += f"   {p50 / b50:5.2f}x /healthz p50   target p99 <= {TARGET_MS:.0f} ms: {verdict}"
    return out


def in_process(
    engine: Engine, backend: Backend, args: argparse.Namespace
) -> tuple[list[float], list[float], list[float]]:
    """`render` called here, on a session of our own: the database, the broker and the text,
    without uvicorn, the middlewares or the client. First, idle, then live (rows added untimed)."""
    from service.config import settings
    from service.monitoring.router import render

    settings.broker_url, settings.data_dir = backend.broker_url, backend.data_dir

    def once() -> float:
        with Session(engine) as session:
            t0 = time.perf_counter()
            render(session)
            return (time.perf_counter() - t0) * 1000

    first = [once()]
    cpu0 = time.process_time()
    idle = [once() for _ in range(args.scrapes)]
    cpu_ms = (time.process_time() - cpu0) * 1000 / args.scrapes
    live = []
    for i in range(args.scrapes):
        live_rows(engine, args.live_epochs, 10_000 + i)
        live.append(once())
    return [*first, cpu_ms], idle, live


def run_stack(kind: str, args: argparse.Namespace, root: Path) -> None:
    with backend_for(kind, root, args.redis_url) as made:
        backend = Backend(made.name, made.database_url, made.broker_url, made.data_dir,
                          migrated=True)  # fmt: skip
        backend.data_dir.mkdir(parents=True, exist_ok=True)
        migrate.upgrade(backend.database_url)
        engine = create_engine(backend.database_url)
        t0 = time.perf_counter()
        counts = fill(engine, args.runs, args.epochs)
        with engine.connect() as conn:
            stored = conn.scalar(select(func.count()).select_from(EpochRow))
        took = time.perf_counter() - t0
        print(f"{kind}: stored {counts['runs']} runs, {stored} epoch rows, "
              f"{counts['decisions']} decisions in {took:.1f} s", flush=True)  # fmt: skip
        # What autovacuum does after a bulk load: planner statistics, and on PostgreSQL the
        # visibility map that lets a count read the (status, id) index alone.
        with engine.connect().execution_options(isolation_level="AUTOCOMMIT") as conn:
            conn.execute(text("VACUUM ANALYZE" if kind == "postgres" else "ANALYZE"))
        inproc = in_process(engine, backend, args)
        with contextlib.ExitStack() as stack_cm:
            stack = stack_cm.enter_context(start_stack(backend, root / f"logs-{kind}", workers=0))
            client = stack_cm.enter_context(httpx.Client(base_url=stack.url, timeout=30))
            for _ in range(20):  # warm the connection and the route
                timed(client, "/healthz")
            health = [timed(client, "/healthz") for _ in range(args.scrapes)]
            guarded = [timed(client, "/v1/workers") for _ in range(args.scrapes)]
            first = timed(client, "/metrics")
            idle = [timed(client, "/metrics") for _ in range(args.scrapes)]
            live = []
            for i in range(args.scrapes):
                live_rows(engine, args.live_epochs, i)
                live.append(timed(client, "/metrics"))
            body = client.get("/metrics").text
        engine.dispose()
    epochs_line = next(ln for ln in body.splitlines() if ln.startswith("glidepath_epochs_total"))
    print(f"  first scrape           {first:7.2f} ms (reads the whole history once)")
    print(line("baseline GET /healthz", health))
    print(line("GET /v1/workers", guarded))
    print(line("steady, idle", idle, health))
    print(line(f"steady, live (+{args.live_epochs} ep)", live, health))
    print(f"  in-process render (the route's work without HTTP, a process of its own): first "
          f"{inproc[0][0]:.1f} ms; idle, this process's CPU {inproc[0][1]:.2f} ms a scrape "
          "(the database server's not counted)")  # fmt: skip
    print(line("  idle", inproc[1]))
    print(line(f"  live (+{args.live_epochs} ep)", inproc[2]))
    print(f"  last scrape says: {epochs_line}")
    print(f"  the API's own mean time per request (its HTTP histogram): {server_means(body)}",
          flush=True)  # fmt: skip


def server_means(body: str) -> str:
    """Mean time from request arrival to response start, by route, as the API measured it."""
    sums: dict[str, dict[str, float]] = {}
    for family in text_string_to_metric_families(body):
        if family.name == "glidepath_http_request_duration_seconds":
            for s in family.samples:
                if s.name.endswith(("_sum", "_count")):
                    sums.setdefault(s.labels["route"], {})[s.name.rsplit("_", 1)[1]] = s.value
    return ", ".join(f"{route} {v['sum'] / v['count'] * 1000:.2f} ms"
                     for route, v in sorted(sums.items()) if v.get("count"))  # fmt: skip


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    ap.add_argument("--stack", choices=["embedded", "postgres", "both"], default="both")
    ap.add_argument("--redis-url", default="redis://127.0.0.1:6379/12")
    ap.add_argument("--runs", type=int, default=10_000)
    ap.add_argument("--epochs", type=int, default=10, help="epoch rows per started run")
    ap.add_argument("--scrapes", type=int, default=200, help="timed scrapes of each kind")
    ap.add_argument("--live-epochs", type=int, default=20, help="epoch rows added per live scrape")
    args = ap.parse_args()
    kinds = ["embedded", "postgres"] if args.stack == "both" else [args.stack]
    for kind in kinds:
        with tempfile.TemporaryDirectory(prefix=f"glidepath-metrics-{kind}-") as tmp:
            run_stack(kind, args, Path(tmp))
    return 0


if __name__ == "__main__":
    sys.exit(main())

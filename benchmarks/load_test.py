"""Load test: many small experiments through a real API and N real workers; none may be lost.

Starts `glidepath api` and `--workers` × `glidepath worker` (tests/support/stack.py), submits
`--experiments` small runs (iris; linear or MLP [16]; batch 32; `--epochs` epochs; varied seeds
and base_lr; no scheduler / StepLR / CosineAnnealingLR / ReduceLROnPlateau) with
`POST /v1/experiments` as fast as it can, polls `GET /v1/experiments?status=queued,running` until
none is left, then checks every run: status `succeeded`, epoch rows exactly 1..epochs from
`GET /v1/experiments/{id}/metrics`, and exactly the submitted ids under this run's tag (nothing
lost, nothing created twice).

    .venv/bin/python benchmarks/load_test.py                    # PostgreSQL + Redis (default)
    .venv/bin/python benchmarks/load_test.py --stack embedded   # SQLite + file-system broker
    .venv/bin/python benchmarks/load_test.py --experiments 200 --workers 2 --epochs 3

`--stack postgres` uses a fresh database from tests/conftest.py's create_pg_database()
(127.0.0.1:5432, or GLIDEPATH_TEST_PG), dropped at the end, and Redis `--redis-url`
(default redis://127.0.0.1:6379/12), flushed first. `--stack embedded` keeps its SQLite file
and broker folder in a temporary directory. Process logs are deleted after a clean run and kept
(path printed) after a failed one or with `--keep-logs`.

Figures (times are the server's created_at/started_at/finished_at; wall starts at the first POST):
  submission     experiments / seconds spent in the POSTs (`--submit-threads` at a time)
  wall           first POST → the last finished_at
  throughput     experiments / wall and epochs / wall
  busy fraction  Σ(finished_at − started_at) over all runs / (workers × wall): the share of
                 worker capacity spent inside runs; the rest is pickup, broker and idle time
  queue wait     started_at − created_at, p50 / p95 / max: how long a run waited for a worker
  run time       finished_at − started_at, mean / p95: claim, build, train, per-epoch writes
  first pickup   first POST → the earliest started_at
  per worker     from each worker's log: Celery tasks it finished, the time Celery spent in
                 them / wall, and deliveries it did not claim (duplicates, e.g. re-sends of a
                 run still queued after GLIDEPATH_RESEND_AFTER_SECONDS)

Exit status: 0 when every experiment succeeded with all its epochs; 1 when any failed, went
missing, was duplicated or has missing or extra epoch rows; 2 when the runs did not all end
within `--timeout` seconds.
"""

from __future__ import annotations

import argparse
import itertools
import math
import re
import shutil
import sys
import tempfile
import time
import uuid
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import httpx

from tests.support.stack import Backend, Stack, start_stack

SCHEDULERS: list[dict[str, Any] | None] = [
    None,
    {"type": "StepLR", "params": {"step_size": 1, "gamma": 0.5}},
    {"type": "CosineAnnealingLR", "params": {"T_max": 3}},  # T_max is set to --epochs
    {"type": "ReduceLROnPlateau", "params": {"factor": 0.5, "patience": 0}},
]
TAG = "load_test"


@dataclass(frozen=True)
class Run:
    """One experiment as the API reports it once final."""

    id: int
    status: str
    attempt: int
    epochs_run: int
    created_at: datetime
    started_at: datetime | None
    finished_at: datetime | None
    error: str | None

    @classmethod
    def of(cls, body: dict[str, Any]) -> Run:
        return cls(
            id=body["id"],
            status=body["status"],
            attempt=body["attempt"],
            epochs_run=body["epochs_run"],
            created_at=_time(body["created_at"]),
            started_at=_time(body["started_at"]) if body["started_at"] else None,
            finished_at=_time(body["finished_at"]) if body["finished_at"] else None,
            error=body["error"],
        )

    @property
    def run_s(self) -> float:
        assert self.started_at and self.finished_at
        return (self.finished_at - self.started_at).total_seconds()

    @property
    def wait_s(self) -> float:
        assert self.started_at
        return (self.started_at - self.created_at).total_seconds()


@dataclass(frozen=True)
class WorkerLog:
    """What one worker's log says it did."""

    name: str
    tasks: int  # Celery tasks finished, claimed or not
    task_s: float  # Σ the "succeeded in Xs" Celery reports
    not_claimed: int  # deliveries of a run held elsewhere or already ended


def _time(value: str) -> datetime:
    dt = datetime.fromisoformat(value)
    return dt if dt.tzinfo else dt.replace(tzinfo=UTC)


def spec(i: int, epochs: int, tag: str) -> dict[str, Any]:
    """The i-th small experiment: iris, a mix of models, LRs, seeds and schedulers."""
    scheduler = SCHEDULERS[i % len(SCHEDULERS)]
    if scheduler is not None and scheduler["type"] == "CosineAnnealingLR":
        scheduler = {**scheduler, "params": {"T_max": epochs}}
    model: dict[str, Any] = {"type": "linear"} if i % 2 == 0 else {"type": "mlp", "hidden": [16]}
    body: dict[str, Any] = {
        "name": f"load-{i:04d}",
        "dataset": "iris",
        "model": model,
        "solver": {"type": "SGD", "params": {"momentum": 0.9}},
        "base_lr": round(0.01 * (1 + i % 10), 4),
        "epochs": epochs,
        "batch_size": 32,
        "seed": i,
        "tags": {TAG: tag},
    }
    if scheduler is not None:
        body["scheduler"] = scheduler
    return body


def submit(client: httpx.Client, body: dict[str, Any], key: str, tries: int = 3) -> int:
    """POST one experiment; a transport error is retried with the same Idempotency-Key, so a
    retry can never create a second experiment."""
    for attempt in range(1, tries + 1):
        try:
            r = client.post("/v1/experiments", json=body, headers={"Idempotency-Key": key})
        except httpx.TransportError:
            if attempt == tries:
                raise
            time.sleep(0.2 * attempt)
            continue
        if r.status_code not in (200, 201):
            raise RuntimeError(f"POST {body['name']}: {r.status_code} {r.text[:500]}")
        return int(r.json()["id"])
    raise AssertionError("unreachable")


def list_all(client: httpx.Client, params: dict[str, str]) -> list[dict[str, Any]]:
    """Every experiment matching `params`, following the keyset cursor."""
    items: list[dict[str, Any]] = []
    cursor: str | None = None
    while True:
        query = {**params, "limit": "500", **({"cursor": cursor} if cursor else {})}
        r = client.get("/v1/experiments", params=query)
        r.raise_for_status()
        page = r.json()
        items.extend(page["items"])
        cursor = page["next_cursor"]
        if not cursor:
            return items


def percentile(values: list[float], p: float) -> float:
    """Nearest-rank percentile (p in 0..100) of a non-empty list."""
    ordered = sorted(values)
    return ordered[max(0, math.ceil(p / 100 * len(ordered)) - 1)]


def read_worker_logs(log_dir: Path) -> list[WorkerLog]:
    done = re.compile(r"Task \S+\[[^]]+\] succeeded in ([0-9.]+)s")
    out = []
    for log in sorted(log_dir.glob("w*.log")):
        text = log.read_text(errors="replace")
        seconds = [float(m) for m in done.findall(text)]
        out.append(WorkerLog(log.stem, len(seconds), sum(seconds), text.count("not_claimed")))
    return out


def read_api_housekeeping(log_dir: Path) -> dict[str, int]:
    """Totals of the API's `housekeeping sent=N resent=N reaped=N ...` events."""
    totals: dict[str, int] = {}
    api_log = log_dir / "api.log"
    if not api_log.exists():
        return totals
    for line in api_log.read_text(errors="replace").splitlines():
        if " housekeeping " in line:  # structured: `[info ] housekeeping  reaped=1 sent=3 ...`
            for name, n in re.findall(r"([a-z_]+)=(\d+)", line.split(" housekeeping ", 1)[1]):
                totals[name] = totals.get(name, 0) + int(n)
    return totals


@contextmanager
def backend_for(stack_kind: str, root: Path, redis_url: str) -> Iterator[Backend]:
    data_dir = root / "data"
    if stack_kind == "embedded":
        yield Backend("embedded", f"sqlite:///{data_dir / 'glidepath.db'}", "", data_dir)
        return
    import redis

    from tests.support.backends import PG_HOST
    from tests.support.databases import PostgresDatabases

    redis.Redis.from_url(redis_url).flushdb()
    databases = PostgresDatabases(PG_HOST)
    database_url = databases.empty()  # `start_stack` migrates it
    try:
        yield Backend("postgres", database_url, redis_url, data_dir)
    finally:
        databases.drop(database_url)


def run_load(stack: Stack, args: argparse.Namespace) -> int:
    n, epochs = args.experiments, args.epochs
    tag = uuid.uuid4().hex[:12]
    bodies = [spec(i, epochs, tag) for i in range(n)]
    limits = httpx.Limits(max_connections=args.submit_threads + 2)
    with httpx.Client(base_url=stack.url, timeout=30, limits=limits) as client:
        # --- submit
        t_first_post = datetime.now(UTC)
        t0 = time.monotonic()
        with ThreadPoolExecutor(args.submit_threads) as pool:
            ids = list(
                pool.map(lambda ib: submit(client, ib[1], f"{tag}-{ib[0]}"), enumerate(bodies))
            )
        submit_s = time.monotonic() - t0
        print(f"submitted {n} experiments in {submit_s:.2f}s ({n / submit_s:.1f}/s)", flush=True)

        # --- wait until none is queued or running (a one-row query per poll, so that polling
        # costs the API little; the full count only for the progress line every 10 s)
        open_filter = {"tag": f"{TAG}:{tag}", "status": "queued,running"}
        deadline = t0 + args.timeout
        last_report = t0
        while True:
            r = client.get("/v1/experiments", params={**open_filter, "limit": "1"})
            r.raise_for_status()
            now = time.monotonic()
            if not r.json()["items"]:
                break
            if now - last_report >= 10 or now > deadline:
                open_runs = list_all(client, open_filter)
                running = sum(1 for e in open_runs if e["status"] == "running")
                print(
                    f"  t={now - t0:6.1f}s  final {n - len(open_runs):4d}/{n}  "
                    f"running {running}  queued {len(open_runs) - running}",
                    flush=True,
                )
                last_report = now
            if now > deadline:
                print(f"TIMEOUT: not all {n} final after {args.timeout}s")
                return 2
            time.sleep(args.poll_s)
        observed_s = time.monotonic() - t0

        # --- verify
        problems: list[str] = []
        listed = list_all(client, {"tag": f"{TAG}:{tag}"})
        runs = {e["id"]: Run.of(e) for e in listed}
        if len(ids) != len(set(ids)):
            problems.append(f"{len(ids) - len(set(ids))} POSTs returned an id already returned")
        missing = set(ids) - set(runs)
        extra = set(runs) - set(ids)
        if missing:
            problems.append(
                f"lost: {len(missing)} submitted ids not listed: {sorted(missing)[:20]}"
            )
        if extra:
            problems.append(f"{len(extra)} listed ids never submitted: {sorted(extra)[:20]}")
        for run in sorted(runs.values(), key=lambda r: r.id):
            if run.status != "succeeded":
                problems.append(f"experiment {run.id}: {run.status} ({run.error})")
            if run.epochs_run != epochs:
                problems.append(f"experiment {run.id}: epochs_run {run.epochs_run} != {epochs}")
            if run.started_at is None or run.finished_at is None:
                problems.append(f"experiment {run.id}: started_at/finished_at missing")
            r = client.get(f"/v1/experiments/{run.id}/metrics", params={"limit": "10000"})
            r.raise_for_status()
            got = [row["epoch"] for row in r.json()["epochs"]]
            if got != list(range(1, epochs + 1)):
                problems.append(f"experiment {run.id}: epoch rows {got}, expected 1..{epochs}")

    # --- figures
    timed = [r for r in runs.values() if r.started_at and r.finished_at]
    print()
    print(f"stack {stack.backend.name}: {n} experiments × {epochs} epochs, {args.workers} workers")
    print(f"  submission      {n / submit_s:8.1f} experiments/s  ({submit_s:.2f}s for {n} POSTs)")
    if timed:
        last_final = max(r.finished_at for r in timed if r.finished_at)
        first_start = min(r.started_at for r in timed if r.started_at)
        wall = (last_final - t_first_post).total_seconds()
        busy = sum(r.run_s for r in timed)
        waits = [r.wait_s for r in timed]
        run_times = [r.run_s for r in timed]
        epochs_done = sum(r.epochs_run for r in runs.values())
        print(f"  wall            {wall:8.2f} s  first POST → last finished_at")
        print(f"                  {observed_s:8.2f} s  first POST → poll saw all final")
        print(f"  throughput      {len(timed) / wall:8.2f} experiments/s")
        print(f"                  {epochs_done / wall:8.2f} epochs/s")
        print(
            f"  busy fraction   {busy / (args.workers * wall):8.1%}  "
            f"Σ run time {busy:.1f}s / ({args.workers} workers × {wall:.1f}s)"
        )
        print(
            f"  queue wait      p50 {percentile(waits, 50):.2f}s  p95 {percentile(waits, 95):.2f}s"
            f"  max {max(waits):.2f}s"
        )
        print(
            f"  run time        mean {sum(run_times) / len(run_times):.3f}s  "
            f"p95 {percentile(run_times, 95):.3f}s  max {max(run_times):.3f}s"
        )
        print(f"  first pickup    {(first_start - t_first_post).total_seconds():8.2f} s")
        for w in read_worker_logs(stack.log_dir):
            print(
                f"  worker {w.name:8s} {w.tasks:4d} tasks  Celery busy {w.task_s / wall:6.1%}  "
                f"not claimed {w.not_claimed}"
            )
    restarted = [r.id for r in runs.values() if r.attempt > 1]
    housekeeping = read_api_housekeeping(stack.log_dir)
    print(f"  attempts > 1    {len(restarted)} {sorted(restarted)[:20] if restarted else ''}")
    print(
        "  API relay       "
        + (", ".join(f"{k} {v}" for k, v in sorted(housekeeping.items())) or "nothing to do")
    )
    print()
    if problems:
        print(f"FAILED: {len(problems)} problem(s)")
        for p in itertools.islice(problems, 50):
            print(f"  {p}")
        return 1
    print(f"OK: all {n} experiments succeeded with epochs 1..{epochs}; none lost or duplicated")
    return 0


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--stack", choices=["embedded", "postgres"], default="postgres")
    parser.add_argument("--experiments", type=int, default=200)
    parser.add_argument("--workers", type=int, default=2)
    parser.add_argument("--epochs", type=int, default=3)
    parser.add_argument("--timeout", type=float, default=600, help="seconds, from first POST")
    parser.add_argument("--submit-threads", type=int, default=4, help="concurrent POSTs")
    parser.add_argument("--poll-s", type=float, default=0.5, help="seconds between polls")
    parser.add_argument("--redis-url", default="redis://127.0.0.1:6379/12")
    parser.add_argument("--keep-logs", action="store_true", help="keep the process logs")
    args = parser.parse_args()

    root = Path(tempfile.mkdtemp(prefix="glidepath-load-"))
    code = 1
    try:
        with (
            backend_for(args.stack, root, args.redis_url) as backend,
            start_stack(backend, root / "logs", workers=args.workers) as stack,
        ):
            code = run_load(stack, args)
            if code != 0:
                print(stack.logs()[-6000:])
    finally:
        if code == 0 and not args.keep_logs:
            shutil.rmtree(root, ignore_errors=True)
        else:
            print(f"logs and data kept in {root}")
    return code


if __name__ == "__main__":
    sys.exit(main())

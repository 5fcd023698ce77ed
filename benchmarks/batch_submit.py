"""A 1,000-spec batch through a real API process, against the same specs POSTed one at a time.

Starts `glidepath api` (no worker: only acceptance is measured) on the embedded default or on
PostgreSQL + Redis, then times, in the same run:
  batch     POST /v1/batches with N distinct specs (every one validated against torch:
            solver dry run and scheduler walk), inserted with their outbox rows in one
            transaction and their N tasks sent to the broker, until the 201 arrives
  singles   the same N specs as N sequential POST /v1/experiments (the baseline)

    .venv/bin/python benchmarks/batch_submit.py                    # PostgreSQL + Redis
    .venv/bin/python benchmarks/batch_submit.py --stack embedded   # SQLite + file broker
    .venv/bin/python benchmarks/batch_submit.py --distinct 20      # sweep-shaped: 20 configs

The specs differ in base_lr and seed and cycle through five schedules (StepLR, cosine with
warmup, OneCycleLR per step, ReduceLROnPlateau, constant); `--distinct K` repeats K
configurations (the shape of a sweep over seeds), the default makes every spec's schedule
walk distinct. Target: the batch accepted in under 2 s.
"""

from __future__ import annotations

import argparse
import statistics
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import httpx

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from benchmarks.load_test import backend_for
from tests.support.stack import start_stack

SCHEDULES: list[dict[str, Any] | None] = [
    {"type": "StepLR", "params": {"step_size": 5, "gamma": 0.5}},
    {"type": "CosineAnnealingLR", "params": {"T_max": 20}},
    {"type": "OneCycleLR", "params": {"max_lr": 1.0}},
    {"type": "ReduceLROnPlateau", "params": {"factor": 0.5, "patience": 2}},
    None,
]


def spec(i: int, n: int, distinct: int) -> dict[str, Any]:
    k = i % distinct
    body: dict[str, Any] = {
        "name": f"batch-{i}",
        "dataset": "digits",
        "model": {"type": "mlp", "hidden": [32]},
        "solver": {"type": "SGD", "params": {"momentum": 0.9}},
        "base_lr": round(10 ** (-4 + 3.9 * k / max(distinct - 1, 1)), 8),
        "epochs": 20,
        "seed": i,
        "tags": {"bench": "batch"},
    }
    schedule = SCHEDULES[k % len(SCHEDULES)]
    if schedule is not None:
        body["scheduler"] = schedule
    if k % len(SCHEDULES) == 1:
        body["warmup"] = {"epochs": 2}
    return body


def drained(database_url: str, timeout_s: float = 120) -> None:
    """Wait until the previous batch's tasks have all been sent (they go out in the background
    after the 201), so each measurement starts from a quiet service."""
    from sqlalchemy import func, select

    from service.dispatch.models import OutboxMessage
    from service.kit.db import make_engine

    engine = make_engine(database_url)
    deadline = time.monotonic() + timeout_s
    q = select(func.count()).select_from(OutboxMessage).where(OutboxMessage.sent_at.is_(None))
    try:
        while time.monotonic() < deadline:
            with engine.connect() as conn:
                if conn.scalar(q) == 0:
                    return
            time.sleep(0.2)
    finally:
        engine.dispose()


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    ap.add_argument("--stack", choices=["embedded", "postgres"], default="postgres")
    ap.add_argument("--redis-url", default="redis://127.0.0.1:6379/12")
    ap.add_argument("--n", type=int, default=1000)
    ap.add_argument("--distinct", type=int, default=0, help="distinct configs (0 = all)")
    ap.add_argument("--repeats", type=int, default=3)
    args = ap.parse_args()
    distinct = args.distinct or args.n
    bodies = [spec(i, args.n, distinct) for i in range(args.n)]
    with (
        tempfile.TemporaryDirectory() as tmp,
        backend_for(args.stack, Path(tmp), args.redis_url) as backend,
        start_stack(backend, Path(tmp) / "logs", workers=0) as stack,
        httpx.Client(base_url=stack.url, timeout=120) as client,
    ):
        client.post("/v1/batches", json={"experiments": bodies[:5]}).raise_for_status()
        batch = []
        for _ in range(args.repeats):
            drained(backend.database_url)
            t0 = time.perf_counter()
            r = client.post("/v1/batches", json={"experiments": bodies})
            batch.append(time.perf_counter() - t0)
            assert r.status_code == 201 and len(r.json()["ids"]) == args.n, r.text[:300]
        drained(backend.database_url)
        t0 = time.perf_counter()
        for body in bodies:
            client.post("/v1/experiments", json=body).raise_for_status()
        singles = time.perf_counter() - t0
    best, med = min(batch), statistics.median(batch)
    print(f"stack={args.stack} n={args.n} distinct configs={distinct} repeats={args.repeats}")
    verdict = "met" if med < 2 else "MISSED"
    print(f"batch    POST /v1/batches      best {best:.3f} s  median {med:.3f} s  "
          f"({args.n / med:.0f} specs/s)  target < 2 s: {verdict}")  # fmt: skip
    print(f"singles  {args.n} × POST /v1/experiments  {singles:.3f} s  ({args.n / singles:.0f}/s)")
    print(f"ratio    batch / singles = {med / singles:.3f}")
    return 0 if med < 2 else 1


if __name__ == "__main__":
    sys.exit(main())

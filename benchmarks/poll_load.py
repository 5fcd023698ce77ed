"""Metrics polling under load: N concurrent pollers against a real API process while a worker
writes epochs, each poller doing what the dashboard does (GET …/metrics?after_epoch=<cursor>,
then wait `--interval` seconds).

    .venv/bin/python benchmarks/poll_load.py                    # PostgreSQL + Redis
    .venv/bin/python benchmarks/poll_load.py --stack embedded   # SQLite + file broker
    .venv/bin/python benchmarks/poll_load.py --pollers 200 --interval 1 --seconds 20

Baseline, measured in the same run: one poller alone on the same experiment. Prints latency
percentiles for both and the loaded p99 against the target (≤ 25 ms at 200 pollers) and as a
ratio to the unloaded p99. Latency is the client's: request sent → response body read.
"""

from __future__ import annotations

import argparse
import asyncio
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

SPEC: dict[str, Any] = {
    "name": "poll-target",
    "dataset": "digits",
    "model": {"type": "mlp", "hidden": [64]},
    "solver": {"type": "SGD", "params": {"momentum": 0.9}},
    "base_lr": 0.05,
    "scheduler": {"type": "ReduceLROnPlateau", "params": {"patience": 3}},
    "epochs": 100_000,  # outlives the measurement; cancelled at the end
}


async def poller(
    client: httpx.AsyncClient, exp_id: int, interval: float, until: float, out: list[float]
) -> None:
    cursor = 0
    await asyncio.sleep(interval * (hash((id(out), len(out))) % 1000) / 1000)  # spread starts
    while time.monotonic() < until:
        t0 = time.perf_counter()
        r = await client.get(f"/v1/experiments/{exp_id}/metrics", params={"after_epoch": cursor})
        out.append(time.perf_counter() - t0)
        r.raise_for_status()
        cursor = r.json()["next_after_epoch"]
        await asyncio.sleep(max(0.0, interval - (time.perf_counter() - t0)))


async def measure(
    url: str, exp_id: int, pollers: int, interval: float, seconds: float
) -> list[float]:
    limits = httpx.Limits(max_connections=pollers + 10, max_keepalive_connections=pollers + 10)
    async with httpx.AsyncClient(base_url=url, timeout=30, limits=limits) as client:
        until = time.monotonic() + seconds
        latencies: list[list[float]] = [[] for _ in range(pollers)]
        await asyncio.gather(
            *(poller(client, exp_id, interval, until, latencies[i]) for i in range(pollers))
        )
    return [x for xs in latencies for x in xs]


def pct(xs: list[float], q: float) -> float:
    return statistics.quantiles(xs, n=1000)[int(q * 10) - 1] * 1000 if len(xs) > 1 else xs[0] * 1000


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    ap.add_argument("--stack", choices=["embedded", "postgres"], default="postgres")
    ap.add_argument("--redis-url", default="redis://127.0.0.1:6379/12")
    ap.add_argument("--pollers", type=int, default=200)
    ap.add_argument("--interval", type=float, default=1.0, help="seconds between a poller's GETs")
    ap.add_argument("--seconds", type=float, default=20.0)
    args = ap.parse_args()
    with (
        tempfile.TemporaryDirectory() as tmp,
        backend_for(args.stack, Path(tmp), args.redis_url) as backend,
        start_stack(backend, Path(tmp) / "logs", workers=1) as stack,
        httpx.Client(base_url=stack.url, timeout=30) as c,
    ):
        exp_id = c.post("/v1/experiments", json=SPEC).json()["id"]
        deadline = time.monotonic() + 60
        while c.get(f"/v1/experiments/{exp_id}").json()["epochs_run"] < 20:
            assert time.monotonic() < deadline, stack.logs()
            time.sleep(0.2)
        alone = asyncio.run(measure(stack.url, exp_id, 1, 0.05, min(args.seconds, 5)))
        loaded = asyncio.run(measure(stack.url, exp_id, args.pollers, args.interval, args.seconds))
        epochs = c.get(f"/v1/experiments/{exp_id}").json()["epochs_run"]
        c.post(f"/v1/experiments/{exp_id}/cancel")
    print(f"stack={args.stack} pollers={args.pollers} interval={args.interval}s "
          f"seconds={args.seconds} (a worker wrote {epochs} epochs meanwhile)")  # fmt: skip
    for name, xs in (("alone", alone), ("loaded", loaded)):
        print(f"{name:7} n={len(xs):6}  p50 {pct(xs, 50):6.1f} ms  p95 {pct(xs, 95):6.1f} ms  "
              f"p99 {pct(xs, 99):6.1f} ms  max {max(xs) * 1000:6.1f} ms")  # fmt: skip
    p99 = pct(loaded, 99)
    print(f"loaded p99 / alone p99 = {p99 / pct(alone, 99):.2f}; "
          f"target p99 ≤ 25 ms: {'met' if p99 <= 25 else 'MISSED'}")  # fmt: skip
    return 0 if p99 <= 25 else 1


if __name__ == "__main__":
    sys.exit(main())

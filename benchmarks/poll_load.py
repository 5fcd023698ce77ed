"""Metrics polling under load: N concurrent pollers against a real API process while a worker
writes epochs, each poller doing what the dashboard does (GET …/metrics?after_epoch=<cursor>,
then wait `--interval` seconds).

    .venv/bin/python benchmarks/poll_load.py                    # PostgreSQL + Redis
    .venv/bin/python benchmarks/poll_load.py --stack embedded   # SQLite + file broker
    .venv/bin/python benchmarks/poll_load.py --pollers 200 --interval 1 --seconds 20
    .venv/bin/python benchmarks/poll_load.py --api-workers 2       # 2 API processes, and 1

Baselines, measured in the same run: one poller alone on the same experiment; with
`--api-workers N` above 1, the same measurement with one API process first (a stack of its
own). Prints latency percentiles and the loaded p99 against the target (≤ 25 ms at 200 pollers
with --api-workers 2) and as ratios. Latency is the client's: request sent → response body
read. The pollers are this one asyncio process (plain HTTP/1.1 on asyncio streams, a
keep-alive connection each), on the same machine as the API, the worker and the database: they
share its cores. Each poller opens the run as a dashboard does: its first poll pages the
history from cursor 0 (printed apart: "first polls"), the next ones follow it. Also printed: the
polls answered per second, and the CPU per poll of the API processes and of the load generator.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import re
import statistics
import sys
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import httpx

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from benchmarks.load_test import backend_for
from benchmarks.proc_cpu import cpu_with_children
from tests.support.stack import start_stack

# The page's last field (service.page_json writes it last): read without parsing the page. A
# dashboard's first pages are 1,000 rows (~250 KB); 200 json.loads of those in this one process
# took ~0.5 s of its event loop, and every poller's latency waited on it.
NEXT = re.compile(rb'"next_after_epoch":(\d+)}$')

SPEC: dict[str, Any] = {
    "name": "poll-target",
    "dataset": "digits",
    "model": {"type": "mlp", "hidden": [64]},
    "solver": {"type": "SGD", "params": {"momentum": 0.9}},
    "base_lr": 0.05,
    "scheduler": {"type": "ReduceLROnPlateau", "params": {"patience": 3}},
    "epochs": 100_000,  # outlives the measurement; cancelled at the end
}


class Connection:
    """One keep-alive HTTP/1.1 connection on asyncio streams, GET only, for responses with a
    Content-Length (what the API sends): a load generator as lean as can be. httpx's async
    client spent 7.6 ms of CPU per request on this 2-core box, more than the API's ~4.4 ms, so
    the pollers measured mostly themselves."""

    def __init__(self, url: str) -> None:
        parsed = urlsplit(url)
        self.host, self.port = parsed.hostname or "127.0.0.1", parsed.port or 80
        self.streams: tuple[asyncio.StreamReader, asyncio.StreamWriter] | None = None

    async def get(self, target: str) -> tuple[int, bytes]:
        if self.streams is None:
            self.streams = await asyncio.open_connection(self.host, self.port)
        reader, writer = self.streams
        writer.write(f"GET {target} HTTP/1.1\r\nHost: {self.host}\r\n\r\n".encode())
        lines = (await reader.readuntil(b"\r\n\r\n")).lower().split(b"\r\n")
        headers = dict(line.split(b": ", 1) for line in lines[1:] if b": " in line)
        body = await reader.readexactly(int(headers[b"content-length"]))
        if headers.get(b"connection") == b"close":
            await self.close()
        return int(lines[0].split()[1]), body

    async def close(self) -> None:
        if self.streams is not None:
            self.streams[1].close()
            self.streams = None


def next_cursor(body: bytes) -> int:
    found = NEXT.search(body[-64:])
    return int(found.group(1)) if found else int(json.loads(body)["next_after_epoch"])


async def poller(
    url: str, exp_id: int, interval: float, until: float, out: list[float], first: list[float]
) -> None:
    cursor = 0
    connection = Connection(url)
    await asyncio.sleep(interval * (hash((id(out), len(out))) % 1000) / 1000)  # spread starts
    try:
        while time.monotonic() < until:
            t0 = time.perf_counter()
            status, body = await connection.get(
                f"/v1/experiments/{exp_id}/metrics?after_epoch={cursor}"
            )
            (out if cursor else first).append(time.perf_counter() - t0)
            assert status == 200, body
            cursor = next_cursor(body)
            await asyncio.sleep(max(0.0, interval - (time.perf_counter() - t0)))
    finally:
        await connection.close()


async def measure(
    url: str, exp_id: int, pollers: int, interval: float, seconds: float
) -> tuple[list[float], list[float]]:
    """The latencies of the polls after each poller's first, and of the first polls (cursor 0:
    the whole history)."""
    until = time.monotonic() + seconds
    latencies: list[list[float]] = [[] for _ in range(pollers)]
    firsts: list[float] = []
    await asyncio.gather(*(poller(url, exp_id, interval, until, out, firsts) for out in latencies))
    return [x for xs in latencies for x in xs], firsts


def pct(xs: list[float], q: float) -> float:
    # inclusive: within the samples (the default extrapolates past the largest of a few)
    qs = statistics.quantiles(xs, n=1000, method="inclusive") if len(xs) > 1 else xs * 999
    return qs[int(q * 10) - 1] * 1000


@dataclass
class Result:
    alone: list[float]
    following: list[float]  # every poll after each poller's first
    opening: list[float]  # each poller's first (cursor 0: the run's whole history)
    epochs: int
    api_cpu_s: float  # the API processes' CPU time during the loaded phase, all threads
    client_cpu_s: float  # the load generator's (this process's) meanwhile
    load: tuple[float, float]  # the machine's 1-minute load average before and after it

    @property
    def loaded(self) -> list[float]:
        """Every poll of the loaded phase."""
        return self.following + self.opening


def run(args: argparse.Namespace, api_workers: int) -> Result:
    """One fresh stack with `api_workers` API processes and one worker: the latencies of one
    poller alone, then of `--pollers` together, the API's CPU time meanwhile, and the epochs
    written."""
    with (
        tempfile.TemporaryDirectory() as tmp,
        backend_for(args.stack, Path(tmp), args.redis_url) as backend,
        start_stack(backend, Path(tmp) / "logs", 1, api_workers, ready_s=300) as stack,
        httpx.Client(base_url=stack.url, timeout=30) as c,
    ):
        exp_id = c.post("/v1/experiments", json=SPEC).json()["id"]
        deadline = time.monotonic() + 300  # the worker's start, on a loaded machine
        while c.get(f"/v1/experiments/{exp_id}").json()["epochs_run"] < 20:
            assert time.monotonic() < deadline, stack.logs()
            time.sleep(0.2)
        if api_workers > 1:  # every process has loaded the app and warmed its pool
            asyncio.run(measure(stack.url, exp_id, 2 * api_workers, 0.05, 2))
        alone, _ = asyncio.run(measure(stack.url, exp_id, 1, 0.05, min(args.seconds, 5)))
        api, load0 = stack.procs["api"].pid, os.getloadavg()[0]
        cpu0, mine = cpu_with_children(api), time.process_time()
        following, opening = asyncio.run(
            measure(stack.url, exp_id, args.pollers, args.interval, args.seconds)
        )
        cpu, load1 = cpu_with_children(api) - cpu0, os.getloadavg()[0]
        mine = time.process_time() - mine
        epochs = c.get(f"/v1/experiments/{exp_id}").json()["epochs_run"]
        c.post(f"/v1/experiments/{exp_id}/cancel")
    return Result(alone, following, opening, epochs, cpu, mine, (load0, load1))


def line(name: str, xs: list[float]) -> str:
    return (f"{name:18} n={len(xs):6}  p50 {pct(xs, 50):6.1f} ms  p95 {pct(xs, 95):6.1f} ms  "
            f"p99 {pct(xs, 99):6.1f} ms  max {max(xs) * 1000:6.1f} ms")  # fmt: skip


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    ap.add_argument("--stack", choices=["embedded", "postgres"], default="postgres")
    ap.add_argument("--redis-url", default="redis://127.0.0.1:6379/12")
    ap.add_argument("--pollers", type=int, default=200)
    ap.add_argument("--interval", type=float, default=1.0, help="seconds between a poller's GETs")
    ap.add_argument("--seconds", type=float, default=20.0)
    ap.add_argument(
        "--api-workers", type=int, default=1,
        help="API processes (glidepath api --workers N); above 1, one process is measured "
        "first on a stack of its own as the baseline",
    )  # fmt: skip
    args = ap.parse_args()
    counts = [1, args.api_workers] if args.api_workers > 1 else [1]
    results = {n: run(args, n) for n in counts}
    print(f"stack={args.stack} pollers={args.pollers} interval={args.interval}s "
          f"seconds={args.seconds}; load generator: this one asyncio process (a keep-alive "
          f"connection per poller, raw HTTP/1.1) on the same {os.cpu_count()}-core machine as "
          "the API processes, the worker and the database")  # fmt: skip
    for n, r in results.items():
        print(f"--api-workers {n} (a worker wrote {r.epochs} epochs meanwhile; load average "
              f"{r.load[0]:.1f} -> {r.load[1]:.1f})")  # fmt: skip
        print(line("  alone", r.alone))
        print(line("  loaded", r.loaded))
        print(line("    first polls", r.opening) + "  (cursor 0: a dashboard opening the run)")
        print(line("    the others", r.following))
        print(f"  loaded p99 / alone p99 = {pct(r.loaded, 99) / pct(r.alone, 99):.2f}; "
              f"{len(r.loaded) / args.seconds:.0f} polls/s answered of "
              f"{args.pollers / args.interval:.0f} asked; CPU per poll: API "
              f"{r.api_cpu_s / len(r.loaded) * 1000:.2f} ms, load generator "
              f"{r.client_cpu_s / len(r.loaded) * 1000:.2f} ms")  # fmt: skip
    p99 = pct(results[counts[-1]].loaded, 99)
    if len(counts) > 1:
        base = pct(results[1].loaded, 99)
        print(f"loaded p99 with {counts[-1]} API processes / with 1 = {p99 / base:.2f}")
    print(f"target p99 ≤ 25 ms with --api-workers {counts[-1]}: "
          f"{'met' if p99 <= 25 else 'MISSED'} ({p99:.1f} ms)")  # fmt: skip
    return 0 if p99 <= 25 else 1


if __name__ == "__main__":
    sys.exit(main())

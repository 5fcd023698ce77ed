"""Live events fan-out: N Server-Sent Events subscribers to one live run, against a real API
process and a real worker (tests/support/stack.py), embedded and/or PostgreSQL + Redis.

    .venv/bin/python benchmarks/sse_fanout.py                      # both stacks, 1,000 subscribers
    .venv/bin/python benchmarks/sse_fanout.py --stack postgres --subscribers 200 --clients 1

How: the run is submitted to a stack with no worker yet, so it waits queued; the subscribers
connect (GET /v1/experiments/{id}/events) from `--clients` client processes (an equal share
each; asyncio, one connection per subscriber, the body parsed as it arrives; on this machine:
they share its cores with the API, the worker and the database); once every one has its
replay, a worker starts and trains the run. Measured:
- every subscriber got every epoch (once, in order) and the final status;
- fan-out skew per epoch: the time between the first and the last subscriber receiving it
  (time.monotonic, system-wide, so comparable across the client processes); target p99 ≤ 250 ms;
- the database reads per epoch: the API's listener counts its reads of the tables (logged when
  the API stops: `events_listener_stopped reads=…`), target one per epoch whatever the number of
  subscribers; on PostgreSQL also the database's committed transactions (pg_stat_database
  xact_commit, every process: the worker's writes included) per epoch.
Baseline, measured in the same run: the same with one subscriber (a stack of its own), so the
reads per epoch and the skew floor are against the same machine at the same time.
"""

from __future__ import annotations

import argparse
import asyncio
import functools
import json
import os
import re
import subprocess
import sys
import tempfile
import time
from dataclasses import asdict
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from benchmarks.proc_cpu import cpu_seconds  # noqa: E402
from benchmarks.run_overhead import backend_for  # noqa: E402
from tests.support.stack import Stack, start_stack, stop  # noqa: E402
from tests.support.subscribers import Followed, percentile, skews  # noqa: E402

SPEC: dict[str, Any] = {
    "name": "fan-out",
    "dataset": "digits",
    "model": {"type": "mlp", "hidden": [64]},
    "solver": {"type": "SGD", "params": {"momentum": 0.9}},
    "base_lr": 0.05,
    "batch_size": 16,
    "seed": 0,
}


# -- a client process: its share of the subscribers ---------------------------------------------


class _Subscriber(asyncio.Protocol):
    """One subscriber on a raw connection: GET, then the chunked body parsed as it arrives.
    (httpx streams cost ~10x the CPU per event; with 500 of them per client process on this
    2-core machine, the clients' own lag would dominate the skew measured.)"""

    def __init__(self, request: bytes, on_ready: Any) -> None:
        self.request = request
        self.on_ready = on_ready
        self.out = Followed()
        self.done: asyncio.Future[Followed] = asyncio.get_running_loop().create_future()
        self.head = b""  # the response's status line and headers, until complete
        self.raw = b""  # chunked body not yet decoded
        self.sse = b""  # decoded body not yet a whole event

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        assert isinstance(transport, asyncio.Transport)
        self.transport = transport
        transport.write(self.request)

    def data_received(self, data: bytes) -> None:
        now = time.monotonic()
        if self.head is not None:
            self.head += data
            end = self.head.find(b"\r\n\r\n")
            if end < 0:
                return
            status = self.head.split(b" ", 2)[1]
            if status != b"200":
                self.out.error = f"HTTP {status.decode()}"
            data, self.head = self.head[end + 4 :], None  # type: ignore[assignment]
        self.raw += data
        while True:  # chunked transfer encoding: <hex size>\r\n<bytes>\r\n
            eol = self.raw.find(b"\r\n")
            if eol < 0:
                break
            size = int(self.raw[:eol], 16)
            if size == 0:  # the last chunk: the stream has ended (the connection would be kept)
                self.transport.close()
                break
            if len(self.raw) < eol + 2 + size + 2:
                break
            self.sse += self.raw[eol + 2 : eol + 2 + size]
            self.raw = self.raw[eol + 2 + size + 2 :]
        *events, self.sse = self.sse.split(b"\n\n")
        for block in events:
            fields = dict(line.split(b": ", 1) for line in block.split(b"\n") if b": " in line
                          and not line.startswith(b":"))  # fmt: skip
            kind = fields.get(b"event")
            if kind == b"epoch":
                epoch = int(fields[b"id"])
                self.out.epochs.append(epoch)
                self.out.arrivals.setdefault(epoch, now)
            elif kind == b"decision":
                self.out.decisions += 1
            elif kind == b"status":
                status_data = json.loads(fields[b"data"])
                self.out.statuses.append(status_data["status"])
                self.out.final = status_data
                if not self.out.connected:
                    self.out.connected = now
                    self.on_ready()

    def connection_lost(self, exc: Exception | None) -> None:
        if exc is not None:
            self.out.error = f"{type(exc).__name__}: {exc}"
        if not self.done.done():
            self.done.set_result(self.out)


def _same(sub: _Subscriber) -> _Subscriber:
    return sub


async def _client(url: str, path: str, n: int, out: Path) -> None:
    ready = 0

    def one_ready() -> None:
        nonlocal ready
        ready += 1
        if ready == n:
            print("ready", flush=True)  # the parent starts the worker once every client says so

    parsed = urlsplit(url)
    host, port = parsed.hostname or "127.0.0.1", parsed.port or 80
    request = f"GET {path} HTTP/1.1\r\nHost: {host}:{port}\r\nAccept: text/event-stream\r\n\r\n"
    loop = asyncio.get_running_loop()
    subs = []
    for _ in range(n):
        sub = _Subscriber(request.encode(), one_ready)
        await loop.create_connection(functools.partial(_same, sub), host, port)
        subs.append(sub)
    results = await asyncio.gather(*(s.done for s in subs))
    if ready < n:
        print("failed", flush=True)
    out.write_text(json.dumps([asdict(f) for f in results]))


def client_main(url: str, path: str, n: int, out: Path) -> None:
    """`n` subscribers: prints "ready" once all have their replay, then writes what each got."""
    asyncio.run(_client(url, path, n, out))


# -- one measurement ------------------------------------------------------------------------


def listener_reads(log: Path) -> int:
    found = re.findall(r"events_listener_stopped.*?reads=(\d+)", log.read_text())
    return int(found[-1]) if found else -1


def xact_commits(database_url: str) -> int:
    import psycopg
    from sqlalchemy.engine import make_url

    url = make_url(database_url)
    dsn = url.set(drivername="postgresql").render_as_string(hide_password=False)
    with psycopg.connect(dsn, autocommit=True) as conn:
        row = conn.execute(
            "SELECT xact_commit FROM pg_stat_database WHERE datname = current_database()"
        ).fetchone()
    return int(row[0]) if row else 0


def measure(kind: str, subscribers: int, clients: int, epochs: int, root: Path) -> dict[str, Any]:
    with (
        backend_for(kind, root) as backend,
        start_stack(backend, root / "logs", workers=0) as stack,
    ):
        return _measure(stack, kind, subscribers, clients, epochs, root)


def _measure(stack: Stack, kind: str, subscribers: int, clients: int, epochs: int,
             root: Path) -> dict[str, Any]:  # fmt: skip
    with stack.client() as c:
        # The API's first POST imports torch (the spec checks): seconds on a loaded machine.
        created = c.post("/v1/experiments", json={**SPEC, "epochs": epochs}, timeout=120)
        created.raise_for_status()
        run = created.json()["id"]
    path = f"/v1/experiments/{run}/events"
    shares = [subscribers // clients + (i < subscribers % clients) for i in range(clients)]
    procs, outs = [], []
    t0 = time.monotonic()
    for i, n in enumerate(s for s in shares if s):
        out = root / f"client-{i}.json"
        outs.append(out)
        code = ("import sys; from pathlib import Path; from benchmarks.sse_fanout import "
                "client_main; client_main(sys.argv[1], sys.argv[2], int(sys.argv[3]), "
                "Path(sys.argv[4]))")  # fmt: skip
        procs.append(subprocess.Popen(
            [sys.executable, "-c", code, stack.url, path, str(n), str(out)], cwd=ROOT,
            stdout=subprocess.PIPE, text=True, env={**os.environ, "OMP_NUM_THREADS": "1"},
        ))  # fmt: skip
    for p in procs:
        assert p.stdout is not None
        if p.stdout.readline().strip() != "ready":
            raise SystemExit(f"a client's subscribers did not all connect\n{stack.logs()}")
    connect_s = time.monotonic() - t0
    commits0 = xact_commits(stack.backend.database_url) if kind == "postgres" else 0
    api_pid = stack.procs["api"].pid
    cpu0, wall0 = cpu_seconds(api_pid), time.monotonic()
    stack.start_worker("w0")
    for p in procs:
        p.wait(timeout=600)
    api_cpu, wall = cpu_seconds(api_pid) - cpu0, time.monotonic() - wall0
    commits = xact_commits(stack.backend.database_url) - commits0 if kind == "postgres" else 0
    followed = [Followed(**f) for out in outs for f in json.loads(out.read_text())]
    stop(stack.procs["api"])  # its listener logs its reads as it stops
    reads = listener_reads(stack.log_dir / "api.log")
    live = skews(followed)
    complete = sum(
        f.epochs == list(range(1, epochs + 1))
        and f.final is not None
        and f.final["status"] == "succeeded"
        for f in followed
    )
    values = list(live.values())
    return {
        "stack": kind,
        "subscribers": len(followed),
        "errors": sorted({f.error for f in followed if f.error})[:3],
        "complete": complete,
        "connect_s": connect_s,
        "epochs_live": len(live),
        "skew_p50_ms": percentile(values, 50) * 1000,
        "skew_p99_ms": percentile(values, 99) * 1000,
        "skew_max_ms": max(values, default=float("nan")) * 1000,
        "reads": reads,
        "api_cpu_ms_per_epoch": api_cpu / epochs * 1000,
        "api_busy": api_cpu / wall,
        "reads_per_epoch": reads / epochs,
        "commits_per_epoch": commits / epochs if kind == "postgres" else None,
    }


def show(r: dict[str, Any], base: dict[str, Any]) -> None:
    print(f"\n== {r['stack']}: {r['subscribers']} subscribers ({r['connect_s']:.1f} s to connect)")
    print(f"  every epoch and the final status: {r['complete']} of {r['subscribers']} subscribers"
          f"{'  errors: ' + '; '.join(r['errors']) if r['errors'] else ''}")  # fmt: skip
    print(
        f"  fan-out skew over {r['epochs_live']} live epochs: p50 {r['skew_p50_ms']:.1f} ms, "
        f"p99 {r['skew_p99_ms']:.1f} ms (target ≤ 250: "
        f"{'met' if r['skew_p99_ms'] <= 250 else 'MISSED'}), max {r['skew_max_ms']:.1f} ms"
    )
    print(
        f"  listener reads: {r['reads']} = {r['reads_per_epoch']:.2f} per epoch; with one "
        f"subscriber {base['reads_per_epoch']:.2f} per epoch "
        f"(ratio {r['reads_per_epoch'] / max(base['reads_per_epoch'], 1e-9):.2f}x)"
    )
    print(f"  API process CPU per epoch: {r['api_cpu_ms_per_epoch']:.1f} ms (with one subscriber "
          f"{base['api_cpu_ms_per_epoch']:.1f} ms; busy {r['api_busy']:.0%} of one core "
          f"from the worker's start to the last stream's end)")  # fmt: skip
    if r["commits_per_epoch"] is not None:
        print(f"  PostgreSQL transactions per epoch (all processes): {r['commits_per_epoch']:.2f};"
              f" with one subscriber {base['commits_per_epoch']:.2f}")  # fmt: skip


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--stack", choices=["embedded", "postgres", "both"], default="both")
    parser.add_argument("--subscribers", type=int, default=1000)
    parser.add_argument("--clients", type=int, default=2, help="client processes")
    parser.add_argument("--epochs", type=int, default=40)
    args = parser.parse_args()
    kinds = ["embedded", "postgres"] if args.stack == "both" else [args.stack]
    for kind in kinds:
        with tempfile.TemporaryDirectory(prefix="sse-fanout-") as tmp:
            base = measure(kind, 1, 1, args.epochs, Path(tmp) / "one")
            loaded = measure(kind, args.subscribers, args.clients, args.epochs, Path(tmp) / "n")
        show(loaded, base)


if __name__ == "__main__":
    main()

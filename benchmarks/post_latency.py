"""How long POST /v1/experiments takes, as a script submitting runs one by one sees it: a real
`glidepath api` process (no worker), one kept-alive httpx connection, the same small spec each
time (digits MLP [64], 100 epochs), for `--seconds`; against GET /healthz and GET /v1/workers (a
guarded route with one small query) timed in the same run.

Each is timed back to back, and again with the machine left idle `--idle` seconds (0.6, as
between two runs of benchmarks/run_overhead.py) before each request, `--idle-samples` times: on
this VM an idle gap of 20 ms already makes every hop slower (the vCPUs halt; the processes'
caches go cold), and a script's POST after a pause is the idle figure, not the back-to-back one.

A POST validates the spec (torch builds its optimizer and schedule on a dummy parameter),
inserts the run, its tags and its outbox row in one transaction, and hands the task to the
broker before it answers.

    .venv/bin/python benchmarks/post_latency.py [--stack embedded|postgres|both] [--seconds 15]
        [--idle 0.6] [--idle-samples 15]
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
from service.kit import migrate
from tests.support.stack import Backend, start_stack

SPEC: dict[str, Any] = {
    "name": "bench", "dataset": "digits", "model": {"type": "mlp", "hidden": [64]},
    "solver": {"type": "SGD", "params": {"momentum": 0.9}}, "batch_size": 64, "seed": 0,
    "device": "cpu", "base_lr": 0.05, "epochs": 100,
}  # fmt: skip


def timed(client: httpx.Client, method: str, path: str, seconds: float) -> list[float]:
    out, end = [], time.monotonic() + seconds
    while time.monotonic() < end:
        out.append(once(client, method, path))
    return out


def after_idle(client: httpx.Client, method: str, path: str, idle: float, n: int) -> list[float]:
    out = []
    for _ in range(n):
        time.sleep(idle)
        out.append(once(client, method, path))
    return out


def once(client: httpx.Client, method: str, path: str) -> float:
    t0 = time.perf_counter()
    r = client.request(method, path, json=SPEC if method == "POST" else None)
    assert r.status_code in (200, 201), r.text
    return (time.perf_counter() - t0) * 1000


def line(label: str, xs: list[float], base: list[float] | None = None) -> str:
    q = statistics.quantiles(xs, n=100, method="inclusive")
    text = f"  {label:<24} n={len(xs):5d}  p50 {q[49]:6.2f} ms  p99 {q[98]:6.2f} ms"
    if base is not None:
        text += f"  {q[49] / statistics.median(base):5.2f}x /healthz p50"
    return text


ROUTES = [("GET", "/healthz"), ("GET", "/v1/workers"), ("POST", "/v1/experiments")]


def run(kind: str, seconds: float, idle: float, idle_samples: int) -> None:
    with tempfile.TemporaryDirectory(prefix=f"glidepath-post-{kind}-") as tmp:
        root = Path(tmp)
        with backend_for(kind, root, "redis://127.0.0.1:6379/12") as made:
            backend = Backend(made.name, made.database_url, made.broker_url, made.data_dir,
                              migrated=True)  # fmt: skip
            backend.data_dir.mkdir(parents=True, exist_ok=True)
            migrate.upgrade(backend.database_url)
            with (
                start_stack(backend, root / "logs", workers=0) as stack,
                httpx.Client(base_url=stack.url, timeout=30) as client,
            ):
                timed(client, "POST", "/v1/experiments", 1.0)  # warm the route and the pool
                health = timed(client, "GET", "/healthz", seconds / 3)
                guarded = timed(client, "GET", "/v1/workers", seconds / 3)
                posts = timed(client, "POST", "/v1/experiments", seconds)
                idle_runs = [after_idle(client, method, path, idle, idle_samples)
                             for method, path in ROUTES] if idle_samples else []  # fmt: skip
    print(f"{kind}:")
    print(line("GET /healthz", health))
    print(line("GET /v1/workers", guarded))
    print(line("POST /v1/experiments", posts, health))
    for (method, path), xs in zip(ROUTES, idle_runs, strict=False):
        back_to_back = {"/healthz": health, "/v1/workers": guarded}.get(path, posts)
        ratio = statistics.median(xs) / statistics.median(back_to_back)
        print(line(f"{method} {path}", xs) + f"  after {idle:g} s idle: {ratio:.2f}x back to back")
    print(flush=True)


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    ap.add_argument("--stack", choices=["embedded", "postgres", "both"], default="both")
    ap.add_argument("--seconds", type=float, default=15.0)
    ap.add_argument("--idle", type=float, default=0.6, help="seconds idle before each request")
    ap.add_argument("--idle-samples", type=int, default=15, help="requests after idling; 0: none")
    args = ap.parse_args()
    for kind in ["embedded", "postgres"] if args.stack == "both" else [args.stack]:
        run(kind, args.seconds, args.idle, args.idle_samples)
    return 0


if __name__ == "__main__":
    sys.exit(main())

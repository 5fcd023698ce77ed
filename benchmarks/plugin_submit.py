"""What a plugin spec costs at submit, against a built-in one, through a real API process.

Starts `glidepath api` (no worker: only acceptance is measured) with the example plugin
(examples/plugin) in the worker registry, as a worker that has it installed would have written
it; the API process itself has no plugin installed. Then POSTs, interleaved, N of each:
  builtin   digits with the built-in `mlp` (the baseline)
  plugin    digits with the plugin model `tiny_resnet` (params checked against the manifest)
  both      the plugin dataset `shapes` with `tiny_resnet`
and prints the median latencies and the differences. Target: a plugin spec accepted at most
10 ms slower than a built-in one (a registry lookup, no import in the API).

    .venv/bin/python benchmarks/plugin_submit.py                    # embedded default
    .venv/bin/python benchmarks/plugin_submit.py --stack postgres   # PostgreSQL + Redis
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
from tests.support.plugins import install
from tests.support.stack import start_stack

BASE: dict[str, Any] = {"dataset": "digits", "solver": {"type": "SGD"}, "base_lr": 0.05,
                        "scheduler": {"type": "StepLR", "params": {"step_size": 5}},
                        "epochs": 20}  # fmt: skip
SPECS = {
    "builtin": {**BASE, "model": {"type": "mlp", "hidden": [32]}},
    "plugin": {**BASE, "model": {"type": "tiny_resnet", "params": {"width": 4}}},
    "both": {**BASE, "model": {"type": "tiny_resnet", "params": {"width": 4}},
             "dataset": {"type": "shapes", "params": {"n": 2000}}},
}  # fmt: skip


def register_plugin_worker(database_url: str, plugin_dir: Path) -> None:
    """The registry row a worker with the plugin writes (its real manifest), in this process."""
    import importlib

    from sqlalchemy.orm import Session

    from service.kit.db import make_engine
    from service.workers.repository import WorkerRepository
    from worker.engine.plugins import discover

    sys.path.insert(0, str(plugin_dir))
    importlib.invalidate_caches()
    manifest = discover({"models": ("mlp",), "datasets": ()}).manifest()
    engine = make_engine(database_url)
    with Session(engine) as session, session.begin():
        WorkerRepository(session).register("bench:1", host="bench", pid=1, queues=["auto"],
                                           devices=[], plugins=manifest)  # fmt: skip
    engine.dispose()


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    ap.add_argument("--stack", choices=["embedded", "postgres"], default="embedded")
    ap.add_argument("--redis-url", default="redis://127.0.0.1:6379/12")
    ap.add_argument("--n", type=int, default=200, help="requests of each kind")
    args = ap.parse_args()
    with (
        tempfile.TemporaryDirectory() as tmp,
        backend_for(args.stack, Path(tmp), args.redis_url) as backend,
        start_stack(backend, Path(tmp) / "logs", workers=0) as stack,
        httpx.Client(base_url=stack.url, timeout=30) as client,
    ):
        register_plugin_worker(backend.database_url, install(Path(tmp) / "plugin"))
        times: dict[str, list[float]] = {k: [] for k in SPECS}
        for i in range(args.n + 10):  # the first 10 rounds warm up (caches, connections)
            for kind, body in SPECS.items():
                t0 = time.perf_counter()
                r = client.post("/v1/experiments", json={**body, "seed": i})
                elapsed = time.perf_counter() - t0
                assert r.status_code == 201, r.text[:300]
                if i >= 10:
                    times[kind].append(elapsed)
    med = {k: statistics.median(v) * 1000 for k, v in times.items()}
    p90 = {k: statistics.quantiles(v, n=10)[-1] * 1000 for k, v in times.items()}
    print(f"stack={args.stack} n={args.n} per kind, interleaved")
    for kind in SPECS:
        print(f"{kind:8} median {med[kind]:6.2f} ms  p90 {p90[kind]:6.2f} ms  "
              f"ratio to builtin {med[kind] / med['builtin']:.3f}")  # fmt: skip
    worst = max(med["plugin"], med["both"]) - med["builtin"]
    verdict = "met" if worst <= 10 else "MISSED"
    print(f"slowest plugin spec - builtin = {worst:+.2f} ms  (target <= +10 ms: {verdict})")
    return 0 if worst <= 10 else 1


if __name__ == "__main__":
    sys.exit(main())

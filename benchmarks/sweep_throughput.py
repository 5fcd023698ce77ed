"""What a pruned sweep costs beyond its training (#15): the pause at a rung and the resume on a
worker, and how busy two workers stay on many small runs. Real `glidepath api` + 2 workers
(tests/support/stack.py, OMP_NUM_THREADS=1), on the embedded default or PostgreSQL + Redis.

rung      a successive-halving sweep (grid of 9 base_lr, digits MLP [64], batch 64, 27 epochs,
          min_epochs 3, reduction_factor 3: rungs at epochs 3 and 9). From the stored rows:
            complete  the rung's last rung-epoch row written (every run has reached it)
            decided   the rung's sweep_rungs.decided_at
            resumed   a promoted run's next epoch began (its created_at − duration_s)
          The pause-and-resume overhead of a rung is resumed − complete of its first promoted
          runs (one per worker; later ones wait for a worker, which is queueing, not overhead);
          the baseline is an uninterrupted run, whose next epoch starts right after the row (the
          between-epochs time of benchmarks/run_overhead.py). Target: ≤ 100 ms. Measured on the
          stack's first sweep and on a second one: a worker process's first pause and resume
          also pays for what a process does once (its first use of each statement, SQLAlchemy's
          compiled cache), which the second sweep no longer does.
busy      `--runs` (200) small runs in one POST /v1/batches (digits MLP [64], batch 64,
          `--epochs` epochs): busy = Σ (finished_at − started_at) / (2 workers × wall), wall from
          the POST to the last finished_at. A run's final status is written behind its worker
          (worker/runs/finish.py `finish_run_behind`), so its finished_at may come after its
          worker claimed the next run: a worker's overlapping spans count once. Target: ≥ 95 %.

    .venv/bin/python benchmarks/sweep_throughput.py [--stack embedded|postgres|both]
"""

from __future__ import annotations

import argparse
import itertools
import os
import shutil
import statistics
import sys
import tempfile
import time
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

os.environ.setdefault("OMP_NUM_THREADS", "1")
sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
sys.path.insert(0, str(Path(__file__).resolve().parent))

import httpx
from run_overhead import _utc, backend_for
from sqlalchemy import create_engine, text

from service.training.status import FINAL
from tests.support.stack import Stack, start_stack, wait_for

BASE: dict[str, Any] = {
    "dataset": "digits", "model": {"type": "mlp", "hidden": [64]},
    "solver": {"type": "SGD", "params": {"momentum": 0.9}}, "batch_size": 64, "seed": 0,
    "device": "cpu",
}  # fmt: skip
LRS = [0.001, 0.003, 0.01, 0.03, 0.1, 0.3, 0.02, 0.2, 0.005]


def rows(stack: Stack, sql: str, **params: Any) -> list[Any]:
    engine = create_engine(stack.backend.database_url)
    try:
        with engine.connect() as conn:
            return list(conn.execute(text(sql), params).all())
    finally:
        engine.dispose()


def rung_overhead(stack: Stack, c: httpx.Client) -> list[float]:
    pruner = {"type": "successive_halving", "min_epochs": 3, "reduction_factor": 3}
    body = {"base": {**BASE, "epochs": 27}, "strategy": "grid",
            "parameters": {"base_lr": LRS}, "pruner": pruner}  # fmt: skip
    r = c.post("/v1/sweeps", json=body)
    r.raise_for_status()
    sweep_id = r.json()["sweep_id"]
    detail = stack.wait_sweep(c, sweep_id, timeout=300)
    epochs = rows(stack, "SELECT m.experiment_id, m.epoch, m.created_at, m.duration_s "
                  "FROM epoch_metrics m JOIN experiments e ON e.id = m.experiment_id "
                  "WHERE e.sweep_id = :s", s=sweep_id)  # fmt: skip
    rungs = rows(stack, "SELECT epoch, decided_at FROM sweep_rungs WHERE sweep_id = :s "
                 "ORDER BY epoch", s=sweep_id)  # fmt: skip
    at = {(i, e): (_utc(t), float(d)) for i, e, t, d in epochs}
    firsts: list[float] = []
    for epoch, decided in rungs:
        complete = max(t for (i, e), (t, _) in at.items() if e == epoch)
        resumed = sorted(
            (at[i, e + 1][0].timestamp() - at[i, e + 1][1] - complete.timestamp())
            for (i, e) in at if e == epoch and (i, e + 1) in at
        )  # fmt: skip
        decide = (_utc(decided) - complete).total_seconds()
        after = ", ".join(f"{s * 1000:.0f}" for s in resumed)
        print(f"    rung at epoch {epoch}: decided {decide * 1000:.1f} ms after complete; promoted "
              f"runs' next epoch began after {after} ms")  # fmt: skip
        firsts.extend(resumed[:2])  # one per worker
    print(f"    pause + resume overhead (first promoted run per worker and rung): "
          f"median {statistics.median(firsts) * 1000:.0f} ms, max {max(firsts) * 1000:.0f} ms "
          f"(target ≤ 100 ms); {detail['pruning']['epochs_run']} epochs run")  # fmt: skip
    return firsts


def idle_parts(runs: list[Any], posted: datetime, accepted: datetime) -> None:
    """Where the workers' idle time went: before the first start (the POST, the first task's
    delivery), between one run's end and the next run's start on the same worker, and at the
    end (one worker done, the other on its last run)."""
    gaps, firsts, lasts = [], [], []
    for spans in spans_by_worker(runs).values():
        firsts.append((spans[0][0] - posted).total_seconds())
        lasts.append(spans[-1][1])
        gaps += [max(0.0, (b[0] - a[1]).total_seconds() * 1000)
                 for a, b in itertools.pairwise(spans)]  # fmt: skip
    end = max(lasts)
    tail = sum((end - last).total_seconds() for last in lasts)
    print(f"  idle: POST answered in {(accepted - posted).total_seconds() * 1000:.0f} ms, "
          f"first starts {', '.join(f'{x * 1000:.0f}' for x in sorted(firsts))} ms after it was "
          f"sent; between runs on a worker: median {statistics.median(gaps):.1f} ms, p90 "
          f"{statistics.quantiles(gaps, n=10)[-1]:.1f} ms, sum {sum(gaps) / 1000:.2f} s; at the "
          f"end {tail * 1000:.0f} ms")  # fmt: skip


def spans_by_worker(runs: list[Any]) -> dict[str, list[tuple[datetime, datetime]]]:
    """Each worker's runs as (started_at, finished_at), in order of start."""
    by_worker: dict[str, list[tuple[datetime, datetime]]] = {}
    for _, s, f, owner in runs:
        by_worker.setdefault(str(owner), []).append((_utc(s), _utc(f)))
    return {owner: sorted(spans) for owner, spans in by_worker.items()}


def covered(spans: list[tuple[datetime, datetime]]) -> float:
    """Seconds within any of `spans` (sorted by start): an overlap counts once."""
    total, end = 0.0, None
    for s, f in spans:
        start = s if end is None else max(s, end)
        total += max(0.0, (f - start).total_seconds())
        end = f if end is None else max(end, f)
    return total


def busy(stack: Stack, c: httpx.Client, n: int, epochs: int, workers: int) -> float:
    specs = [{**BASE, "name": f"small-{i}", "base_lr": 0.01 * (1 + i % 10), "seed": i,
              "epochs": epochs} for i in range(n)]  # fmt: skip
    posted = datetime.now(UTC)
    r = c.post("/v1/batches", json={"experiments": specs})
    r.raise_for_status()
    accepted = datetime.now(UTC)
    batch_id = r.json()["batch_id"]

    def done() -> bool:
        counts = c.get(f"/v1/batches/{batch_id}").json().get("counts", {})
        return sum(v for k, v in counts.items() if k in FINAL) >= n

    wait_for(done, 600, stack.logs)
    runs = rows(stack, "SELECT e.status, e.started_at, e.finished_at, a.worker FROM experiments e "
                "JOIN attempts a ON a.experiment_id = e.id AND a.attempt = e.attempt "
                "WHERE e.batch_id = :b", b=batch_id)  # fmt: skip
    assert len(runs) == n and all(row[0] == "succeeded" for row in runs), runs[:5]
    inside = sum(covered(spans) for spans in spans_by_worker(runs).values())
    wall = (max(_utc(f) for _, _, f, _ in runs) - posted).total_seconds()
    mean_run = inside / n
    frac = inside / (workers * wall)
    print(f"  {n} runs × {epochs} epochs on {workers} workers: wall {wall:.2f} s, mean run "
          f"{mean_run * 1000:.0f} ms, busy {frac:.1%} (target ≥ 95 %); idle per run "
          f"{(workers * wall - inside) / n * 1000:.1f} ms")  # fmt: skip
    idle_parts(runs, posted, accepted)
    return frac


def main() -> None:
    ap = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    ap.add_argument("--stack", choices=["embedded", "postgres", "both"], default="embedded")
    ap.add_argument("--runs", type=int, default=200)
    ap.add_argument("--epochs", type=int, default=10)
    args = ap.parse_args()
    for kind in ["embedded", "postgres"] if args.stack == "both" else [args.stack]:
        root = Path(tempfile.mkdtemp(prefix=f"glidepath-sweep-{kind}-"))
        try:
            with (
                backend_for(kind, root) as backend,
                start_stack(backend, root / "logs", workers=2) as stack,
                httpx.Client(base_url=stack.url, timeout=30) as c,
            ):
                time.sleep(1)  # both workers consuming
                print(f"\n{kind}: successive halving, 9 runs, rungs at 3 and 9 of 27 epochs")
                print("  the stack's first sweep (each worker's first pause and resume):")
                rung_overhead(stack, c)
                print("  the same sweep again, the workers warm:")
                rung_overhead(stack, c)
                print(f"{kind}: small runs")
                busy(stack, c, args.runs, args.epochs, 2)
        finally:
            shutil.rmtree(root, ignore_errors=True)


if __name__ == "__main__":
    main()

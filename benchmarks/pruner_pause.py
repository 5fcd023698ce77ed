"""What a synchronous pruner costs a worker at each pause of a large sweep (#15: up to 1,000
trials): `complete_rungs` as a run's worker calls it after the run goes `waiting`, on a sweep of
`--trials` queued runs (none waiting yet: the common case, every pause but a rung's last), for
hyperband (which must place every run in its bracket) against successive halving (one count
of the runs still going) in the same run. In-process, on a fresh database of each kind.

    .venv/bin/python benchmarks/pruner_pause.py [--database-url URL] [--trials 1000]

The default database is a temporary SQLite file; PostgreSQL: a fresh database's URL.
"""

from __future__ import annotations

import argparse
import os
import statistics
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))


def main() -> None:
    ap = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    ap.add_argument("--database-url", default="")
    ap.add_argument("--trials", type=int, default=1000)
    ap.add_argument("--repeats", type=int, default=9)
    args = ap.parse_args()
    data_dir = tempfile.mkdtemp(prefix="glidepath-pruner-")
    url = args.database_url or f"sqlite:///{data_dir}/glidepath.db"
    os.environ.update(GLIDEPATH_DATA_DIR=data_dir, GLIDEPATH_DATABASE_URL=url)

    from fastapi.testclient import TestClient

    from service.app import create_app
    from service.dispatch import service as dispatch
    from service.kit import migrate
    from service.kit.db import session_scope
    from service.sweeps import pruning
    from service.sweeps.repository import SweepRepository

    migrate.upgrade(url)
    sweeps = {}
    with TestClient(create_app()) as client:  # the app only to create the sweeps
        for kind in ("successive_halving", "hyperband"):
            body = {
                "base": {"dataset": "iris", "model": {"type": "mlp", "hidden": [8]},
                         "epochs": 27, "batch_size": 32, "device": "cpu"},
                "strategy": "random", "trials": args.trials, "seed": 1,
                "parameters": {"base_lr": {"low": 1e-4, "high": 1.0,
                                           "distribution": "log_uniform"}},
                "pruner": {"type": kind},
            }  # fmt: skip
            r = client.post("/v1/sweeps", json=body)
            r.raise_for_status()
            sweeps[kind] = r.json()["sweep_id"]
    dispatch.wait_sent(120)  # the runs' tasks are sent and marked: nothing else runs beside

    medians = {}
    for kind, sweep_id in sweeps.items():
        with session_scope() as session:
            sweep = SweepRepository(session).get(sweep_id)
            assert sweep is not None
            rule = pruning.Rule.of(sweep)
        times = []
        for _ in range(args.repeats + 1):  # the first compiles the statements
            began = time.perf_counter()
            with session_scope() as session:
                pruning.complete_rungs(session, sweep_id, rule)
            times.append((time.perf_counter() - began) * 1000)
        medians[kind] = statistics.median(times[1:])
        print(f"{kind:19s} {args.trials} runs: complete_rungs median {medians[kind]:6.1f} ms "
              f"(first {times[0]:.1f}; all {' '.join(f'{t:.1f}' for t in times[1:])})")  # fmt: skip
    ratio = medians["hyperband"] / medians["successive_halving"]
    print(f"hyperband / successive halving: {ratio:.1f}×")


if __name__ == "__main__":
    main()

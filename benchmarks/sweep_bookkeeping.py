"""What a large sweep's bookkeeping costs a worker (#15: sweeps of up to 1,000 trials), on a
sweep of `--trials` queued runs, in-process, on a fresh database:
- at each pause at a synchronous rung: `complete_rungs`, as a run's worker calls it after the run
  goes `waiting` (none else waiting yet: every pause but a rung's last), for hyperband (a count
  of the runs of the paused run's bracket still going) against successive halving (one count of
  the sweep's runs still going) in the same run;
- after each run ends: `advance` (is every run of the sweep over? then the next stage or the
  end), given the ended run's group as a worker gives it; and as housekeeping calls it for every
  running sweep, not knowing a run (hyperband: one count per (stage, bracket));
- cancelling the sweep (its runs cancelled).

    .venv/bin/python benchmarks/sweep_bookkeeping.py [--database-url URL] [--trials 1000]

The default database is a temporary SQLite file; PostgreSQL: a fresh database's URL.
"""

from __future__ import annotations

import argparse
import os
import statistics
import sys
import tempfile
import time
from collections.abc import Callable
from functools import partial
from pathlib import Path
from typing import TYPE_CHECKING

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

if TYPE_CHECKING:
    from sqlalchemy.orm import Session


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
    from service.experiments.repository import ExperimentRepository
    from service.kit import migrate
    from service.kit.db import session_scope
    from service.sweeps import pruning
    from service.sweeps import service as sweep_service
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

    def timed(what: str, kind: str, call: Callable[[Session], object]) -> float:
        times = []
        for _ in range(args.repeats + 1):  # the first compiles the statements
            began = time.perf_counter()
            with session_scope() as session:
                call(session)
            times.append((time.perf_counter() - began) * 1000)
        median = statistics.median(times[1:])
        print(f"  {what:14s} {kind:19s} median {median:6.1f} ms (first {times[0]:.1f}; "
              f"all {' '.join(f'{t:.1f}' for t in times[1:])})")  # fmt: skip
        return median

    print(f"{args.trials} queued runs a sweep, {url.split(':')[0]}:")
    medians, groups = {}, {}
    for kind, sweep_id in sweeps.items():
        with session_scope() as session:
            sweep = SweepRepository(session).get(sweep_id)
            assert sweep is not None
            rule = pruning.Rule.of(sweep)
            runs = ExperimentRepository(session)
            first = min(m.id for m in runs.members_of(sweep_id))
            place = runs.place_in_sweep(first)
            assert place is not None
            _, stage, bracket = place
            groups[kind] = None if bracket is None else (stage, bracket)
        # As the first run's worker calls it when that run pauses (hyperband: its group).
        pause = partial(pruning.complete_rungs, sweep_id=sweep_id, rule=rule, group=groups[kind])
        medians[kind] = timed("a pause", kind, pause)
    ratio = medians["hyperband"] / medians["successive_halving"]
    print(f"  a pause: hyperband / successive halving {ratio:.1f}×")
    for kind, sweep_id in sweeps.items():
        ended = partial(sweep_service.advance, sweep_id=sweep_id, group=groups[kind])
        timed("a run's end", kind, ended)
    for kind, sweep_id in sweeps.items():
        timed("housekeeping", kind, partial(sweep_service.advance, sweep_id=sweep_id))
    for kind, sweep_id in sweeps.items():  # last: it ends the sweep
        began = time.perf_counter()
        with session_scope() as session:
            counts = sweep_service.cancel(session, sweep_id).counts
        print(f"  {'the cancel':14s} {kind:19s} {(time.perf_counter() - began) * 1000:8.1f} ms "
              f"(POST /v1/sweeps/{{id}}/cancel's work): {counts}")  # fmt: skip


if __name__ == "__main__":
    main()

"""Decision + epoch write at epoch 10,000 vs at epoch 1 (target: ≤ 2 ms, flat in history length).

Times `worker.runs.epochs.decide_and_write` — read the stored decision state, decide
(ReduceLROnPlateau + early stopping), fenced write of the row and its decisions — first on a
fresh run (epochs 1..N) and then on a run that already has 10,000 stored epochs.

    .venv/bin/python benchmarks/decision_write.py [--database-url URL] [--history 10000] [--n 300]
"""

from __future__ import annotations

import argparse
import os
import statistics
import sys
import tempfile
import time
from pathlib import Path

os.environ.setdefault("GLIDEPATH_DATA_DIR", tempfile.mkdtemp(prefix="glidepath-bench-"))
sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

SPEC = {
    "dataset": "digits", "epochs": 100_000, "base_lr": 0.1,
    "scheduler": {"type": "ReduceLROnPlateau", "params": {"patience": 5, "factor": 0.5}},
    "early_stopping": {"monitor": "val_loss", "patience": 100_000},
}  # fmt: skip


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("--database-url", default="")
    ap.add_argument("--history", type=int, default=10_000)
    ap.add_argument("--n", type=int, default=300)
    args = ap.parse_args()
    from service.config import settings

    if args.database_url:
        settings.database_url = args.database_url
    from service.experiments import service
    from service.experiments.repository import ExperimentRepository
    from service.kit import migrate
    from service.kit.db import get_engine, session_scope
    from service.training import decisions
    from service.training.spec import ExperimentSpec
    from worker.runs.epochs import decide_and_write

    migrate.upgrade()
    spec = ExperimentSpec.model_validate(SPEC)

    def new_run() -> tuple[int, int]:
        with session_scope() as session:
            exp = service.validate(session, spec, ["body"])
            repo = ExperimentRepository(session)
            repo.add(exp, {})
            attempt = repo.claim(exp.id, "bench", 3600)
            assert attempt is not None
            return exp.id, attempt

    def time_epochs(exp_id: int, attempt: int, first: int) -> list[float]:
        out = []
        with get_engine().connect() as conn:  # as a worker holds one for a run
            for epoch in range(first, first + args.n):
                metrics = {"train_loss": 0.5, "val_loss": 1 / (1 + epoch % 7), "val_accuracy": 0.9}
                t0 = time.perf_counter()
                decision, _ = decide_and_write(exp_id, attempt, spec, epoch, 0.1, 0.01, metrics,
                                               conn)  # fmt: skip
                out.append(time.perf_counter() - t0)
                assert decision is not None
        return out

    fresh = time_epochs(*new_run(), first=1)

    exp_id, attempt = new_run()
    state = decisions.initial_state(spec, 0.1).to_json()
    with session_scope() as session:  # a long history, written in bulk
        repo = ExperimentRepository(session)
        for start in range(1, args.history + 1, 1000):
            for epoch in range(start, min(start + 1000, args.history + 1)):
                repo.write_epoch({"experiment_id": exp_id, "epoch": epoch, "lr": 0.1,
                                  "train_loss": 0.5, "val_loss": 1.0, "val_accuracy": 0.9,
                                  "duration_s": 0.01, "decision": None, "attempt": attempt,
                                  "state": state}, [])  # fmt: skip
    late = time_epochs(exp_id, attempt, first=args.history + 1)

    def summary(xs: list[float]) -> str:
        xs = sorted(xs)
        p99 = xs[min(len(xs) - 1, int(len(xs) * 0.99))]
        return f"median {statistics.median(xs) * 1e3:.3f} ms  p99 {p99 * 1e3:.3f} ms"

    db = settings.effective_database_url.split("://")[0]
    print(f"db={db} n={args.n} per point")
    print(f"  epochs 1..{args.n}:                 {summary(fresh)}")
    print(f"  epochs {args.history + 1}..{args.history + args.n}:  {summary(late)}")
    ratio = statistics.median(late) / statistics.median(fresh)
    print(f"at {args.history:,} / at 1 (median ratio) = {ratio:.2f}   target ≤ 2 ms at 10,000")


if __name__ == "__main__":
    main()

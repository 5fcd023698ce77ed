"""A whole run through the real service vs the same training as a bare torch loop (#15).

For each shape, in one process run after run (alternating, `--repeats` times, bare first and
last, after a warm-up run of each so the worker is warm):
  bare     the training as a plain script: model and SGD built, `--epochs` epochs of on-device
           batches by index (shuffle, forward, backward, step; validation every epoch, one host
           sync per epoch), the test part evaluated at the end. The data is loaded and on the
           device before its clock starts. This process, `torch.set_num_threads(1)`.
  service  `POST /v1/experiments` of the same spec to a real `glidepath api` with one real
           `glidepath worker` (OMP_NUM_THREADS=1, tests/support/stack.py), then
           `GET /v1/experiments/{id}` every `--poll-ms` (10) until its status is final: the clock
           runs from the POST being sent to the final status being seen.

Shapes (digits, 100 epochs, SGD momentum 0.9):
  A  MLP [64], batch 64 (~8 ms epochs on this 2-core box)
  B  MLP [256, 256], batch 16 (~45 ms epochs)

The breakdown of the service's time comes from what the run stored (the experiment's
started_at/finished_at, each epoch row's created_at and duration_s) and the client's own clock
(the same machine's):
  post        the POST's round trip
  start       POST returned → the first epoch began (epoch 1's created_at − duration_s − its
              write): pickup (→ started_at, the claim) + setup (dataset, split, model, resume)
  in-epoch    Σ duration_s (train + validate as the worker timed them) vs the bare loop's
  per epoch   Σ (created_at[e] − created_at[e−1] − duration_s[e]) / (epochs − 1): decision,
              fenced epoch write, checkpoint bytes, lease thread and loop bookkeeping
  finish      the last epoch row → finished_at (test part, final model upload, final status)
  seen        finished_at → the client's poll saw it final (with that poll's round trip, and
              the median of the others': the one that sees the end reads the ended run anew)
and the CPU each process spent from the POST to the final status seen (/proc, 10 ms ticks): the
worker (the training), and beside it the API, the epoch writer, the database (PostgreSQL's
processes, Redis; SQLite is inside the others) and this client. On a small machine the others'
CPU is taken from the training (two vCPUs here share a core: a spinner on one slows a torch
loop on the other by ~13 %), so it says how much of a ratio is the machine's size.

    .venv/bin/python benchmarks/run_overhead.py                      # embedded default
    .venv/bin/python benchmarks/run_overhead.py --stack postgres     # PostgreSQL + Redis
    .venv/bin/python benchmarks/run_overhead.py --stack both --repeats 5 --shapes A,B

`--stack postgres` uses a fresh database on 127.0.0.1:5432 (GLIDEPATH_TEST_PG) and a private
redis-server (tests/support/servers.py), both gone at the end. Figures are medians over repeats (7
by default); the ratios pair each service run with the mean of the bare runs just before and
just after it (this box drifts ±10 % between runs, more over a minute). Single pairs of shape A
spread 0.93-1.44x here, so seven pairs move its median by ±5 %: `--shapes A --repeats 25` (about a
minute) resolves a few percent.
Targets (#15): service / bare ≤ 1.05× for both shapes; start ≤ 30 ms.
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
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

os.environ.setdefault("OMP_NUM_THREADS", "1")
sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import httpx
import torch
from sqlalchemy import create_engine, text
from torch import nn

from benchmarks.proc_cpu import processes
from service.training.spec import ExperimentSpec
from service.training.status import FINAL
from tests.support.stack import Backend, Stack, start_stack
from worker.engine.data import DevicePart, to_device
from worker.engine.model import build_model
from worker.runs.datasets import load_arrays

SHAPES = {
    "A": {"hidden": [64], "batch_size": 64},
    "B": {"hidden": [256, 256], "batch_size": 16},
}


def spec_json(shape: str, epochs: int) -> dict[str, Any]:
    s = SHAPES[shape]
    return {
        "name": f"overhead-{shape}",
        "dataset": "digits",
        "split": {"train": 0.7, "val": 0.15, "test": 0.15, "seed": 0},
        "model": {"type": "mlp", "hidden": s["hidden"]},
        "solver": {"type": "SGD", "params": {"momentum": 0.9}},
        "base_lr": 0.05,
        "epochs": epochs,
        "batch_size": s["batch_size"],
        "seed": 0,
        "device": "cpu",
    }


# --------------------------------------------------------------------------- the bare loop


def bare(body: dict[str, Any]) -> tuple[float, float]:
    """Seconds for the whole training (build, epochs, test) and its epochs' own mean."""
    spec = ExperimentSpec.model_validate(body)
    device = torch.device("cpu")
    arrays, info, _ = load_arrays(spec.dataset)
    data = to_device(spec, arrays, info, device)
    train, val, test = data.train, data.val, data.test
    assert isinstance(train, DevicePart) and isinstance(val, DevicePart)
    assert isinstance(test, DevicePart)
    xt, yt, xv, yv = train.x, train.y, val.x, val.y
    g = torch.Generator().manual_seed(spec.seed)
    t0 = time.perf_counter()
    torch.manual_seed(spec.seed)
    model = build_model(spec.model, info).to(device)
    opt = torch.optim.SGD(model.parameters(), lr=spec.base_lr, momentum=0.9)
    in_epochs = 0.0
    for _ in range(spec.epochs):
        e0 = time.perf_counter()
        model.train()
        losses = []
        for idx in torch.randperm(len(xt), generator=g).split(spec.batch_size):
            opt.zero_grad(set_to_none=True)
            loss = nn.functional.cross_entropy(model(xt[idx]), yt[idx])
            loss.backward()
            opt.step()
            losses.append(loss.detach() * len(idx))
        model.eval()
        with torch.no_grad():
            out = model(xv)
            stats = torch.stack(
                [torch.stack(losses).sum() / len(xt), nn.functional.cross_entropy(out, yv),
                 (out.argmax(1) == yv).float().mean()]
            )  # fmt: skip
        _ = stats.tolist()  # the one host sync per epoch
        in_epochs += time.perf_counter() - e0
    with torch.no_grad():
        out = model(test.x)
        _ = [nn.functional.cross_entropy(out, test.y).item()]
    return time.perf_counter() - t0, in_epochs / spec.epochs


# --------------------------------------------------------------------------- through the service


def cpu_by_role(stack: Stack) -> dict[str, float]:
    """CPU seconds so far of the stack's processes by role."""
    procs = processes()
    worker, api = stack.procs["w0"].pid, stack.procs["api"].pid
    roles = {"worker": 0.0, "api": 0.0, "writer": 0.0, "postgres": 0.0, "redis": 0.0}
    for pid, (ppid, name, cpu) in procs.items():
        role = ("worker" if pid == worker else "writer" if ppid == worker
                else "api" if api in (pid, ppid) else "postgres" if name == "postgres"
                else "redis" if name == "redis-server" else None)  # fmt: skip
        if role:
            roles[role] += cpu
    return roles


@dataclass
class ServiceRun:
    total_s: float  # POST sent → final status seen
    post_s: float
    pickup_s: float  # POST returned → started_at
    start_s: float  # POST returned → epoch 1 began
    epoch_s: float  # mean duration_s
    per_epoch_s: float  # the time between epochs that is not an epoch's own
    finish_s: float  # last epoch row → finished_at
    seen_s: float  # finished_at → seen by the client
    poll_s: float  # a poll's round trip while the run trained (median)
    last_poll_s: float  # the round trip of the poll that saw the final status
    status: str
    cpu: dict[str, float]  # CPU seconds by role from the POST to the final status seen


def _utc(value: Any) -> datetime:
    if isinstance(value, str):
        value = datetime.fromisoformat(value)
    return value if value.tzinfo else value.replace(tzinfo=UTC)


def through_service(stack: Stack, client: httpx.Client, body: dict[str, Any],
                    poll_s: float) -> ServiceRun:  # fmt: skip
    cpu0 = cpu_by_role(stack)
    client0 = time.process_time()  # this process's polling, not its reads of /proc
    sent = time.perf_counter()
    r = client.post("/v1/experiments", json=body)
    returned_wall = datetime.now(UTC)
    returned = time.perf_counter()
    r.raise_for_status()
    exp_id = int(r.json()["id"])
    polls = []
    while True:
        asked = time.perf_counter()
        status = client.get(f"/v1/experiments/{exp_id}").json()["status"]
        polls.append(time.perf_counter() - asked)
        if status in FINAL:
            break
        time.sleep(poll_s)
    seen = time.perf_counter()
    seen_wall = datetime.now(UTC)
    client = time.process_time() - client0
    cpu1 = cpu_by_role(stack)
    engine = create_engine(stack.backend.database_url)
    try:
        with engine.connect() as conn:
            started, finished = conn.execute(
                text("SELECT started_at, finished_at FROM experiments WHERE id = :i"), {"i": exp_id}
            ).one()
            rows = conn.execute(
                text("SELECT epoch, created_at, duration_s FROM epoch_metrics "
                     "WHERE experiment_id = :i ORDER BY epoch"), {"i": exp_id},
            ).all()  # fmt: skip
    finally:
        engine.dispose()
    created = [_utc(c) for _, c, _ in rows]
    durations = [float(d) for _, _, d in rows]
    gaps = [(created[i] - created[i - 1]).total_seconds() - durations[i]
             for i in range(1, len(rows))]  # fmt: skip
    per_epoch = statistics.fmean(gaps) if gaps else 0.0
    # Epoch 1 began its own duration, and roughly one epoch's write, before its row was made.
    first_step = created[0].timestamp() - durations[0] - per_epoch
    return ServiceRun(
        total_s=seen - sent,
        post_s=returned - sent,
        pickup_s=_utc(started).timestamp() - returned_wall.timestamp(),
        start_s=first_step - returned_wall.timestamp(),
        epoch_s=statistics.fmean(durations),
        per_epoch_s=per_epoch,
        finish_s=(_utc(finished) - created[-1]).total_seconds(),
        seen_s=(seen_wall - _utc(finished)).total_seconds(),
        poll_s=statistics.median(polls[:-1] or polls),
        last_poll_s=polls[-1],
        status=status,
        cpu={**{role: cpu1[role] - cpu0[role] for role in cpu1}, "client": client},
    )


@contextmanager
def backend_for(
    kind: str, root: Path, overrides: dict[str, str] | None = None
) -> Iterator[Backend]:
    """A fresh backend of `kind` under `root`; `overrides`: GLIDEPATH_* for its processes."""
    data_dir, overrides = root / "data", overrides or {}
    if kind == "embedded":
        url = f"sqlite:///{data_dir / 'glidepath.db'}"
        yield Backend("embedded", url, "", data_dir, overrides)
        return
    from tests.support.backends import PG_HOST
    from tests.support.databases import PostgresDatabases
    from tests.support.servers import RedisServer

    redis = RedisServer(root / "redis").start()
    databases = PostgresDatabases(PG_HOST)
    database_url = databases.empty()  # start_stack migrates it
    try:
        yield Backend("postgres", database_url, redis.url(0), data_dir, overrides)
    finally:
        databases.drop(database_url)
        redis.stop()


def ms(s: float) -> str:
    return f"{s * 1000:8.1f} ms"


def run_stack(kind: str, args: argparse.Namespace) -> list[tuple[str, str, float, float]]:
    root = Path(tempfile.mkdtemp(prefix=f"glidepath-overhead-{kind}-"))
    results = []
    try:
        with (
            backend_for(kind, root, dict(args.set)) as backend,
            start_stack(backend, root / "logs", workers=1) as stack,
            httpx.Client(base_url=stack.url, timeout=30) as client,
        ):
            for shape in args.shapes:
                body = spec_json(shape, args.epochs)
                warm = {**body, "epochs": 2}
                bare(warm)
                through_service(stack, client, warm, args.poll_ms / 1000)
                bares, runs = [bare(body)], []
                for _ in range(args.repeats):
                    runs.append(through_service(stack, client, body, args.poll_ms / 1000))
                    bares.append(bare(body))
                assert all(r.status == "succeeded" for r in runs), [r.status for r in runs]
                # Each service run against the mean of the bare runs just before and just after
                # it: this machine's speed drifts by ±10 % between runs (and by more over a
                # minute), which a ratio of medians, or a pairing with one side only, would take
                # as overhead or as gain.
                around = [((a[0] + b[0]) / 2, (a[1] + b[1]) / 2)
                          for a, b in itertools.pairwise(bares)]  # fmt: skip
                paired = sorted(r.total_s / b[0] for r, b in zip(runs, around, strict=True))
                paired_epoch = sorted(r.epoch_s / b[1] for r, b in zip(runs, around, strict=True))
                bare_s = statistics.median(b[0] for b in bares)
                bare_epoch = statistics.median(b[1] for b in bares)
                med = {f: statistics.median(getattr(r, f) for r in runs)
                       for f in ServiceRun.__dataclass_fields__
                       if f not in ("status", "cpu")}  # fmt: skip
                cpu = {role: statistics.median(r.cpu[role] for r in runs) for role in runs[0].cpu}
                n = args.epochs
                print(f"\n{kind}, shape {shape} ({SHAPES[shape]}), {n} epochs, "
                      f"median of {args.repeats}")  # fmt: skip
                print(f"  bare loop        {ms(bare_s)}   ({bare_epoch * 1000:.2f} ms/epoch)")
                print(
                    f"  POST → final     {ms(med['total_s'])}   "
                    f"ratio {statistics.median(paired):.3f}×   "
                    f"(each to the bare runs around it: {', '.join(f'{x:.3f}' for x in paired)})"
                )
                print(f"    post           {ms(med['post_s'])}")
                print(f"    start          {ms(med['start_s'])}   POST returned → first epoch "
                      f"began (pickup {med['pickup_s'] * 1000:.1f} ms)")  # fmt: skip
                print(
                    f"    in-epoch       {med['epoch_s'] * 1000:8.2f} ms/epoch  "
                    f"{statistics.median(paired_epoch):.3f}× bare's epochs (paired; bare "
                    f"{bare_epoch * 1000:.2f} ms)"
                )
                print(
                    f"    between epochs {med['per_epoch_s'] * 1000:8.2f} ms/epoch  "
                    f"(× {n - 1} = {med['per_epoch_s'] * (n - 1) * 1000:.0f} ms)"
                )
                print(f"    finish         {ms(med['finish_s'])}   last epoch row → finished_at")
                print(f"    seen           {ms(med['seen_s'])}   finished_at → poll saw it (its "
                      f"round trip {med['last_poll_s'] * 1000:.1f} ms; the others' "
                      f"{med['poll_s'] * 1000:.1f} ms)")  # fmt: skip
                # The servers' roles only on their stack (this machine's own Redis idles beside).
                roles = ["api", "writer", "client"] + ["postgres", "redis"] * (kind != "embedded")
                beside = sum(cpu[r] for r in roles)
                print(
                    f"  CPU per run      worker {cpu['worker'] * 1000:.0f} ms; beside it "
                    f"{beside * 1000:.0f} ms ({beside / cpu['worker']:.0%} of the worker's): "
                    + ", ".join(f"{r} {cpu[r] * 1000:.0f}" for r in roles)
                )
                results.append((kind, shape, statistics.median(paired), med["start_s"]))
    finally:
        shutil.rmtree(root, ignore_errors=True)
    return results


def main() -> None:
    ap = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    ap.add_argument("--stack", choices=["embedded", "postgres", "both"], default="embedded")
    ap.add_argument("--shapes", type=lambda s: s.split(","), default=["A", "B"])
    ap.add_argument("--epochs", type=int, default=100)
    ap.add_argument("--repeats", type=int, default=7)
    ap.add_argument("--poll-ms", type=float, default=10)
    ap.add_argument(
        "--set", action="append", default=[], metavar="GLIDEPATH_X=VALUE",
        type=lambda s: tuple(s.split("=", 1)),
        help="a setting for the API and worker processes (repeatable), e.g. "
        "GLIDEPATH_EPOCH_WRITE_SECONDS=0.25",
    )  # fmt: skip
    args = ap.parse_args()
    torch.set_num_threads(1)
    kinds = ["embedded", "postgres"] if args.stack == "both" else [args.stack]
    summary = [row for kind in kinds for row in run_stack(kind, args)]
    print("\nsummary (target: ratio ≤ 1.05, start ≤ 30 ms)")
    for kind, shape, ratio, start in summary:
        print(f"  {kind:9s} shape {shape}  POST → final / bare {ratio:.3f}×  "
              f"start {start * 1000:.1f} ms")  # fmt: skip


if __name__ == "__main__":
    main()

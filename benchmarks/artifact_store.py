"""Checkpoints to S3 vs to a local folder: raw write speed, and what it costs a training epoch.

A private SeaweedFS (`tests.support.s3.start_seaweedfs`, a real S3 server on loopback, data in a
temp dir) and a local folder store in the same temp dir are measured in one run:

  (a) write  a ~100 MB checkpoint (the bytes of a real `torch.save` of ~100 MB of float32
             tensors, through `worker.engine.checkpoint.dumps`) with `Store.put_bytes` (sha256
             included, as the worker does), --repeats times to each store; best and median
             seconds and MB/s. Target: 100 MB to S3 on loopback in at most 2 s.
  (b) train  the same run in-process through the worker's own path (`program.build` +
             `program.train`, `settings.artifact_url` pointed at each store, the store from
             `service.artifacts.service.store()`), checkpointing every epoch: a sink that does
             what `worker.runs.training.DatabaseSink` does minus the database (decide from its
             own state; on `checkpoint(state)`, `checkpoint.dumps(state.state_dict(), 1)` on the
             training thread, then a background uploader mirroring `worker.runs.artifacts.
             Checkpoints`: one thread, the newest waiting checkpoint replaces an older waiting
             one, `put_bytes` under `with_store_retry`, the older checkpoints deleted). The
             default model (digits, MLP [2048, 2048], SGD + momentum) makes a ~35 MB checkpoint
             (weights + momentum) and ~0.5-1 s epochs on a 2-core CPU. Per-epoch wall time
             (record to record: train, validate, decide, dumps, and whatever the upload thread
             and the server take from the cores) for: no checkpoints, local folder, S3; runs
             alternate, --train-repeats of each. Target: S3 / local at most 1.03.

    .venv/bin/python benchmarks/artifact_store.py [--mb 100] [--repeats 5] [--epochs 12]
                                                  [--train-repeats 2] [--hidden 2048,2048]
                                                  [--batch-size 64] [--threads N] [--skip-write]
"""

from __future__ import annotations

import argparse
import contextlib
import hashlib
import os
import shutil
import statistics
import sys
import tempfile
import threading
import time
from pathlib import Path
from typing import Any

os.environ.setdefault("GLIDEPATH_DATA_DIR", tempfile.mkdtemp(prefix="glidepath-bench-"))
sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import torch

from benchmarks.proc_cpu import cpu_seconds
from service.artifacts import service as artifacts
from service.artifacts.store import ArtifactError, Store
from service.config import settings
from service.datasets import builtin
from service.training import decisions, per_step
from service.training.spec import ExperimentSpec
from tests.support.s3 import start_seaweedfs
from worker.engine import checkpoint, program
from worker.engine.data import to_device
from worker.runs.artifacts import with_store_retry

MB = 2**20
WRITE_TARGET_S = 2.0
RATIO_TARGET = 1.03


# --- (a) raw writes ------------------------------------------------------------------------------


def checkpoint_bytes(mb: int) -> bytes:
    """A real checkpoint's bytes: `mb` MB of float32 tensors (4 MB each) through dumps()."""
    gen = torch.Generator().manual_seed(0)
    n = max(1, mb // 4)
    tensors = {f"layer{i}.weight": torch.randn(1024, 1024, generator=gen) for i in range(n)}
    return checkpoint.dumps({"epoch": 1, "model": tensors}, 1)


def time_writes(
    store: Store, data: bytes, repeats: int, server_pid: int
) -> tuple[list[float], float, float]:
    """Seconds of each `put_bytes` (a fresh key each time, deleted afterwards, untimed), and
    the CPU seconds per write of this process (all its threads) and of the S3 server."""
    times, client, server = [], 0.0, 0.0
    for i in range(repeats):
        key = f"bench/write-{i}.pt"
        c0, s0, t0 = time.process_time(), cpu_seconds(server_pid), time.perf_counter()
        store.put_bytes(data, key)
        times.append(time.perf_counter() - t0)
        client += time.process_time() - c0
        server += cpu_seconds(server_pid) - s0
        store.delete(key)
    return times, client / repeats, server / repeats


def write_benchmark(
    stores: dict[str, Store], mb: int, repeats: int, server_pid: int
) -> dict[str, list[float]]:
    t0 = time.perf_counter()
    data = checkpoint_bytes(mb)
    dumps_s = time.perf_counter() - t0
    t0 = time.perf_counter()
    hashlib.sha256(data).hexdigest()
    sha_s = time.perf_counter() - t0
    size = len(data) / MB
    print(f"(a) one checkpoint of {size:.1f} MB (torch.save of {mb // 4} 1024x1024 float32 "
          f"tensors; dumps {dumps_s:.2f} s; the sha256 put_bytes takes {sha_s:.2f} s), "
          f"{repeats} writes to each store after one warm-up write")  # fmt: skip
    results: dict[str, list[float]] = {}
    for name, store in stores.items():
        time_writes(store, data, 1, server_pid)  # warm-up: connections, the first volume
        times, client, server = time_writes(store, data, repeats, server_pid)
        results[name] = times
        best, med = min(times), statistics.median(times)
        print(f"  {name:<6} best {best:6.2f} s ({size / best:6.0f} MB/s)   "
              f"median {med:6.2f} s ({size / med:6.0f} MB/s)   CPU per write: this process "
              f"{client:.2f} s, S3 server {server:.2f} s")  # fmt: skip
    med = statistics.median(results["s3"])
    verdict = "met" if med <= WRITE_TARGET_S * size / 100 else "missed"
    print(f"  target: 100 MB to S3 on loopback in at most {WRITE_TARGET_S:.0f} s -> {verdict} "
          f"(median {med * 100 / size:.2f} s per 100 MB; S3/local median = "
          f"{med / statistics.median(results['local']):.2f})")  # fmt: skip
    sys.stdout.flush()
    return results


# --- (b) training with checkpoints ---------------------------------------------------------------


class Uploader(threading.Thread):
    """`worker.runs.artifacts.Checkpoints` without the database: one background thread, the
    newest waiting checkpoint replaces an older waiting one, `put_bytes` with the store retry,
    then every older checkpoint but the best epoch's deleted (Checkpoints' retention)."""

    def __init__(self, run: int) -> None:
        super().__init__(name=f"checkpoints-{run}", daemon=True)
        self.run_id = run
        self._pending: tuple[int, bytes, int | None] | None = None
        self._cond = threading.Condition()
        self._closed = False
        self.kept: list[int] = []  # the epochs whose checkpoints are in the store
        self.uploaded = 0
        self.replaced = 0  # submitted while another was still waiting: never uploaded
        self.upload_s: list[float] = []

    def submit(self, epoch: int, data: bytes, best_epoch: int | None) -> None:
        with self._cond:
            if self._pending is not None:
                self.replaced += 1
            self._pending = (epoch, data, best_epoch)
            self._cond.notify()

    def run(self) -> None:
        while True:
            with self._cond:
                while self._pending is None and not self._closed:
                    self._cond.wait()
                if self._pending is None:
                    return
                job, self._pending = self._pending, None
            self._upload(*job)

    def _upload(self, epoch: int, data: bytes, best_epoch: int | None) -> None:
        key = artifacts.checkpoint_key(self.run_id, epoch)
        store = artifacts.store()
        t0 = time.perf_counter()
        with_store_retry(lambda: store.put_bytes(data, key), f"checkpoint {key}")
        self.upload_s.append(time.perf_counter() - t0)
        self.uploaded += 1
        keep = {epoch, best_epoch}
        for old in [e for e in self.kept if e not in keep]:
            with contextlib.suppress(ArtifactError):
                store.delete(artifacts.checkpoint_key(self.run_id, old))
        self.kept = [e for e in self.kept if e in keep] + [epoch]

    def close(self) -> None:
        with self._cond:
            self._closed = True
            self._cond.notify_all()
        self.join()


class BenchSink:
    """`DatabaseSink` minus the database: decides from its own state (as tests' ListSink), and
    checkpoints exactly as DatabaseSink does. Notes the wall-clock time of each record()."""

    def __init__(self, spec: ExperimentSpec, uploads: Uploader | None) -> None:
        self.spec, self.uploads = spec, uploads
        self.stop = threading.Event()
        self.state: decisions.State | None = None
        self.best_epoch: int | None = None
        self.saved_at = time.monotonic()
        self.stamps: list[float] = []
        self.bytes = 0

    def record(
        self, epoch: int, lr: float, duration: float, metrics: dict[str, float | None],
        lrs: per_step.EpochLRs | None = None,
    ) -> tuple[decisions.Decision, decisions.State]:  # fmt: skip
        self.stamps.append(time.perf_counter())
        state = self.state or decisions.initial_state(self.spec, lr)
        decision, self.state = decisions.step(self.spec, state, epoch, metrics, lr)
        self.best_epoch = self.state.best_epoch
        return decision, self.state

    def checkpoint(self, state: program.RunState, now: bool = False) -> None:
        if self.uploads is None:
            return
        if self.spec.checkpoint_every is not None:
            due = state.epoch % self.spec.checkpoint_every == 0
        else:
            due = time.monotonic() - self.saved_at >= settings.checkpoint_seconds
        if due or now:
            data = checkpoint.dumps(state.state_dict(), 1)
            self.bytes = len(data)
            self.uploads.submit(state.epoch, data, self.best_epoch)
            self.saved_at = time.monotonic()


def train_once(spec: ExperimentSpec, url: str | None, run: int) -> dict[str, Any]:
    """One run; per-epoch wall times (the first two intervals dropped: warm-up)."""
    if url is not None:
        settings.artifact_url = url
    device = torch.device("cpu")
    data = to_device(spec, builtin.load("digits"), builtin.info("digits"), device, None)
    state = program.build(spec, data, device)
    uploads = Uploader(run) if url is not None else None
    if uploads is not None:
        uploads.start()
    sink = BenchSink(spec, uploads)
    t0 = time.perf_counter()
    try:
        result = program.train(spec, data, state, sink)
    finally:
        if uploads is not None:
            uploads.close()
    assert result.status is not None and result.epoch == spec.epochs, result
    intervals = [b - a for a, b in zip(sink.stamps, sink.stamps[1:], strict=False)][2:]
    out: dict[str, Any] = {"epochs": intervals, "total": time.perf_counter() - t0,
                           "bytes": sink.bytes}  # fmt: skip
    if uploads is not None:
        out.update(uploaded=uploads.uploaded, replaced=uploads.replaced, upload_s=uploads.upload_s)
    return out


def train_benchmark(
    urls: dict[str, str], args: argparse.Namespace, server_pid: int
) -> dict[str, list[float]]:
    spec = ExperimentSpec.model_validate({
        "dataset": "digits", "model": {"type": "mlp", "hidden": args.hidden},
        "solver": {"type": "SGD", "params": {"momentum": 0.9}}, "base_lr": 0.01,
        "batch_size": args.batch_size, "epochs": args.epochs, "seed": 0, "device": "cpu",
        "checkpoint_every": args.every or None,
    })  # fmt: skip
    targets: dict[str, str | None] = {"none": None, **urls}
    warm = ExperimentSpec.model_validate({**spec.model_dump(), "epochs": 3})
    runs = iter(range(1, 1000))  # a run id each: the checkpoints' keys
    for url in targets.values():
        train_once(warm, url, next(runs))
    per_epoch: dict[str, list[float]] = {name: [] for name in targets}
    uploads: dict[str, list[float]] = {name: [] for name in urls}
    counts: dict[str, list[int]] = {name: [0, 0] for name in urls}
    server_cpu: dict[str, float] = {name: 0.0 for name in urls}
    size = 0
    for _ in range(args.train_repeats):
        for name, url in targets.items():
            s0 = cpu_seconds(server_pid)
            r = train_once(spec, url, next(runs))
            per_epoch[name] += r["epochs"]
            size = r["bytes"] or size
            if url is not None:
                uploads[name] += r["upload_s"]
                counts[name][0] += r["uploaded"]
                counts[name][1] += r["replaced"]
                server_cpu[name] += cpu_seconds(server_pid) - s0
    policy = (
        f"every {args.every} epoch(s)"
        if args.every
        else (f"every {settings.checkpoint_seconds:g} s (the default)")
    )
    print(f"(b) training: digits, MLP {args.hidden}, SGD+momentum, batch {args.batch_size}, "
          f"{args.epochs} epochs x {args.train_repeats} runs per target (alternating, after a "
          f"3-epoch warm-up of each), a checkpoint {policy} of {size / MB:.1f} MB, torch "
          f"threads {torch.get_num_threads()}")  # fmt: skip
    med = {name: statistics.median(v) for name, v in per_epoch.items()}
    for name, v in per_epoch.items():
        line = (f"  {name:<6} per-epoch median {med[name] * 1000:7.1f} ms  (min "
                f"{min(v) * 1000:6.1f}, max {max(v) * 1000:6.1f}; {len(v)} epochs)")  # fmt: skip
        if uploads.get(name):
            up = uploads[name]
            line += (f"; upload median {statistics.median(up):.2f} s, {counts[name][0]} "
                     f"uploaded, {counts[name][1]} replaced while waiting; S3 server CPU "
                     f"{server_cpu[name] / max(1, counts[name][0]):.2f} s per upload")  # fmt: skip
        print(line)
    ratio = med["s3"] / med["local"]
    verdict = "met" if ratio <= RATIO_TARGET else "missed"
    print(f"  local / none = {med['local'] / med['none']:.3f}")
    print(f"  s3 / none    = {med['s3'] / med['none']:.3f}")
    print(f"  s3 / local   = {ratio:.3f}  (target <= {RATIO_TARGET}: {verdict})")
    # The median leaves out the few epochs an upload overlaps; the mean counts them.
    mean = {name: statistics.fmean(v) for name, v in per_epoch.items()}
    print(f"  s3 / local, mean per-epoch = {mean['s3'] / mean['local']:.3f} "
          f"({mean['s3'] * 1000:.1f} vs {mean['local'] * 1000:.1f} ms)")  # fmt: skip
    sys.stdout.flush()
    return per_epoch


def widths(text: str) -> list[int]:
    return [int(w) for w in text.split(",") if w.strip()]


def main() -> None:
    ap = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    ap.add_argument("--mb", type=int, default=100, help="(a) checkpoint size in MB")
    ap.add_argument("--repeats", type=int, default=5, help="(a) writes per store")
    ap.add_argument("--epochs", type=int, default=12, help="(b) epochs per run")
    ap.add_argument("--train-repeats", type=int, default=2, help="(b) runs per target")
    ap.add_argument("--hidden", type=widths, default=[2048, 2048], help="(b) MLP widths")
    ap.add_argument("--batch-size", type=int, default=64)
    ap.add_argument("--threads", type=int, default=0, help="torch threads (0: torch's default)")
    ap.add_argument("--every", type=int, default=1, help="(b) checkpoint every N epochs; 0: "
                    "the default policy, every CHECKPOINT_SECONDS (10 s)")  # fmt: skip
    ap.add_argument("--skip-write", action="store_true", help="only (b)")
    ap.add_argument("--skip-train", action="store_true", help="only (a)")
    args = ap.parse_args()
    if args.threads:
        torch.set_num_threads(args.threads)
    root = Path(tempfile.mkdtemp(prefix="glidepath-bench-store-"))
    with start_seaweedfs(root / "seaweedfs") as s3:
        os.environ.update(s3.env)  # the AWS_* variables the worker's s3fs reads
        urls = {"local": (root / "local").resolve().as_uri(), "s3": s3.url("artifacts")}
        print(f"SeaweedFS (weed mini) at {s3.endpoint_url}, up in {s3.startup_s:.1f} s; local "
              f"store {root / 'local'}; {os.cpu_count()} CPUs")  # fmt: skip
        if not args.skip_write:
            stores = {name: Store(url) for name, url in urls.items()}
            assert s3.proc is not None
            write_benchmark(stores, args.mb, args.repeats, s3.proc.pid)
        if not args.skip_train:
            assert s3.proc is not None
            train_benchmark(urls, args, s3.proc.pid)
    shutil.rmtree(root, ignore_errors=True)


if __name__ == "__main__":
    main()

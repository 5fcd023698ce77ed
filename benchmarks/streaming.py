"""Epoch time of data streamed from host memory vs the same data on the device.

A generated classification dataset ten times the device budget (by default budget 8 MB, data
80 MB of float32 features in an np.memmap file in a temp dir, as a plugin dataset may hand it
over) is trained two ways in one run, through the engine's own loop (`train_epoch` + `evaluate`,
MLP, SGD + momentum):
  device    budget unlimited: the split parts are copied to the device once, batched by index
  streamed  budget --budget-mb: the parts stay in host memory (the memmap read in place) and
            each batch is gathered on the host in the shuffled order, then sent to the device

    .venv/bin/python benchmarks/streaming.py [--budget-mb 8] [--times 10] [--features 1024]
                                             [--hidden 512] [--batch-size 256] [--epochs 3]
                                             [--repeats 3]

Prints seconds per epoch (best of repeats, after a warm-up epoch of each) and the ratio
streamed/device (target on CPU: at most 1.15), and checks that both ways give the same losses.
"""

from __future__ import annotations

import argparse
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import numpy as np
import torch

from service.training.datasets import Arrays, DatasetInfo
from service.training.schedule import build_schedule
from service.training.spec import ExperimentSpec
from worker.engine.data import DeviceData, to_device
from worker.engine.loop import evaluate, train_epoch
from worker.engine.model import build_model

MB = 2**20
CLASSES = 10


def generate(folder: Path, rows: int, features: int) -> tuple[Arrays, DatasetInfo]:
    """Seeded Gaussian features in an np.memmap (written in blocks, never whole in memory) and
    labels from a random linear map, so there is something to learn."""
    rng = np.random.default_rng(0)
    w = rng.standard_normal((features, CLASSES)).astype(np.float32)
    x = np.memmap(folder / "x.f32", dtype=np.float32, mode="w+", shape=(rows, features))
    y = np.empty(rows, dtype=np.int64)
    for start in range(0, rows, 4096):
        block = rng.standard_normal((min(4096, rows - start), features), dtype=np.float32)
        x[start : start + len(block)] = block
        y[start : start + len(block)] = (block @ w).argmax(1)
    x.flush()
    del x
    x = np.memmap(folder / "x.f32", dtype=np.float32, mode="r", shape=(rows, features))
    info = DatasetInfo(name="bench", task="classification", n_samples=rows,
                       feature_shape=(features,), n_classes=CLASSES, image_shape=None,
                       description="generated")  # fmt: skip
    return Arrays(x=x, y=y), info


def run(
    spec: ExperimentSpec, data: DeviceData, device: torch.device, epochs: int
) -> tuple[list[float], list[float]]:
    """Seconds of each epoch (train + validate) after one warm-up epoch, and the losses."""
    torch.manual_seed(spec.seed)
    model = build_model(spec.model, data.info).to(device)
    opt = torch.optim.SGD(model.parameters(), lr=spec.base_lr, momentum=0.9)
    schedule = build_schedule(spec, opt, 1)
    times, losses = [], []
    for epoch in range(epochs + 1):
        t0 = time.perf_counter()
        trained = train_epoch(model, opt, schedule, data.train, spec.batch_size,
                              "classification", spec.seed, epoch)  # fmt: skip
        val = evaluate(model, data.val, "classification")
        if device.type == "cuda":
            torch.cuda.synchronize()
        if epoch:
            times.append(time.perf_counter() - t0)
        losses += [trained.loss, val.loss]
    return times, losses


def main() -> None:
    ap = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    ap.add_argument("--budget-mb", type=int, default=8)
    ap.add_argument("--times", type=float, default=10.0, help="data size / budget (default 10)")
    ap.add_argument("--features", type=int, default=1024)
    ap.add_argument("--hidden", type=int, default=512)
    ap.add_argument("--batch-size", type=int, default=256)
    ap.add_argument("--epochs", type=int, default=3)
    ap.add_argument("--repeats", type=int, default=3)
    args = ap.parse_args()

    device = torch.device("cuda" if torch.cuda.is_available() else "cpu")
    budget = args.budget_mb * MB
    rows = int(args.times * budget) // (args.features * 4)
    spec = ExperimentSpec.model_validate({
        "dataset": "bench", "model": {"type": "mlp", "hidden": [args.hidden]},
        "solver": {"type": "SGD", "params": {"momentum": 0.9}}, "base_lr": 0.01,
        "split": {"train": 0.8, "val": 0.2, "seed": 0}, "batch_size": args.batch_size,
        "epochs": args.epochs, "seed": 0, "device": device.type,
    })  # fmt: skip
    with tempfile.TemporaryDirectory(prefix="glidepath-stream-") as tmp:
        arrays, info = generate(Path(tmp), rows, args.features)
        on_device = to_device(spec, arrays, info, device)
        streamed = to_device(spec, arrays, info, device, budget)
        assert streamed.streamed and not on_device.streamed
        best: dict[str, float] = {}
        losses: dict[str, list[float]] = {}
        for _ in range(args.repeats):  # interleaved, so drifts of the machine hit both alike
            for name, data in (("device", on_device), ("streamed", streamed)):
                times, losses[name] = run(spec, data, device, args.epochs)
                best[name] = min(best.get(name, min(times)), min(times))

    print(f"device={device} threads={torch.get_num_threads()} data={rows}x{args.features} "
          f"float32 = {rows * args.features * 4 / MB:.1f} MB (np.memmap), budget "
          f"{args.budget_mb} MB; mlp hidden={args.hidden}, batch {args.batch_size}, "
          f"{len(streamed.train)} train / {len(streamed.val)} val rows; epochs={args.epochs} "
          f"repeats={args.repeats} (best epoch of all)")  # fmt: skip
    for name, s in best.items():
        print(f"  {name:<9} {s * 1000:9.2f} ms/epoch (train + validate)")
    print(f"streamed / device = {best['streamed'] / best['device']:.3f}")
    print(f"same losses: {losses['streamed'] == losses['device']}")


if __name__ == "__main__":
    main()

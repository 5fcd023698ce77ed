"""Per-epoch cost of the engine vs a bare on-device torch loop and a typical DataLoader script.

The same config (digits, MLP, SGD+momentum, batch 64; train + validate every epoch) is trained
three ways in one run:
  bare        20 lines of on-device torch: tensors on the device, batches by index
  dataloader  the usual script: TensorDataset + DataLoader(shuffle=True), loss.item() per batch
  engine      Glidepath's worker code path, `run_experiment(id)`: claim, build, train, decide,
              and one fenced DB transaction per epoch (SQLite by default, or --database-url)

    .venv/bin/python benchmarks/epoch_overhead.py [--epochs 40] [--repeats 3] [--database-url URL]

Prints seconds per epoch (best of repeats) and the ratios engine/bare and dataloader/bare.
"""

from __future__ import annotations

import argparse
import os
import sys
import tempfile
import time
from pathlib import Path

os.environ.setdefault("GLIDEPATH_DATA_DIR", tempfile.mkdtemp(prefix="glidepath-bench-"))
sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import torch
from torch import nn

from service.datasets.builtin import info
from service.experiments.spec import ExperimentSpec
from worker.engine.data import to_device
from worker.engine.model import build_model

SPEC = {
    "dataset": "digits", "model": {"type": "mlp", "hidden": [64]},
    "solver": {"type": "SGD", "params": {"momentum": 0.9}}, "base_lr": 0.05,
    "batch_size": 64, "seed": 0, "device": "auto",
}  # fmt: skip


def setup(spec: ExperimentSpec) -> tuple:  # type: ignore[type-arg]
    device = torch.device("cuda" if torch.cuda.is_available() else "cpu")
    torch.manual_seed(0)
    data = to_device(spec, device)
    model = build_model(spec.model, info("digits")).to(device)
    opt = torch.optim.SGD(model.parameters(), lr=spec.base_lr, momentum=0.9)
    return device, data, model, opt


def bare(spec: ExperimentSpec) -> float:
    device, data, model, opt = setup(spec)
    xt, yt, xv, yv = data.train.x, data.train.y, data.val.x, data.val.y
    t0 = time.perf_counter()
    for _ in range(spec.epochs):
        model.train()
        total = torch.zeros((), device=device)
        for idx in torch.randperm(len(xt), device=device).split(spec.batch_size):
            opt.zero_grad(set_to_none=True)
            loss = nn.functional.cross_entropy(model(xt[idx]), yt[idx])
            loss.backward()
            opt.step()
            total += loss.detach() * len(idx)
        model.eval()
        with torch.no_grad():
            out = model(xv)
            stats = torch.stack(
                [nn.functional.cross_entropy(out, yv), (out.argmax(1) == yv).float().mean()]
            )
        _ = (total.item() / len(xt), stats.tolist())
    if device.type == "cuda":
        torch.cuda.synchronize()
    return (time.perf_counter() - t0) / spec.epochs


def dataloader(spec: ExperimentSpec) -> float:
    from torch.utils.data import DataLoader, TensorDataset

    device, data, model, opt = setup(spec)
    cpu = lambda t: t.cpu()  # noqa: E731  (a typical script keeps the dataset on the host)
    train = DataLoader(
        TensorDataset(cpu(data.train.x), cpu(data.train.y)),
        batch_size=spec.batch_size,
        shuffle=True,
    )
    val = DataLoader(TensorDataset(cpu(data.val.x), cpu(data.val.y)), batch_size=256)
    t0 = time.perf_counter()
    for _ in range(spec.epochs):
        model.train()
        running = 0.0
        for xb, yb in train:
            xb, yb = xb.to(device), yb.to(device)
            opt.zero_grad()
            loss = nn.functional.cross_entropy(model(xb), yb)
            loss.backward()
            opt.step()
            running += loss.item() * len(xb)
        model.eval()
        correct, vloss = 0, 0.0
        with torch.no_grad():
            for xb, yb in val:
                xb, yb = xb.to(device), yb.to(device)
                out = model(xb)
                vloss += nn.functional.cross_entropy(out, yb, reduction="sum").item()
                correct += (out.argmax(1) == yb).sum().item()
    return (time.perf_counter() - t0) / spec.epochs


def engine(spec: ExperimentSpec) -> float:
    from service.experiments import service
    from service.experiments.repository import ExperimentRepository
    from service.kit.db import session_scope
    from worker.engine.run import run_experiment

    with session_scope() as session:
        experiment = service.validate(session, spec, ["body"])
        ExperimentRepository(session).add(experiment, {})
        exp_id = experiment.id
    t0 = time.perf_counter()
    outcome = run_experiment(exp_id)
    elapsed = time.perf_counter() - t0
    assert outcome.status == "succeeded", outcome
    return elapsed / spec.epochs


def main() -> None:
    ap = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    ap.add_argument("--epochs", type=int, default=40)
    ap.add_argument("--repeats", type=int, default=3)
    ap.add_argument("--database-url", default="")
    args = ap.parse_args()
    if args.database_url:
        os.environ["GLIDEPATH_DATABASE_URL"] = args.database_url
        from service.config import settings

        settings.database_url = args.database_url
    from service.config import settings
    from service.kit import migrate

    migrate.upgrade()
    spec = ExperimentSpec.model_validate({**SPEC, "epochs": args.epochs})
    results: dict[str, float] = {}
    for name, fn in (("bare", bare), ("dataloader", dataloader), ("engine", engine)):
        fn(ExperimentSpec.model_validate({**SPEC, "epochs": 2}))  # warm-up: imports, caches
        results[name] = min(fn(spec) for _ in range(args.repeats))
    db = settings.effective_database_url.split("://")[0]
    device = "cuda" if torch.cuda.is_available() else "cpu"
    print(f"device={device} db={db} epochs={args.epochs} repeats={args.repeats} (best of)")
    for name, s in results.items():
        print(f"  {name:<11} {s * 1000:8.2f} ms/epoch")
    print(f"engine / bare      = {results['engine'] / results['bare']:.3f}")
    print(f"dataloader / bare  = {results['dataloader'] / results['bare']:.3f}")
    print(f"engine / dataloader = {results['engine'] / results['dataloader']:.3f}")


if __name__ == "__main__":
    main()

"""Per-epoch cost of the engine vs a bare on-device torch loop and a typical DataLoader script.

The same config (digits, MLP, SGD+momentum, batch 64; train + validate every epoch) is trained
three ways in one run:
  bare        20 lines of on-device torch: tensors on the device, batches by index
  dataloader  the usual script: TensorDataset + DataLoader(shuffle=True), loss.item() per batch
  engine      Glidepath's worker code path, `run_experiment(id)`: claim, build, train, decide,
              and one fenced DB transaction per epoch (SQLite by default, or --database-url)

    .venv/bin/python benchmarks/epoch_overhead.py [--epochs 40] [--repeats 3] [--database-url URL]

Prints seconds per epoch (best of repeats) and the ratios engine/bare and dataloader/bare.

Bigger epochs (the engine's fixed per-epoch cost weighs less as they grow):
  --samples N[,N...]  train on a seeded synthetic classification dataset of N samples, generated
                      and stored as `POST /v1/datasets` does (--features, default 64, and
                      --classes, default 10: digits' shape), once per N, each measured against
                      its own bare loop; a summary table follows when there are several
  --hidden W[,W...]   the MLP's hidden widths (default 64); --batch-size (default 64)
  --breakdown         also split the engine's time into its epochs' own train + validate time
                      (the stored duration_s) and the rest (DB write, decisions, lease, and the
                      run's setup and finish spread over its epochs)

    .venv/bin/python benchmarks/epoch_overhead.py --samples 10000,50000,200000 --epochs 10
"""

from __future__ import annotations

import argparse
import os
import sys
import tempfile
import time
import uuid
from pathlib import Path
from typing import Any

os.environ.setdefault("GLIDEPATH_DATA_DIR", tempfile.mkdtemp(prefix="glidepath-bench-"))
sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import torch
from torch import nn

from service.training.spec import ExperimentSpec
from worker.engine.data import DeviceData, to_device
from worker.engine.model import build_model
from worker.runs.datasets import load_arrays

SPEC = {
    "dataset": "digits", "model": {"type": "mlp", "hidden": [64]},
    "solver": {"type": "SGD", "params": {"momentum": 0.9}}, "base_lr": 0.05,
    "batch_size": 64, "seed": 0, "device": "auto",
}  # fmt: skip


def setup(spec: ExperimentSpec) -> tuple[torch.device, DeviceData, nn.Module, torch.optim.SGD]:
    device = torch.device("cuda" if torch.cuda.is_available() else "cpu")
    torch.manual_seed(0)
    data = to_device(spec, *load_arrays(spec.dataset), device)
    model = build_model(spec.model, data.info).to(device)
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


def engine(spec: ExperimentSpec) -> tuple[float, float]:
    """Seconds per epoch of the whole run, and of its epochs' own train + validate time."""
    from service.experiments import service
    from service.experiments.repository import ExperimentRepository
    from service.kit.db import session_scope
    from worker.runs.lifecycle import run_experiment

    with session_scope() as session:
        experiment = service.validate(session, spec, ["body"])
        ExperimentRepository(session).add(experiment, {})
        exp_id = experiment.id
    t0 = time.perf_counter()
    outcome = run_experiment(exp_id)
    elapsed = time.perf_counter() - t0
    assert outcome.status == "succeeded", outcome
    with session_scope() as session:
        in_epochs = sum(r.duration_s for r in ExperimentRepository(session).epochs(exp_id))
    return elapsed / spec.epochs, in_epochs / spec.epochs


def measure(spec_json: dict[str, Any], epochs: int, repeats: int) -> tuple[dict[str, float], float]:
    """Best-of-repeats seconds per epoch of each way, after a 2-epoch warm-up of each (imports,
    caches, CUDA context and kernels); and the engine's in-epoch share of its best repeat."""
    spec = ExperimentSpec.model_validate({**spec_json, "epochs": epochs})
    warm = ExperimentSpec.model_validate({**spec_json, "epochs": 2})
    results: dict[str, float] = {}
    for name, fn in (("bare", bare), ("dataloader", dataloader)):
        fn(warm)
        results[name] = min(fn(spec) for _ in range(repeats))
    engine(warm)
    results["engine"], in_epochs = min(engine(spec) for _ in range(repeats))
    return results, in_epochs


def generated_dataset(samples: int, features: int, classes: int) -> str:
    """A seeded synthetic classification dataset, stored as `POST /v1/datasets` stores one."""
    from service.datasets import service as datasets
    from service.datasets.schemas import GeneratorIn
    from service.kit.db import session_scope

    # A fresh name: a reused database (--database-url) may hold one whose file is gone.
    name = f"bench-{samples}x{features}-k{classes}-{uuid.uuid4().hex[:8]}"
    params = {"name": name, "generator": "classification", "n_samples": samples,
              "n_features": features, "n_classes": classes, "seed": 0}  # fmt: skip
    with session_scope() as session:
        datasets.create_generated(session, GeneratorIn.model_validate(params))
    return name


def describe(spec_json: dict[str, Any]) -> tuple[str, int, int]:
    """A one-line description of the workload, its training rows and steps per epoch."""
    from service.datasets import service as datasets
    from service.kit.db import session_scope
    from service.training.checks import derived_sizes

    spec = ExperimentSpec.model_validate(spec_json)
    with session_scope() as session:
        info = datasets.resolve(session, spec.dataset, ["dataset"])
    sizes, steps = derived_sizes(spec, info)
    text = (
        f"workload: dataset={spec.dataset} train={sizes['train']} val={sizes['val']} rows, "
        f"mlp hidden={spec.model.hidden}, batch {spec.batch_size}, {steps} steps/epoch"
    )
    return text, sizes["train"], steps


def widths(text: str) -> list[int]:
    return [int(w) for w in text.split(",") if w.strip()]


def main() -> None:
    ap = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    ap.add_argument("--epochs", type=int, default=40)
    ap.add_argument("--repeats", type=int, default=3)
    ap.add_argument("--database-url", default="")
    ap.add_argument("--dataset", default="digits", help="a built-in dataset (default digits)")
    ap.add_argument("--samples", type=widths, default=[], help="synthetic dataset size(s), N[,N]")
    ap.add_argument("--features", type=int, default=64, help="with --samples (default 64)")
    ap.add_argument("--classes", type=int, default=10, help="with --samples (default 10)")
    ap.add_argument("--hidden", type=widths, default=[64], help="hidden widths (default 64)")
    ap.add_argument("--batch-size", type=int, default=64)
    ap.add_argument("--breakdown", action="store_true", help="split the engine's time")
    args = ap.parse_args()
    if args.database_url:
        os.environ["GLIDEPATH_DATABASE_URL"] = args.database_url
        from service.config import settings

        settings.database_url = args.database_url
    from service.config import settings
    from service.kit import migrate

    migrate.upgrade()
    base = {**SPEC, "model": {"type": "mlp", "hidden": args.hidden}, "batch_size": args.batch_size}
    if args.samples:
        names = [generated_dataset(n, args.features, args.classes) for n in args.samples]
    else:
        names = [args.dataset]
    default = not args.samples and {**base, "dataset": args.dataset} == SPEC
    db = settings.effective_database_url.split("://")[0]
    device = "cuda" if torch.cuda.is_available() else "cpu"
    summary: list[tuple[int, int, dict[str, float]]] = []
    for name in names:
        spec_json = {**base, "dataset": name}
        results, in_epochs = measure(spec_json, args.epochs, args.repeats)
        if not default:
            text, rows, steps = describe(spec_json)
            print(text)
            summary.append((rows, steps, results))
        print(f"device={device} db={db} epochs={args.epochs} repeats={args.repeats} (best of)")
        for key, s in results.items():
            print(f"  {key:<11} {s * 1000:8.2f} ms/epoch")
        print(f"engine / bare      = {results['engine'] / results['bare']:.3f}")
        print(f"dataloader / bare  = {results['dataloader'] / results['bare']:.3f}")
        print(f"engine / dataloader = {results['engine'] / results['dataloader']:.3f}")
        if args.breakdown:
            rest = results["engine"] - in_epochs
            print(
                f"engine breakdown: {in_epochs * 1000:.2f} ms/epoch in its epochs (train + "
                f"validate, stored duration_s; {in_epochs / results['bare']:.3f}× bare) + "
                f"{rest * 1000:.2f} ms/epoch rest (DB write, decisions, lease, "
                "checkpoints, setup/finish)"
            )
        sys.stdout.flush()
    if len(summary) > 1:
        print(f"summary ({device}, {db}): engine vs bare by epoch size")
        print(f"  {'train rows':>10} {'steps':>6} {'bare ms':>9} {'engine ms':>10} {'e/bare':>7}")
        for rows, steps, r in summary:
            ratio = r["engine"] / r["bare"]
            print(
                f"  {rows:>10} {steps:>6} {r['bare'] * 1000:>9.2f} {r['engine'] * 1000:>10.2f} "
                f"{ratio:>7.3f}"
            )


if __name__ == "__main__":
    main()

"""The epoch loop: batches come from the part (on the device and batched by index there, or
streamed from host memory: `worker/engine/data.py`); no DataLoader and no host sync inside an
epoch (losses accumulate on the device and are read once at its end)."""

from __future__ import annotations

import threading
from collections.abc import Callable
from dataclasses import dataclass

import torch
from torch import nn

from service.training.hypergradient import Hypergradient
from service.training.schedule import Schedule
from worker.engine.data import Part

EVAL_CHUNK = 8192  # rows per forward pass when validating: bounds memory on large parts


class Cancelled(Exception):
    """The run was cancelled or lost its lease; raised at a batch boundary."""


@dataclass
class EvalResult:
    loss: float
    accuracy: float | None
    mae: float | None


def loss_fn(task: str) -> Callable[[torch.Tensor, torch.Tensor], torch.Tensor]:
    if task == "classification":
        return nn.functional.cross_entropy
    return lambda out, y: nn.functional.mse_loss(out.squeeze(-1), y)


def epoch_generator(seed: int, epoch: int) -> torch.Generator:
    """Shuffling and dropout of an epoch depend only on (seed, epoch), so a run resumed at any
    epoch draws exactly what an uninterrupted one would."""
    g = torch.Generator()
    g.manual_seed((seed * 1_000_003 + epoch) % (2**63))
    return g


def epoch_order(n: int, device: torch.device, seed: int, epoch: int) -> torch.Tensor:
    """Epoch `epoch`'s shuffled sample order on `device`; also seeds the epoch's dropout draws.
    Training and the LR range test both take their batches from here."""
    g = epoch_generator(seed, epoch)
    order = torch.randperm(n, generator=g).to(device, non_blocking=True)
    torch.manual_seed(int(torch.randint(0, 2**62, (1,), generator=g)))  # dropout draws
    return order


def train_epoch(
    model: nn.Module,
    optimizer: torch.optim.Optimizer,
    schedule: Schedule,
    data: Part,
    batch_size: int,
    task: str,
    seed: int,
    epoch: int,
    stop: threading.Event | None = None,
    hypergradient: Hypergradient | None = None,
) -> float:
    """One pass over the training part; returns the mean training loss (one host sync, plus one
    per step with `hypergradient`, which adapts the LR before every step)."""
    model.train()
    n = len(data)
    device = data.device
    order = epoch_order(n, data.index_device, seed, epoch)
    criterion = loss_fn(task)
    losses: list[torch.Tensor] = []
    if hypergradient is not None:
        hypergradient.begin_epoch()
    for xb, yb in data.batches(order, batch_size):
        if stop is not None and stop.is_set():
            raise Cancelled
        optimizer.zero_grad(set_to_none=True)
        loss = criterion(model(xb), yb)
        loss.backward()
        if hypergradient is not None:
            hypergradient.before_step()
        optimizer.step()
        schedule.after_step()
        losses.append(loss.detach())
    # Mean over samples: every batch has batch_size rows except possibly the last.
    sizes = torch.full((len(losses),), float(batch_size), device=device, dtype=torch.float64)
    sizes[-1] = n - batch_size * (len(losses) - 1)
    return float((torch.stack(losses).to(torch.float64) * sizes).sum().item()) / n


@torch.no_grad()
def evaluate(model: nn.Module, data: Part, task: str) -> EvalResult:
    model.eval()
    device = data.device
    loss_sum = torch.zeros((), device=device, dtype=torch.float64)
    hit_sum = torch.zeros((), device=device, dtype=torch.float64)
    for xb, yb in data.chunks(EVAL_CHUNK):
        out = model(xb)
        if task == "classification":
            loss_sum += nn.functional.cross_entropy(out, yb, reduction="sum").to(torch.float64)
            hit_sum += (out.argmax(-1) == yb).sum()
        else:
            pred = out.squeeze(-1)
            loss_sum += nn.functional.mse_loss(pred, yb, reduction="sum").to(torch.float64)
            hit_sum += (pred - yb).abs().sum().to(torch.float64)
    loss, hits = torch.stack([loss_sum, hit_sum]).tolist()  # the one host sync
    n = len(data)
    if task == "classification":
        return EvalResult(loss=loss / n, accuracy=hits / n, mae=None)
    return EvalResult(loss=loss / n, accuracy=None, mae=hits / n)

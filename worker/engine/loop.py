"""The epoch loop: batches come from the part (on the device and batched by index there, or
streamed from host memory: `worker/engine/data.py`); no DataLoader and no host sync inside an
epoch (losses accumulate on the device and are read once at its end), except with fp16, whose
GradScaler reads one flag per step.

Mixed precision (the spec's `precision`): forward and loss run under `torch.autocast` in bf16 or
fp16, the weights and the optimizer stay fp32. fp16 adds a `torch.amp.GradScaler`: the loss is
scaled, a step whose gradients overflowed is skipped (and the scale lowered), and such a step
does not advance a per-step scheduler either (pytorch#44511): the schedule counts taken steps."""

from __future__ import annotations

import contextlib
import threading
from collections.abc import Callable
from contextlib import AbstractContextManager
from dataclasses import dataclass, field, replace

import torch
from torch import nn

from service.training import catalog
from service.training.decisions import Overflow
from service.training.hypergradient import Hypergradient
from service.training.schedule import Schedule
from worker.engine.data import Part

EVAL_CHUNK = 8192  # rows per forward pass when validating: bounds memory on large parts
AUTOCAST_DTYPES = {"bf16": torch.bfloat16, "fp16": torch.float16}


class Cancelled(Exception):
    """The run was cancelled or lost its lease; raised at a batch boundary."""


# What torch says when a Python scalar (the LR, or a step size made from it: `alpha=-lr`) does
# not fit the dtype of the tensors it scales (1e308 with float32 weights).
OVERFLOW_MESSAGE = "without overflow"


class LROverflow(Exception):
    """An optimizer step's learning rate does not fit the parameters' dtype: torch refused the
    step (the weights are as before it). `overflow.step` is set by `train_epoch`."""

    def __init__(self, overflow: Overflow) -> None:
        super().__init__(overflow.reason(0))
        self.overflow = overflow

    @classmethod
    def of(cls, optimizer: torch.optim.Optimizer, step: int = 0) -> LROverflow:
        group = optimizer.param_groups[0]
        dtype = group["params"][0].dtype
        name = str(dtype).removeprefix("torch.")
        return cls(Overflow(float(group["lr"]), step, name, float(torch.finfo(dtype).max)))


def _optimizer_step(step: Callable[[], object], optimizer: torch.optim.Optimizer) -> None:
    """`step()`, with torch's refusal of an LR too large for the weights' dtype raised as
    `LROverflow` (a divergence, not a crash); any other error as it is."""
    try:
        step()
    except RuntimeError as err:
        if OVERFLOW_MESSAGE not in str(err):
            raise
        raise LROverflow.of(optimizer) from err


@dataclass
class EvalResult:
    loss: float
    accuracy: float | None
    mae: float | None


@dataclass(frozen=True)
class EpochResult:
    loss: float  # mean training loss over the epoch's samples
    skipped_steps: int = 0  # fp16: steps the GradScaler skipped (inf/NaN gradients)
    # Param group 0's LR at each optimizer step, one per batch (`StepLRs`)
    step_lrs: list[float] = field(default_factory=list)
    # The first batch's loss, computed before its step: at epoch 1, the untrained model's loss
    # (the divergence guard's reference, decisions.py)
    first_loss: float | None = None


def loss_fn(task: str) -> Callable[[torch.Tensor, torch.Tensor], torch.Tensor]:
    if task == "classification":
        return nn.functional.cross_entropy
    return lambda out, y: nn.functional.mse_loss(out.squeeze(-1), y)


def autocast(precision: str, device: torch.device) -> AbstractContextManager[object]:
    """Forward and loss in `precision`. fp32 enters nothing: a disabled `torch.autocast` still
    saves and restores the autocast state on every batch, a few percent of an 8 ms epoch."""
    if precision == "fp32":
        return contextlib.nullcontext()
    return torch.autocast(
        device_type=device.type,
        dtype=AUTOCAST_DTYPES.get(precision, torch.bfloat16),
    )


def grad_scaler(precision: str, device: torch.device) -> torch.amp.GradScaler | None:
    """fp16's loss scaler (None otherwise): fp16 gradients underflow without it."""
    return torch.amp.GradScaler(device.type) if precision == "fp16" else None


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
    seed_all(int(torch.randint(0, 2**62, (1,), generator=g)))  # dropout draws
    return order


def seed_all(seed: int) -> None:
    """`torch.manual_seed(seed)` for the generators a run draws from: the CPU's, and CUDA's once
    CUDA is initialised (a run on the GPU initialised it when its data went there). The same
    draws, without `torch.manual_seed`'s cost where an accelerator is not initialised: it queues a
    lazy seed for CUDA, XPU and MTIA, each with a captured stack (~1 ms a call, once per epoch),
    which no CPU run ever draws from (a GPU run put its data and model there first)."""
    torch.default_generator.manual_seed(seed)
    if torch.cuda.is_initialized():
        torch.cuda.manual_seed_all(seed)


def scaled_step(
    loss: torch.Tensor,
    optimizer: torch.optim.Optimizer,
    scaler: torch.amp.GradScaler | None,
    before_step: Callable[[], None] | None = None,
) -> bool:
    """backward() and the optimizer step; with `scaler`, on the scaled loss, and False when the
    scaler skipped the step (its scale went down: the gradients held inf or NaN). `LROverflow`
    when the step's LR does not fit the weights' dtype."""
    if scaler is None:
        loss.backward()
        if before_step is not None:
            before_step()
        _optimizer_step(optimizer.step, optimizer)
        return True
    scaler.scale(loss).backward()
    if before_step is not None:
        scaler.unscale_(optimizer)  # what it sees are the true gradients
        before_step()
    scale = scaler.get_scale()
    _optimizer_step(lambda: scaler.step(optimizer), optimizer)
    scaler.update()
    return scaler.get_scale() >= scale


class StepLRs:
    """Param group 0's LR of each optimizer step of an epoch, as the Python floats torch keeps
    (no device sync). Read after the step and before the schedule advances: the LR the step used
    (hypergradient descent adapts it just before the step). A schedule-free optimizer's is its
    `scheduled_lr` (its warmup or rectification applied), which it sets while stepping. A step
    fp16's GradScaler skipped gets the LR it would have used: the group's (the schedule did not
    advance) or, schedule-free, the next step's (its own counter did not advance either)."""

    def __init__(self, optimizer: torch.optim.Optimizer) -> None:
        self.optimizer = optimizer
        self.schedule_free = type(optimizer).__name__ in catalog.SCHEDULE_FREE
        self.values: list[float] = []
        self._waiting = 0  # schedule-free: skipped steps that take the next step's value

    def after_step(self, taken: bool) -> None:
        group = self.optimizer.param_groups[0]
        if not self.schedule_free:
            self.values.append(group["lr"])
        elif not taken:
            self._waiting += 1
        else:
            lr = group.get("scheduled_lr", group["lr"])
            self.values.extend([lr] * (self._waiting + 1))
            self._waiting = 0

    def epoch(self) -> list[float]:
        """The epoch's values as floats; skipped steps at its end take the last one known."""
        if self._waiting:
            group = self.optimizer.param_groups[0]
            last = self.values[-1] if self.values else group.get("scheduled_lr", group["lr"])
            self.values.extend([last] * self._waiting)
        return [float(v) for v in self.values]


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
    precision: str = "fp32",
    scaler: torch.amp.GradScaler | None = None,
) -> EpochResult:
    """One pass over the training part: the mean training loss (one host sync, plus one per step
    with `hypergradient`, which adapts the LR before every step, or with `scaler`), the steps
    the scaler skipped (a skipped step does not advance a per-step schedule) and the LR of every
    step (`StepLRs`). `LROverflow` (with the step of the epoch) when a step's LR does not fit the
    weights' dtype."""
    model.train()
    n = len(data)
    device = data.device
    order = epoch_order(n, data.index_device, seed, epoch)
    criterion = loss_fn(task)
    losses: list[torch.Tensor] = []
    skipped = 0
    if hypergradient is not None:
        hypergradient.begin_epoch()
    before_step = hypergradient.before_step if hypergradient is not None else None
    lrs = StepLRs(optimizer)
    cast = autocast(precision, device)  # entered at every step, made once
    for xb, yb in data.batches(order, batch_size):
        if stop is not None and stop.is_set():
            raise Cancelled
        optimizer.zero_grad(set_to_none=True)
        with cast:
            loss = criterion(model(xb), yb)
        try:
            taken = scaled_step(loss, optimizer, scaler, before_step)
        except LROverflow as err:
            raise LROverflow(replace(err.overflow, step=len(losses) + 1)) from err.__cause__
        lrs.after_step(taken)
        if taken:
            schedule.after_step()
        else:
            skipped += 1
        losses.append(loss.detach())
    # The batches' losses read in one host sync, their mean over samples taken in Python
    # (float64): every batch has batch_size rows except possibly the last. Two tensor ops where
    # weighting them on the device took nine (20 -> 7 µs an epoch on a 2-core CPU; on a GPU, a
    # kernel each).
    values = torch.stack(losses).tolist()
    last = n - batch_size * (len(values) - 1)
    total = sum(values[:-1]) * batch_size + values[-1] * last
    return EpochResult(total / n, skipped, lrs.epoch(), values[0])


@torch.no_grad()
def evaluate(model: nn.Module, data: Part, task: str, precision: str = "fp32") -> EvalResult:
    model.eval()
    device = data.device
    loss_sum = torch.zeros((), device=device, dtype=torch.float64)
    hit_sum = torch.zeros((), device=device, dtype=torch.float64)
    for xb, yb in data.chunks(EVAL_CHUNK):
        with autocast(precision, device):
            out = model(xb)
            if task == "classification":
                loss = nn.functional.cross_entropy(out, yb, reduction="sum")
                hits = (out.argmax(-1) == yb).sum()
            else:
                pred = out.squeeze(-1)
                loss = nn.functional.mse_loss(pred, yb, reduction="sum")
                hits = (pred.float() - yb).abs().sum()
        loss_sum += loss.to(torch.float64)
        hit_sum += hits.to(torch.float64)
    loss, hits_ = torch.stack([loss_sum, hit_sum]).tolist()  # the one host sync
    n = len(data)
    if task == "classification":
        return EvalResult(loss=loss / n, accuracy=hits_ / n, mae=None)
    return EvalResult(loss=loss / n, accuracy=None, mae=hits_ / n)

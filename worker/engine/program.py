"""The training program: build a run's model, optimizer and schedule from its spec, then train
epoch by epoch. It knows no database: each epoch's decision comes back from `EpochSink.record`
(the worker's `runs.training` decides from the stored history and writes the row), and a
checkpoint is whatever `RunState.state_dict()` returns.

One `RunState` holds everything that carries from one epoch to the next; each of its parts has
`state_dict()`/`load_state_dict()`, so a resume is one call."""

from __future__ import annotations

import threading
import time
from dataclasses import dataclass, field
from typing import Any, Protocol

import torch
from torch import nn

from service.training import catalog, per_step
from service.training.decisions import Decision, Overflow, State
from service.training.hypergradient import Hypergradient
from service.training.schedule import Schedule, build_schedule
from service.training.spec import ExperimentSpec
from service.training.split import steps_per_epoch
from service.training.status import OK, ExperimentStatus
from worker.engine.data import DeviceData
from worker.engine.loop import (
    EpochResult,
    EvalResult,
    LROverflow,
    evaluate,
    grad_scaler,
    seed_all,
    train_epoch,
)
from worker.engine.model import build_model
from worker.engine.plugins import Plugin


class BestWeights:
    """The weights of the best epoch so far, kept on the device when `restore_best` asks."""

    def __init__(self, device: torch.device) -> None:
        self.device = device
        self.weights: dict[str, torch.Tensor] | None = None

    def keep(self, model: nn.Module) -> None:
        self.weights = {k: v.detach().clone() for k, v in model.state_dict().items()}

    def state_dict(self) -> dict[str, torch.Tensor] | None:
        return self.weights

    def load_state_dict(self, state: dict[str, torch.Tensor] | None) -> None:
        self.weights = None if state is None else {k: v.to(self.device) for k, v in state.items()}


@dataclass
class RunState:
    """Everything a run carries from epoch to epoch. `epoch` is the last one finished."""

    model: nn.Module
    optimizer: torch.optim.Optimizer
    schedule: Schedule
    hypergradient: Hypergradient | None
    best: BestWeights
    steps_per_epoch: int
    epoch: int = 0
    scaler: torch.amp.GradScaler | None = None  # precision fp16: the loss scale and its clock

    def state_dict(self) -> dict[str, Any]:
        return {
            "epoch": self.epoch,
            "model": self.model.state_dict(),
            "optimizer": self.optimizer.state_dict(),
            "scheduler": self.schedule.state_dict(),
            "best_weights": self.best.state_dict(),
            "hypergradient": self.hypergradient.state_dict() if self.hypergradient else None,
            "grad_scaler": self.scaler.state_dict() if self.scaler is not None else None,
        }

    def load_state_dict(self, state: dict[str, Any]) -> None:
        self.model.load_state_dict(state["model"])
        self.optimizer.load_state_dict(state["optimizer"])
        self.schedule.load_state_dict(state["scheduler"])
        if self.hypergradient is not None and state.get("hypergradient") is not None:
            self.hypergradient.load_state_dict(state["hypergradient"])
        if self.scaler is not None and state.get("grad_scaler"):
            self.scaler.load_state_dict(state["grad_scaler"])
        self.best.load_state_dict(state["best_weights"])
        self.epoch = int(state["epoch"])


def build(
    spec: ExperimentSpec, data: DeviceData, device: torch.device, plugin: Plugin | None = None
) -> RunState:
    """Model (weights seeded by the spec), optimizer, schedule, hypergradient and fp16's
    GradScaler, at epoch 0. `plugin`: the model's factory when the spec names a plugin model."""
    if spec.precision == "fp16" and spec.solver.hypergradient is not None:
        # Refused at submit (checks._check_hypergradient): a skipped step would still move α.
        raise ValueError("hypergradient descent cannot be combined with precision fp16")
    seed_all(spec.seed)  # weight init
    model = build_model(spec.model, data.info, plugin).to(device)
    optimizer = catalog.solver_class(spec.solver.type)(
        model.parameters(), lr=spec.base_lr, **spec.solver.params
    )
    steps = steps_per_epoch(len(data.train), spec.batch_size)
    hd_spec = spec.solver.hypergradient  # the LR then adapts itself (no scheduler, no warmup)
    return RunState(
        model=model,
        optimizer=optimizer,
        schedule=build_schedule(spec, optimizer, steps),
        hypergradient=Hypergradient(optimizer, hd_spec.hyper_lr) if hd_spec else None,
        best=BestWeights(device),
        steps_per_epoch=steps,
        scaler=grad_scaler(spec.precision, device),
    )


class FirstStepLR:
    """The LR a schedule-free optimizer used for an epoch's first step (`scheduled_lr`, its own
    warmup or rectification applied), read by a step hook: it is known only once it stepped."""

    def __init__(self, optimizer: torch.optim.Optimizer) -> None:
        self.value: float | None = None
        optimizer.register_step_post_hook(self._after_step)

    def _after_step(self, optimizer: torch.optim.Optimizer, *_: Any) -> None:
        if self.value is None:
            self.value = float(optimizer.param_groups[0].get("scheduled_lr", 0.0))


class EpochSink(Protocol):
    """What the program needs from whoever runs it (the worker's `runs.training`)."""

    stop: threading.Event  # set: stop at the next batch boundary (raises loop.Cancelled)

    def record(
        self, epoch: int, lr: float, duration: float, metrics: dict[str, float | None],
        lrs: per_step.EpochLRs | None = None, start_loss: float | None = None,
        overflow: Overflow | None = None,
    ) -> tuple[Decision, State] | None:  # fmt: skip
        """Decide from the stored history and write the epoch; None once the run is not ours.
        `lrs`: the LR's range over the epoch's steps, and each step's where the run records
        them (`per_step.recorded`); `start_loss`: at epoch 1, the untrained model's loss (the
        first batch's, before its step), for the divergence guard (`decisions.step`);
        `overflow`: the epoch stopped at a step whose LR overflowed the weights' dtype."""

    def checkpoint(self, state: RunState, now: bool = False) -> None:
        """Called after an epoch that did not end the run: write a checkpoint if one is due
        (`now`: whether due or not, the run pauses here)."""


@dataclass
class Result:
    # A final status; None when the run stopped being ours (its lease was lost).
    status: ExperimentStatus | None
    epoch: int  # the last epoch recorded
    reason: str | None = None
    test_metrics: dict[str, float | None] | None = field(default=None)


def metric_row(task: str, train_loss: float | None, val: EvalResult) -> dict[str, float | None]:
    row: dict[str, float | None] = {"train_loss": train_loss, "val_loss": val.loss}
    if task == "classification":
        row["val_accuracy"] = val.accuracy
    else:
        row["val_mae"] = val.mae
    return row


def train(spec: ExperimentSpec, data: DeviceData, state: RunState, sink: EpochSink) -> Result:
    """Train from `state.epoch + 1` to the end or to a decision's stop; then restore the best
    weights (restore_best) and evaluate the test part of a run that ended well."""
    task, precision = data.info.task, spec.precision
    model, optimizer, hd = state.model, state.optimizer, state.hypergradient
    restore_best = bool(spec.early_stopping and spec.early_stopping.restore_best)
    status, reason = ExperimentStatus.SUCCEEDED, None
    epoch = state.epoch
    first_lr = FirstStepLR(optimizer) if spec.solver.type in catalog.SCHEDULE_FREE else None
    keep_steps = per_step.recorded(spec)  # the per-step LR depends on data or the optimizer
    for epoch in range(state.epoch + 1, spec.epochs + 1):
        lr = float(optimizer.param_groups[0]["lr"])
        t0 = time.perf_counter()
        catalog.training_mode(optimizer, True)
        if first_lr is not None:
            first_lr.value = None
        overflow: Overflow | None = None
        try:
            trained: EpochResult | None = train_epoch(
                model, optimizer, state.schedule, data.train, spec.batch_size, task, spec.seed,
                epoch, sink.stop, hd, precision, state.scaler,
            )  # fmt: skip
        except LROverflow as err:
            # A step's LR does not fit the weights' dtype: the epoch ends there (no train_loss:
            # it did not finish) and the decision ends the run `diverged`, not a crash.
            trained, overflow = None, err.overflow
        if hd is not None:
            lr = hd.epoch_lr  # what the epoch's first step used: adapted just before it
        if first_lr is not None and first_lr.value is not None:
            lr = first_lr.value  # a schedule-free optimizer's, its warmup included
        # Schedule-free: validation, checkpoints and the final model use the averaged weights.
        catalog.training_mode(optimizer, False)
        val = evaluate(model, data.val, task, precision)
        state.schedule.after_epoch(epoch)
        duration = time.perf_counter() - t0
        metrics = metric_row(task, trained.loss if trained else None, val)
        if precision == "fp16":
            metrics["skipped_steps"] = trained.skipped_steps if trained else None
        lrs = per_step.EpochLRs.of(trained.step_lrs, keep_steps) if trained else None
        start_loss = trained.first_loss if trained and epoch == 1 else None
        recorded = sink.record(epoch, lr, duration, metrics, lrs, start_loss, overflow)
        if recorded is None:
            return Result(None, epoch - 1)
        decision, decided = recorded
        state.epoch = epoch
        if decision.lr_next != lr:  # a plateau reduction: takes effect from the next epoch
            for group in optimizer.param_groups:
                group["lr"] = decision.lr_next
        if restore_best and decided.best_epoch == epoch:
            state.best.keep(model)
        if decision.stop == ExperimentStatus.WAITING:
            # Paused at a pruner's rung: it resumes from this epoch's checkpoint if promoted.
            sink.checkpoint(state, now=True)
            return Result(ExperimentStatus.WAITING, epoch, decision.events[-1].reason)
        if decision.stop:
            status, reason = ExperimentStatus(decision.stop), decision.events[-1].reason
            break
        if epoch < spec.epochs:
            sink.checkpoint(state)

    if restore_best and state.best.weights is not None:
        model.load_state_dict(state.best.weights)  # the final model is the best epoch's
    test_metrics: dict[str, float | None] | None = None
    if data.test is not None and status in OK:
        t = evaluate(model, data.test, task, precision)
        test_metrics = {"test_loss": t.loss}
        test_metrics["test_accuracy" if task == "classification" else "test_mae"] = (
            t.accuracy if task == "classification" else t.mae
        )
    return Result(status, epoch, reason, test_metrics)

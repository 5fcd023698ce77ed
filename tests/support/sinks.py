"""`program.EpochSink` for tests that drive the engine in-process: it decides per epoch as the
worker does (from its own state rather than the database), keeps every row (and each epoch's
per-step LRs: `lrs`), and optionally checkpoints (the real checkpoint bytes, `checkpoint.dumps`)
after epoch `save_at`."""

from __future__ import annotations

import threading
from typing import Any

from service.training import decisions, per_step
from service.training.spec import ExperimentSpec
from worker.engine import checkpoint, program

Row = tuple[int, float, dict[str, float | None]]  # epoch, lr, metrics


class ListSink:
    def __init__(self, spec: ExperimentSpec, save_at: int = 0,
                 state: decisions.State | None = None) -> None:  # fmt: skip
        self.spec, self.save_at, self.state = spec, save_at, state
        self.stop = threading.Event()
        self.rows: list[Row] = []
        self.lrs: list[per_step.EpochLRs | None] = []  # what record() got with each row
        self.saved: bytes | None = None  # the checkpoint taken after epoch `save_at`
        self.saved_state: decisions.State | None = None  # the decision state at the checkpoint

    def record(
        self, epoch: int, lr: float, duration: float, metrics: dict[str, float | None],
        lrs: per_step.EpochLRs | None = None, start_loss: float | None = None,
        overflow: decisions.Overflow | None = None,
    ) -> tuple[decisions.Decision, decisions.State]:  # fmt: skip
        state = self.state or decisions.initial_state(self.spec, lr)
        decision, self.state = decisions.step(
            self.spec, state, epoch, metrics, lr, start_loss, overflow
        )
        self.rows.append((epoch, lr, dict(metrics)))
        self.lrs.append(lrs)
        return decision, self.state

    def metrics(self, key: str) -> list[float | None]:
        return [m[key] for _, _, m in self.rows]

    def checkpoint(self, state: program.RunState, now: bool = False) -> None:
        if now or (self.save_at and state.epoch == self.save_at):
            self.saved = checkpoint.dumps(state.state_dict(), 1)
            self.saved_state = self.state

    def saved_checkpoint(self) -> dict[str, Any]:
        assert self.saved is not None, f"no checkpoint was taken after epoch {self.save_at}"
        ckpt = checkpoint.loads(self.saved)
        assert ckpt is not None
        return ckpt

"""A training run's history in the database: the per-epoch decide-and-write, the decision state
an attempt starts from, and the rows that store decided epochs."""

from __future__ import annotations

from dataclasses import asdict, dataclass
from typing import Any

from sqlalchemy.engine import Connection

from service.experiments.repository import ExperimentRepository
from service.kit.db import session_scope
from service.training import decisions, per_step
from service.training.spec import ExperimentSpec
from worker.runs import epoch_rows
from worker.runs.epoch_rows import EpochRows


class HistoryGap(RuntimeError):
    """The stored history does not end at the previous epoch."""


def decide_and_write(
    experiment_id: int, attempt: int, spec: ExperimentSpec, epoch: int, lr: float,
    duration: float, metrics: dict[str, float | None], conn: Connection | None = None,
    lrs: per_step.EpochLRs | None = None,
) -> tuple[decisions.Decision | None, decisions.State]:  # fmt: skip
    """One transaction per epoch: read the decision state stored with the previous epoch's row,
    decide, then write this epoch's row (with `lrs`: the LR's range over its steps, and the
    steps' LRs where the run records them), its decisions and the run's progress, fenced by the
    attempt. The read is one unique-key lookup, so its cost does not grow with the history.
    Returns (None, state) when the attempt is no longer current."""
    with session_scope(conn) as session:
        repo = ExperimentRepository(session)
        state = _stored_state(repo, experiment_id, spec, epoch, lr)
        decision, state = decisions.step(spec, state, epoch, metrics, lr)
        done = Decided(epoch, lr, duration, metrics, lrs, decision, state)
        ok = epoch_rows.store(repo, experiment_id, attempt, rows_of(experiment_id, attempt, [done]))
    return (decision if ok else None), state


def stored_state(
    experiment_id: int, spec: ExperimentSpec, epoch: int, lr: float
) -> decisions.State:
    """The decision state `epoch` starts from: the one stored with the previous epoch's row (the
    initial state for epoch 1). A run keeps it in memory from then on (`EpochWriter`)."""
    with session_scope() as session:
        return _stored_state(ExperimentRepository(session), experiment_id, spec, epoch, lr)


def _stored_state(repo: ExperimentRepository, experiment_id: int, spec: ExperimentSpec,
                  epoch: int, lr: float) -> decisions.State:  # fmt: skip
    stored = repo.state_after(experiment_id, epoch - 1) if epoch > 1 else None
    if epoch > 1 and stored is None:
        # Epoch rows are contiguous by construction; a missing predecessor means the history
        # was cut (a resume elsewhere) or lost: never decide on a guess.
        raise HistoryGap(f"no stored row for epoch {epoch - 1} of experiment {experiment_id}")
    return decisions.State.from_json(stored) if stored else decisions.initial_state(spec, lr)


@dataclass(frozen=True)
class Decided:
    """One epoch decided in memory, not yet stored."""

    epoch: int
    lr: float
    duration: float
    metrics: dict[str, float | None]
    lrs: per_step.EpochLRs | None
    decision: decisions.Decision
    state: decisions.State


def rows_of(experiment_id: int, attempt: int, epochs: list[Decided]) -> EpochRows:
    """The rows that store consecutive decided epochs, and the run's progress after them."""
    last = epochs[-1]
    best = {"best_epoch": last.state.best_epoch, "best_value": last.state.best_value}
    rows = [_row(experiment_id, attempt, e.epoch, e.lr, e.duration, e.metrics, e.lrs,
                 e.decision, e.state) for e in epochs]  # fmt: skip
    events = [{"experiment_id": experiment_id, "epoch": e.epoch, **asdict(event)}
              for e in epochs for event in e.decision.events]  # fmt: skip
    return EpochRows(last.epoch, best, rows, events)


def _row(experiment_id: int, attempt: int, epoch: int, lr: float, duration: float,
         metrics: dict[str, float | None], lrs: per_step.EpochLRs | None,
         decision: decisions.Decision, state: decisions.State) -> dict[str, Any]:  # fmt: skip
    return {"experiment_id": experiment_id, "epoch": epoch, "lr": lr, "duration_s": duration,
            "decision": decision.label, "attempt": attempt, "state": state.to_json(),
            **metrics, **lr_columns(lrs)}  # fmt: skip


def lr_columns(lrs: per_step.EpochLRs | None) -> dict[str, Any]:
    """The epoch row's lr_min, lr_max and step_lrs (always all three: one upsert shape)."""
    if lrs is None:
        return {"lr_min": None, "lr_max": None, "step_lrs": None}
    steps = per_step.pack(lrs.steps) if lrs.steps is not None else None
    return {"lr_min": lrs.lr_min, "lr_max": lrs.lr_max, "step_lrs": steps}

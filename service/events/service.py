"""The reads of live events as plain functions over a session, run on a thread: a subscriber's
replay, and the listener's one read per doorbell for every run and group followed. They return
events already framed (bytes), so N subscribers share one serialization."""

from __future__ import annotations

from dataclasses import dataclass, field, replace
from typing import Any

from sqlalchemy.orm import Session

from service.events import sse
from service.events.repository import EventsRepository
from service.events.schemas import GroupEnd, RunStatus
from service.experiments.models import Decision, EpochRow
from service.experiments.schemas import DecisionOut, EpochOut
from service.kit.db import session_scope
from service.sweeps.models import SweepStatus
from service.training.status import FINAL, ExperimentStatus

# -- events, framed ---------------------------------------------------------------------------


@dataclass(frozen=True)
class EpochItem:
    """An epoch row and its decisions: sent, or skipped, together."""

    epoch: int
    attempt: int
    data: bytes


@dataclass(frozen=True)
class StatusItem:
    """A run's `status` event; `key` is what makes it news (not its progress)."""

    experiment_id: int
    key: tuple[Any, ...]
    final: bool
    data: bytes


@dataclass(frozen=True)
class EndItem:
    """The stream ends: after `data` (a group's `end` event), or at once (b"")."""

    data: bytes = b""


Item = EpochItem | StatusItem | EndItem


def epoch_items(rows: list[EpochRow], decisions: list[Decision]) -> list[EpochItem]:
    by_epoch: dict[int, list[Decision]] = {}
    for d in decisions:
        by_epoch.setdefault(d.epoch, []).append(d)
    items = []
    for r in rows:
        data = sse.frame("epoch", EpochOut.of(r).model_dump_json(), r.epoch)
        data += _decision_frames(by_epoch.get(r.epoch, []))
        items.append(EpochItem(r.epoch, r.attempt, data))
    return items


def _decision_frames(decisions: list[Decision]) -> bytes:
    """`decision` events, each with its epoch as the id (the rows /decisions gives)."""
    return b"".join(
        sse.frame("decision", DecisionOut.model_validate(d).model_dump_json(), d.epoch)
        for d in decisions
    )


def status_item(row: Any, epochs: int, progress: bool = False) -> StatusItem:
    """`progress`: epochs_run and the best count as news (the many-runs stream, whose rows show
    them); a run's own stream has its epoch events for that."""
    key: tuple[Any, ...] = (row.status, row.attempt, row.cancel_requested, row.stop_reason,
                            row.error)  # fmt: skip
    if progress:
        key += (row.epochs_run, row.best_epoch, row.best_value)
    data = sse.frame("status", RunStatus.of(row, epochs).model_dump_json())
    return StatusItem(row.id, key, row.status in FINAL, data)


def _with_stop(repo: EventsRepository, row: Any, status: StatusItem,
               epochs: list[EpochItem]) -> StatusItem:  # fmt: skip
    """A run's `status` event, preceded by the pruner's stop when the run ended `pruned` and
    the stop's epoch is not among `epochs` (which carry their decisions). The stop is stored
    after the epoch it judged, so a follower had that epoch without it."""
    if row.status != ExperimentStatus.PRUNED or any(e.epoch == row.epochs_run for e in epochs):
        return status
    stops = [d for d in repo.decisions_in(row.id, row.epochs_run, row.epochs_run)
             if d.kind == ExperimentStatus.PRUNED]  # fmt: skip
    return replace(status, data=_decision_frames(stops) + status.data)


def end_item(states: dict[int, StatusItem]) -> EndItem:
    counts: dict[str, int] = {}
    for s in states.values():
        counts[s.key[0]] = counts.get(s.key[0], 0) + 1
    body = GroupEnd(runs=len(states), counts=counts).model_dump_json()
    return EndItem(sse.frame("end", body))


# -- one run ----------------------------------------------------------------------------------


@dataclass
class RunReplay:
    status: StatusItem
    epochs: list[EpochItem]
    attempt_at_cursor: int  # the attempt that wrote the row the cursor names (0: none)
    epochs_total: int
    last: tuple[int, int]  # (epoch, attempt) of the last row, read first: a new hub's mark


def replay_run(experiment_id: int, cursor: int, session: Session | None = None) -> RunReplay | None:
    """What a new subscriber is sent first: the rows after `cursor`, then the status. None: no
    such run. Read in this order so that each read sees at least what the one before saw: the
    status before the rows (a final status then comes with every row written before it)."""
    if session is None:
        with session_scope() as own:
            return replay_run(experiment_id, cursor, own)
    repo = EventsRepository(session)
    last = repo.last_row(experiment_id)
    row = repo.status(experiment_id)
    if row is None:
        return None
    total = repo.epochs_of([experiment_id]).get(experiment_id, 0)
    at_cursor = repo.attempt_at(experiment_id, cursor) if cursor else 0
    rows = repo.rows_after(experiment_id, cursor)
    decisions = repo.decisions_in(experiment_id, rows[0].epoch, rows[-1].epoch) if rows else []
    epochs = epoch_items(rows, decisions)
    status = _with_stop(repo, row, status_item(row, total), epochs)
    return RunReplay(status, epochs, at_cursor, total, last)


@dataclass
class RunPlan:
    """What the listener knows of a followed run before its read."""

    experiment_id: int
    epoch: int  # the last row read (its mark)
    attempt: int  # the highest attempt among the rows read
    marker: tuple[Any, ...] | None  # the run's row as last read: unchanged means no new rows
    status_key: tuple[Any, ...] | None
    epochs_total: int


@dataclass
class RunRead:
    gone: bool = False
    marker: tuple[Any, ...] | None = None
    status: StatusItem | None = None  # set when it changed
    epochs: list[EpochItem] = field(default_factory=list)


def read_run(repo: EventsRepository, plan: RunPlan) -> RunRead:
    """The run's status, then (only if its row changed) the rows after the mark and any row a
    later attempt rewrote, with their decisions."""
    i = plan.experiment_id
    row = repo.status(i)
    if row is None:
        return RunRead(gone=True)
    marker = (row.updated_at, row.status, row.epochs_run, row.attempt, row.cancel_requested)
    status = status_item(row, plan.epochs_total)
    out = RunRead(marker=marker, status=status if status.key != plan.status_key else None)
    if marker != plan.marker:
        rows = repo.rows_after(i, plan.epoch, plan.attempt)
        if rows:
            decisions = repo.decisions_in(i, rows[0].epoch, rows[-1].epoch)
            out.epochs = epoch_items(rows, decisions)
    if out.status is not None:
        out.status = _with_stop(repo, row, out.status, out.epochs)
    return out


# -- many runs ---------------------------------------------------------------------------------


@dataclass
class GroupPlan:
    kind: str  # sweep, batch or all
    key: int | str | None
    states: dict[int, StatusItem]  # each run's last status read (a copy)
    epochs: dict[int, int]  # each run's epochs, once read
    max_id: int | None  # "all": the newest run at the last read (None: none yet)


@dataclass
class GroupRead:
    changed: list[StatusItem] = field(default_factory=list)
    epochs: dict[int, int] = field(default_factory=dict)  # read for runs new to the group
    ended: bool = False
    max_id: int = 0  # the newest run of the group ("all": of any)
    gone: list[int] = field(default_factory=list)  # runs known to the plan, deleted since


def read_group(repo: EventsRepository, plan: GroupPlan) -> GroupRead:
    """Every run of the group whose status or progress changed, and whether the group is over:
    a batch when all its runs are final (none left counts: they were deleted); a sweep when it
    has ended too (a running sweep may have no run yet: a later stage adds them); "all" never."""
    out = GroupRead()
    if plan.kind == "all":
        # Read first: a run inserted after it is newer, so the next read sees it.
        out.max_id = repo.max_id()
    going = [i for i, s in plan.states.items() if not s.final]
    rows = repo.group(plan.kind, plan.key, going, plan.max_id)
    if plan.kind != "all":
        out.max_id = max((r.id for r in rows), default=0)
    new = [r.id for r in rows if r.id not in plan.epochs]
    out.epochs = repo.epochs_of(new)
    states = dict(plan.states)
    if plan.kind != "all":
        # A batch's or sweep's read returns every run it has: a known one missing was deleted,
        # and must neither hold the group open nor count in its `end`.
        present = {r.id for r in rows}
        out.gone = [i for i in states if i not in present]
        for i in out.gone:
            del states[i]
    for r in rows:
        item = status_item(r, plan.epochs.get(r.id, out.epochs.get(r.id, 0)), progress=True)
        old = states.get(r.id)
        if old is None or old.key != item.key:
            out.changed.append(item)
            states[r.id] = item
    if plan.kind != "all" and all(s.final for s in states.values()):
        if plan.kind == "batch":  # its runs are inserted with it: none is still to come
            out.ended = True
        else:
            assert isinstance(plan.key, int)
            out.ended = repo.sweep_status(plan.key) not in (SweepStatus.RUNNING, None)
    return out


def replay_group(kind: str, key: int | str | None) -> GroupRead:
    """A new subscriber's view of the group: every run's status, and whether it is over."""
    with session_scope() as session:
        return read_group(EventsRepository(session), GroupPlan(kind, key, {}, {}, None))


def group_exists(kind: str, key: int | str | None) -> bool:
    with session_scope() as session:
        repo = EventsRepository(session)
        if kind == "sweep":
            assert isinstance(key, int)
            return repo.sweep_status(key) is not None
        if kind == "batch":
            return repo.batch_exists(str(key))
        return True


def run_exists(experiment_id: int) -> bool:
    with session_scope() as session:
        return EventsRepository(session).status(experiment_id) is not None

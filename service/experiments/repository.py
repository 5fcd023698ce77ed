"""Every query of the experiments domain. Services and the worker call these; nobody else
writes SQL against these tables."""

from __future__ import annotations

import functools
from collections.abc import Callable, Collection, Sequence
from datetime import timedelta
from typing import Any, NamedTuple, cast

from sqlalchemy import (
    BindParameter,
    ColumnElement,
    CursorResult,
    Executable,
    Insert,
    Row,
    Select,
    Table,
    Update,
    and_,
    bindparam,
    case,
    delete,
    func,
    insert,
    or_,
    select,
    update,
)
from sqlalchemy.orm import Session

from service.experiments.listing import DEFAULT_SORT, Key, ListSort
from service.experiments.models import Attempt, Decision, EpochRow, Experiment, ExperimentTag
from service.kit import notify
from service.kit.notify import announce
from service.kit.time import utcnow
from service.kit.upsert import upsert
from service.training.defaults import DEFAULT_EPOCHS
from service.training.status import FINAL, ExperimentStatus


def _held(
    experiment_id: int | BindParameter[int], attempt: int | BindParameter[int]
) -> ColumnElement[bool]:
    """The run is running under this attempt: the fence of every worker write."""
    return and_(
        Experiment.id == experiment_id,
        Experiment.attempt == attempt,
        Experiment.status == ExperimentStatus.RUNNING,
    )


def _fenced(keys: tuple[str, ...]) -> Update:
    """The fence (`ExperimentRepository.fence`) setting these columns, its values as parameters
    (`_fence_params`), so that it is built once per shape: building and keying a statement costs
    SQLAlchemy ~0.2-0.3 ms a call, as much as its round trip to PostgreSQL, in every epoch's
    write and between a worker's runs. The parameters' names are no column's: Core would read
    such a name as a column to SET."""
    return (
        update(Experiment)
        .where(_held(bindparam("p_id"), bindparam("p_attempt")))
        .values(updated_at=bindparam("p_now"), **{k: bindparam(f"v_{k}") for k in keys})
    )


def _fence_params(experiment_id: int, attempt: int, values: dict[str, Any]) -> dict[str, Any]:
    return {"p_id": experiment_id, "p_attempt": attempt, "p_now": utcnow(),
            **{f"v_{k}": v for k, v in values.items()}}  # fmt: skip


@functools.cache
def _fence_statement(keys: tuple[str, ...], notifying: bool) -> Update:
    """Returning the run's cancel flag (an epoch write tells its run of a cancel from it, in the
    statement it makes anyway: a SELECT after it cost ~1 ms a write on PostgreSQL here) and,
    with `notifying` (PostgreSQL), the announcement."""
    fenced = _fenced(keys)
    if notifying:
        return fenced.returning(Experiment.cancel_requested, notify.notifying(Experiment.id))
    return fenced.returning(Experiment.cancel_requested)


@functools.cache
def _fence_and_end_statement(keys: tuple[str, ...]) -> Select[Any]:
    """`fence_and_end` on PostgreSQL: the attempt's UPDATE a CTE over the fenced row."""
    fenced = (
        _fenced(keys)
        .returning(Experiment.id, notify.notifying(Experiment.id).label("announced"))
        .cte("fenced")
    )
    ended = (
        update(Attempt)
        .where(Attempt.experiment_id.in_(select(fenced.c.id)),
               Attempt.attempt == bindparam("p_attempt"), Attempt.ended_at.is_(None))
        .values(ended_at=bindparam("p_now"), outcome=bindparam("p_outcome"))
        .cte("ended")
    )  # fmt: skip
    return select(fenced.c.id, fenced.c.announced).add_cte(ended)


@functools.cache
def _claim_statement(takeover: bool, notifying: bool) -> Update:
    """`claim_run`'s UPDATE, built once per shape and run as Core (`_fence_statement` says why):
    the ORM's bulk UPDATE took ~0.7 ms more of each claim, between every two runs a worker takes.
    `takeover`: a run whose lease expired is claimable too."""
    claimable = Experiment.status == ExperimentStatus.QUEUED
    if takeover:
        expired = (Experiment.status == ExperimentStatus.RUNNING) & (
            Experiment.lease_expires_at < bindparam("p_now")
        )
        claimable = claimable | expired
    returning = [Experiment.attempt, Experiment.spec, Experiment.kind, Experiment.range_test,
                 Experiment.sweep_id]  # fmt: skip  # Claimed's fields, in order
    return (
        update(Experiment)
        .where(Experiment.id == bindparam("p_id"), claimable,
               Experiment.cancel_requested.is_(False))
        .values(
            status=ExperimentStatus.RUNNING,
            lease_owner=bindparam("p_owner"),
            lease_expires_at=bindparam("p_expires"),
            attempt=Experiment.attempt + 1,
            started_at=func.coalesce(Experiment.started_at,
                                     bindparam("p_now", type_=Experiment.started_at.type)),
        )
        .returning(*returning, *([notify.notifying(Experiment.id)] if notifying else []))
    )  # fmt: skip


@functools.cache
def _new_attempt_statement() -> Insert:
    return insert(Attempt).values(
        experiment_id=bindparam("p_id"),
        attempt=bindparam("p_attempt"),
        worker=bindparam("p_owner"),
        started_at=bindparam("p_now"),
    )


@functools.cache
def _detail_statements() -> tuple[Select[Any], Select[Any], Select[Any]]:
    """The reads of what the API shows of runs (a run's row; the tags and the attempts of one
    run or of a page of runs), built once and run as Core: through the ORM (identity map,
    statement built per call, objects loaded) the read that a polled run makes after each of
    its changes cost ~3× the CPU, the API's most frequent read."""
    e, t, a = Experiment.__table__, ExperimentTag.__table__, Attempt.__table__
    ids: BindParameter[list[int]] = bindparam("p_ids", expanding=True)
    return (
        select(e).where(e.c.id == bindparam("p_id")),
        select(t.c.experiment_id, t.c.key, t.c.value).where(t.c.experiment_id.in_(ids)),
        select(a).where(a.c.experiment_id.in_(ids)).order_by(a.c.experiment_id, a.c.attempt),
    )


# A sweep run's stage: stage 1 is also NULL (runs of sweeps made before stages were numbered).
_stage = func.coalesce(Experiment.sweep_stage, 1)


def _in_group(group: tuple[int, int] | None) -> list[ColumnElement[bool]]:
    """The conditions for a sweep's runs of one (stage, stored hyperband bracket)."""
    if group is None:
        return []
    stage, bracket = group
    return [_stage == stage, Experiment.sweep_bracket == bracket]


def _core(
    session: Session, stmt: Executable, params: dict[str, Any] | None = None
) -> CursorResult[Any]:
    """A worker's hot UPDATE run as plain Core on the session's connection: nothing in a
    worker's session mirrors the rows it updates, and the ORM's bulk-UPDATE path (its in-session
    sync, its compile state) cost ~0.3 ms of each ~0.8 ms statement on PostgreSQL; in the
    transaction that finishes every run and in every epoch's write."""
    return session.connection().execute(stmt, params)


class Claimed(NamedTuple):
    """A run just claimed: its new attempt and what its worker runs."""

    attempt: int
    spec: dict[str, Any] | None
    kind: str | None
    range_test: dict[str, Any] | None
    sweep_id: int | None


WAITING_CANCELLED = "cancelled while waiting at a rung"  # the stop reason; `cancel_many` reads it

# What a metrics page shows of an epoch row, in the order of `schemas.EpochOut`.
PAGE_COLUMNS = (
    EpochRow.epoch, EpochRow.lr, EpochRow.lr_min, EpochRow.lr_max, EpochRow.train_loss,
    EpochRow.val_loss, EpochRow.val_accuracy, EpochRow.val_mae, EpochRow.duration_s,
    EpochRow.decision, EpochRow.skipped_steps,
)  # fmt: skip
# One round trip: the run's status beside each row after the cursor, or once with nulls when
# there is none (the usual answer to a poll); no row at all: no such run.
_POLL = (
    select(Experiment.status, *PAGE_COLUMNS)
    .outerjoin(
        EpochRow,
        and_(EpochRow.experiment_id == Experiment.id, EpochRow.epoch > bindparam("after")),
    )
    .where(Experiment.id == bindparam("id"))
    .order_by(EpochRow.epoch)
    .limit(bindparam("limit"))
)

# A metrics pages' cache's read (experiments/polls.py): the status, the newest epoch stored, and
# the rows after `base` that are newer than `last` or written by an attempt after `attempt` (a
# resumed run's rewrites), each with the attempt that wrote it.
_SINCE = (
    select(
        Experiment.status,
        select(func.max(EpochRow.epoch))
        .where(EpochRow.experiment_id == bindparam("id"))
        .scalar_subquery(),
        EpochRow.attempt,
        *PAGE_COLUMNS,
    )
    .outerjoin(
        EpochRow,
        and_(
            EpochRow.experiment_id == Experiment.id,
            EpochRow.epoch > bindparam("base"),
            (EpochRow.epoch > bindparam("last")) | (EpochRow.attempt > bindparam("attempt")),
        ),
    )
    .where(Experiment.id == bindparam("id"))
    .order_by(EpochRow.epoch)
    .limit(bindparam("limit"))
)


class Member(NamedTuple):
    """A run of a sweep as its pruner sees it: no spec, history or results to load."""

    id: int
    status: str
    epochs_run: int
    sweep_stage: int | None
    epochs: int  # the spec's
    bracket: int | None  # hyperband's, stored (None: not hyperband, or drawn before it was)


class Since(NamedTuple):
    status: str
    newest: int  # the newest epoch stored (0: none)
    rows: list[tuple[Any, ...]]  # (attempt, *PAGE_COLUMNS values)


# What each `ListSort.field` orders by (built per query: a JSON path is an expression).
_SORT_COLUMNS: dict[str, Callable[[], ColumnElement[Any]]] = {
    "id": lambda: Experiment.id.expression,
    # Lowered by the database itself, so the cursor's value compares as the ORDER BY does.
    "name": lambda: func.lower(Experiment.name),
    "status": lambda: Experiment.status.expression,
    "best": lambda: Experiment.best_value.expression,
    "base_lr": lambda: Experiment.spec["base_lr"].as_float(),
}


def _after(sort: ListSort, column: ColumnElement[Any], key: Key) -> ColumnElement[bool]:
    """The rows after `key` in `sort`'s order: value, then id, with the valueless rows last."""
    beyond: Callable[[Any, Any], ColumnElement[bool]] = (
        (lambda a, b: a < b) if sort.descending else (lambda a, b: a > b)
    )
    if sort.field == "id":
        return beyond(Experiment.id, key.id)
    if key.value is None:  # already among the valueless rows
        return and_(column.is_(None), beyond(Experiment.id, key.id))
    return or_(
        beyond(column, key.value),
        and_(column == key.value, beyond(Experiment.id, key.id)),
        column.is_(None),
    )


class ExperimentRepository:
    def __init__(self, session: Session) -> None:
        self.session = session

    # -- reads ---------------------------------------------------------------------------------
    def get(self, experiment_id: int) -> Experiment | None:
        return self.session.get(Experiment, experiment_id)

    def row(self, experiment_id: int) -> Row[Any] | None:
        """The run's row as plain Core (its columns by the mapped attributes' names), for a
        read that only shows it (`service.detail_json`)."""
        return _core(self.session, _detail_statements()[0], {"p_id": experiment_id}).first()

    def by_idempotency_key(self, key: str) -> Experiment | None:
        return self.session.scalars(
            select(Experiment).where(Experiment.idempotency_key == key)
        ).first()

    def tags_of(self, experiment_ids: Sequence[int]) -> dict[int, dict[str, str]]:
        """Each run's tags: one query for a whole page of runs, or for one."""
        out: dict[int, dict[str, str]] = {i: {} for i in experiment_ids}
        if experiment_ids:
            params = {"p_ids": list(out)}
            for tag in _core(self.session, _detail_statements()[1], params):
                out[tag.experiment_id][tag.key] = tag.value
        return out

    def search(
        self,
        *,
        statuses: Sequence[str] = (),
        batch_id: str | None = None,
        sweep_id: int | None = None,
        tag: tuple[str, str | None] | None = None,
        before_id: int | None = None,
        limit: int = 50,
        kind: str = "train",
        name_contains: str | None = None,
    ) -> list[Experiment]:
        """Newest first; `before_id` is the keyset cursor (stable under concurrent inserts)."""
        rows = self.search_sorted(
            statuses=statuses, batch_id=batch_id, sweep_id=sweep_id, tag=tag,
            after=None if before_id is None else Key(None, before_id), limit=limit, kind=kind,
            name_contains=name_contains,
        )  # fmt: skip
        return [e for e, _ in rows]

    def search_sorted(
        self,
        *,
        statuses: Sequence[str] = (),
        batch_id: str | None = None,
        sweep_id: int | None = None,
        tag: tuple[str, str | None] | None = None,
        sort: ListSort = DEFAULT_SORT,
        after: Key | None = None,
        limit: int = 50,
        kind: str = "train",
        name_contains: str | None = None,
    ) -> list[tuple[Experiment, Key]]:
        """Runs in `sort`'s order, each with its sort key; `after` (the last key of the page
        before) is the keyset cursor. Runs without the sorted value (no best yet) come last in
        either direction, then by id in the same direction."""
        column = _SORT_COLUMNS[sort.field]()
        q = select(Experiment, column).where(Experiment.kind == kind)
        by_id = Experiment.id.desc() if sort.descending else Experiment.id.asc()
        if sort.field == "id":
            q = q.order_by(by_id)
        else:
            by_value = column.desc() if sort.descending else column.asc()
            q = q.order_by(by_value.nulls_last(), by_id)
        q = q.limit(limit)
        if name_contains:
            q = q.where(Experiment.name.icontains(name_contains, autoescape=True))
        if after is not None:
            q = q.where(_after(sort, column, after))
        if statuses:
            q = q.where(Experiment.status.in_(statuses))
        if batch_id is not None:
            q = q.where(Experiment.batch_id == batch_id)
        if sweep_id is not None:
            q = q.where(Experiment.sweep_id == sweep_id)
        if tag is not None:
            key, value = tag
            sub = select(ExperimentTag.experiment_id).where(ExperimentTag.key == key)
            if value is not None:
                sub = sub.where(ExperimentTag.value == value)
            q = q.where(Experiment.id.in_(sub))
        rows = self.session.execute(q).all()
        if sort.field == "id":
            return [(e, Key(e.id, e.id)) for e, _ in rows]
        return [(e, Key(value, e.id)) for e, value in rows]

    def poll(
        self, experiment_id: int, after_epoch: int, limit: int
    ) -> tuple[str | None, list[tuple[Any, ...]]]:
        """A metrics page: the run's status (None: no such run) and its rows as plain tuples of
        `PAGE_COLUMNS`. The polling hot path, so one statement built once, run on the session's
        connection (no ORM execution), and none of the columns the page never shows."""
        params = {"id": experiment_id, "after": after_epoch, "limit": limit}
        found = self.session.connection().execute(_POLL, params).all()
        if not found:
            return None, []
        if found[0][1] is None:  # the outer join's row of nulls: nothing after the cursor
            return found[0][0], []
        return found[0][0], [row[1:] for row in found]

    def poll_since(
        self, experiment_id: int, base: int, last: int, attempt: int, limit: int
    ) -> Since | None:
        """The rows after `base` newer than `last` or rewritten by an attempt after `attempt`,
        with the status and the newest epoch stored (None: no such run); see `_SINCE`."""
        params = {"id": experiment_id, "base": base, "last": last, "attempt": attempt,
                  "limit": limit}  # fmt: skip
        found = self.session.connection().execute(_SINCE, params).all()
        if not found:
            return None
        status, newest = found[0][0], int(found[0][1] or 0)
        if found[0][2] is None:  # the outer join's row of nulls: no such row
            return Since(status, newest, [])
        return Since(status, newest, [tuple(row[2:]) for row in found])

    def epochs(
        self, experiment_id: int, after_epoch: int = 0, limit: int | None = None
    ) -> list[EpochRow]:
        q = (
            select(EpochRow)
            .where(EpochRow.experiment_id == experiment_id, EpochRow.epoch > after_epoch)
            .order_by(EpochRow.epoch)
        )
        if limit is not None:
            q = q.limit(limit)
        return list(self.session.scalars(q))

    def lr_rows(self, experiment_id: int, steps: bool = False) -> list[Row[Any]]:
        """Each stored epoch's (epoch, lr, lr_min, lr_max), and with `steps` its step_lrs bytes,
        by epoch: the LR columns alone (the metrics pages never read step_lrs)."""
        columns: list[Any] = [EpochRow.epoch, EpochRow.lr, EpochRow.lr_min, EpochRow.lr_max]
        if steps:
            columns.append(EpochRow.step_lrs)
        q = select(*columns).where(EpochRow.experiment_id == experiment_id)
        return list(self.session.execute(q.order_by(EpochRow.epoch)))

    def lr_reductions(self, experiment_id: int) -> dict[int, float]:
        """The plateau decisions' new LR by epoch (it takes effect from the next epoch)."""
        q = select(Decision.epoch, Decision.new_lr).where(
            Decision.experiment_id == experiment_id,
            Decision.kind == "reduce_lr",
            Decision.new_lr.is_not(None),
        )
        return {epoch: float(lr) for epoch, lr in self.session.execute(q) if lr is not None}

    def get_many(self, experiment_ids: Sequence[int]) -> list[Experiment]:
        return list(
            self.session.scalars(select(Experiment).where(Experiment.id.in_(experiment_ids)))
        )

    def epochs_of(self, experiment_ids: Sequence[int]) -> list[EpochRow]:
        q = select(EpochRow).where(EpochRow.experiment_id.in_(experiment_ids))
        return list(self.session.scalars(q.order_by(EpochRow.experiment_id, EpochRow.epoch)))

    def decisions_of(self, experiment_ids: Sequence[int]) -> list[Decision]:
        q = select(Decision).where(Decision.experiment_id.in_(experiment_ids))
        return list(self.session.scalars(q.order_by(Decision.experiment_id, Decision.epoch)))

    def state_after(self, experiment_id: int, epoch: int) -> dict[str, Any] | None:
        """The decision state stored with `epoch`'s row (a unique-key lookup)."""
        state: dict[str, Any] | None = self.session.scalar(
            select(EpochRow.state).where(
                EpochRow.experiment_id == experiment_id, EpochRow.epoch == epoch
            )
        )
        return state

    def decisions(self, experiment_id: int) -> list[Decision]:
        return list(
            self.session.scalars(
                select(Decision)
                .where(Decision.experiment_id == experiment_id)
                .order_by(Decision.epoch, Decision.id)
            )
        )

    # -- reads for batches and sweeps (their runs are experiments rows) -------------------------
    def ids_in_batch(self, batch_id: str) -> list[int]:
        q = select(Experiment.id).where(Experiment.batch_id == batch_id).order_by(Experiment.id)
        return list(self.session.scalars(q))

    def status_counts(self, batch_id: str) -> dict[str, int]:
        """How many of the batch's runs are in each status."""
        q = (
            select(Experiment.status, func.count())
            .where(Experiment.batch_id == batch_id)
            .group_by(Experiment.status)
        )
        return {status: n for status, n in self.session.execute(q)}

    def in_sweep(self, sweep_id: int) -> list[Experiment]:
        q = select(Experiment).where(Experiment.sweep_id == sweep_id).order_by(Experiment.id)
        return list(self.session.scalars(q))

    def members_of(self, sweep_id: int, group: tuple[int, int] | None = None) -> list[Member]:
        """The sweep's runs by id, as small rows: its pruner reads them at every pause, and a
        sweep may have 1,000 (whole rows, specs parsed, took ~150 ms here). `group`: only
        those of one (stage, stored bracket)."""
        epochs = func.coalesce(Experiment.spec["epochs"].as_integer(), DEFAULT_EPOCHS)
        q = (
            select(Experiment.id, Experiment.status, Experiment.epochs_run,
                   Experiment.sweep_stage, epochs, Experiment.sweep_bracket)
            .where(Experiment.sweep_id == sweep_id, *_in_group(group))
            .order_by(Experiment.id)
        )  # fmt: skip
        return [Member(*row) for row in self.session.execute(q)]

    def group_counts(
        self, sweep_id: int, going: Collection[str]
    ) -> list[tuple[int, int | None, int, int]]:
        """Per (stage, stored bracket) of the sweep's runs: how many are in `going` and how many
        are waiting at a rung (one grouped count, where reading a sweep's runs may be 1,000)."""
        q = (
            select(_stage, Experiment.sweep_bracket,
                   func.sum(case((Experiment.status.in_(list(going)), 1), else_=0)),
                   func.sum(case((Experiment.status == ExperimentStatus.WAITING, 1), else_=0)))
            .where(Experiment.sweep_id == sweep_id)
            .group_by(_stage, Experiment.sweep_bracket)
        )  # fmt: skip
        return [(int(s), b, int(g), int(w)) for s, b, g, w in self.session.execute(q)]

    def set_brackets(self, brackets: dict[int, int]) -> None:
        """Store hyperband brackets (run id -> bracket): a statement per bracket."""
        by_bracket: dict[int, list[int]] = {}
        for run_id, bracket in brackets.items():
            by_bracket.setdefault(bracket, []).append(run_id)
        for bracket, ids in by_bracket.items():
            self.session.execute(
                update(Experiment).where(Experiment.id.in_(ids)).values(sweep_bracket=bracket)
            )

    def sweep_status_counts(self, sweep_ids: Sequence[int]) -> dict[int, dict[str, int]]:
        """For each sweep, how many of its runs are in each status."""
        counts: dict[int, dict[str, int]] = {i: {} for i in sweep_ids}
        q = (
            select(Experiment.sweep_id, Experiment.status, func.count())
            .where(Experiment.sweep_id.in_(list(counts)))
            .group_by(Experiment.sweep_id, Experiment.status)
        )
        for sweep_id, status, n in self.session.execute(q):
            if sweep_id is not None:
                counts[sweep_id][status] = n
        return counts

    def place_in_sweep(self, experiment_id: int) -> tuple[int, int, int | None] | None:
        """(sweep, stage, stored hyperband bracket) of a run of a sweep; None for other runs."""
        row = self.session.execute(
            select(Experiment.sweep_id, _stage, Experiment.sweep_bracket)
            .where(Experiment.id == experiment_id)
        ).first()  # fmt: skip
        if row is None or row[0] is None:
            return None
        return int(row[0]), int(row[1]), row[2]

    def best_values(
        self, experiment_ids: Sequence[int], metric: str, mode: str
    ) -> dict[int, float]:
        """Each run's best value of `metric` (an epoch-row column) over its stored epochs."""
        column = getattr(EpochRow, metric)
        best = func.min(column) if mode == "min" else func.max(column)
        q = (
            select(EpochRow.experiment_id, best)
            .where(EpochRow.experiment_id.in_(experiment_ids), column.is_not(None))
            .group_by(EpochRow.experiment_id)
        )
        return {i: float(v) for i, v in self.session.execute(q) if v is not None}

    def values_at(
        self, experiment_ids: Sequence[int], epoch: int, metric: str
    ) -> dict[int, float | None]:
        """Each run's `metric` at `epoch`, for the runs with that epoch's row (one read)."""
        column = getattr(EpochRow, metric)
        q = select(EpochRow.experiment_id, column).where(
            EpochRow.experiment_id.in_(experiment_ids), EpochRow.epoch == epoch
        )
        return {i: None if v is None else float(v) for i, v in self.session.execute(q)}

    def bests_up_to(
        self, sweep_id: int, stage: int, epoch: int, metric: str, mode: str
    ) -> dict[int, float | None]:
        """The best `metric` of each run of the sweep's stage over its epochs up to `epoch`, for
        the runs that have reached `epoch` (the median rule's inputs)."""
        column = getattr(EpochRow, metric)
        best = func.min if mode == "min" else func.max
        q = (
            select(EpochRow.experiment_id, best(column))
            .join(Experiment, Experiment.id == EpochRow.experiment_id)
            .where(Experiment.sweep_id == sweep_id, Experiment.sweep_stage == stage,
                   EpochRow.epoch <= epoch)
            .group_by(EpochRow.experiment_id)
            .having(func.max(EpochRow.epoch) >= epoch)
        )  # fmt: skip
        return {i: None if v is None else float(v) for i, v in self.session.execute(q)}

    def any_in_sweep(
        self, sweep_id: int, statuses: Collection[str], group: tuple[int, int] | None = None
    ) -> bool:
        """Whether a run of the sweep (of one (stage, stored bracket): `group`) is in one of
        `statuses` (a count: one cheap read, where loading a sweep's runs may be 1,000 rows)."""
        return bool(self.session.scalar(
            select(func.count()).select_from(Experiment)
            .where(Experiment.sweep_id == sweep_id, Experiment.status.in_(list(statuses)),
                   *_in_group(group))
        ))  # fmt: skip

    # -- writes by the API ---------------------------------------------------------------------
    def add(self, experiment: Experiment, tags: dict[str, str]) -> Experiment:
        self.session.add(experiment)
        self.session.flush()
        for key, value in tags.items():
            self.session.add(ExperimentTag(experiment_id=experiment.id, key=key, value=value))
        announce(self.session, [experiment.id])
        return experiment

    def add_many(self, experiments: list[Experiment]) -> None:
        """Many runs with their tags: one multi-row INSERT per table (a batch, a sweep)."""
        self.session.add_all(experiments)
        self.session.flush()
        self.session.add_all(
            ExperimentTag(experiment_id=e.id, key=key, value=value)
            for e in experiments
            for key, value in (e.spec.get("tags") or {}).items()
        )
        # The newest id is enough: a listener re-reads a sweep or batch on an id beyond its runs.
        announce(self.session, [max(e.id for e in experiments)] if experiments else [])

    def cancel(self, experiment_id: int) -> list[int]:
        return self.cancel_many([experiment_id])

    def cancel_many(self, experiment_ids: Sequence[int]) -> list[int]:
        """Queued runs and runs waiting at a pruner's rung end now; running ones are flagged and
        stop at the next batch boundary. Two statements however many (a sweep's 1,000 runs one
        by one took 12 s). Returns the ids of the runs that were waiting (their checkpoints are
        no longer needed).

        Running ones first: a run whose worker pauses it at a rung meanwhile is then either
        flagged before the pause (its row locked by the flag until this commits; the pause ends
        it, `cancel_waiting`) or seen `waiting` by the second statement. In the other order the
        second statement could find it neither running nor, in its snapshot, waiting: left
        waiting, promoted at its rung, and never claimed (a cancelled run is not)."""
        if not experiment_ids:
            return []
        ids = list(experiment_ids)
        self.session.execute(
            update(Experiment)
            .where(Experiment.id.in_(ids), Experiment.status == ExperimentStatus.RUNNING)
            .values(cancel_requested=True)
        )
        idle = (ExperimentStatus.QUEUED, ExperimentStatus.WAITING)  # no worker holds these
        ended = self.session.execute(
            update(Experiment)
            .where(Experiment.id.in_(ids), Experiment.status.in_(idle))
            .values(
                status=ExperimentStatus.CANCELLED,
                finished_at=utcnow(),
                cancel_requested=True,
                stop_reason=case(
                    (Experiment.status == ExperimentStatus.WAITING,
                     WAITING_CANCELLED),
                    else_="cancelled before it started",
                ),
            )
            .returning(Experiment.id, Experiment.stop_reason)
        ).all()  # fmt: skip
        announce(self.session, ids)
        return [int(i) for i, reason in ended if reason == WAITING_CANCELLED]

    def cancel_waiting(self, experiment_id: int) -> bool:
        """The run just paused at a rung ends `cancelled` if a cancel flagged it while it
        trained: nothing would claim it once promoted. True when it did."""
        now = utcnow()
        result = _core(
            self.session,
            update(Experiment)
            .where(Experiment.id == experiment_id, Experiment.status == ExperimentStatus.WAITING,
                   Experiment.cancel_requested.is_(True))
            .values(status=ExperimentStatus.CANCELLED, finished_at=now, updated_at=now,
                    stop_reason="cancelled while running; stopped at its rung")
        )  # fmt: skip
        return result.rowcount == 1

    def delete_ended(self, experiment_id: int) -> bool:
        """Delete a run that has ended, with its epochs, decisions, tags, range points,
        attempts and outbox rows (their keys cascade). False when there is no such ended run."""
        result = self.session.execute(
            delete(Experiment)
            .where(Experiment.id == experiment_id, Experiment.status.in_(list(FINAL)))
            .execution_options(synchronize_session="fetch")
        )
        announce(self.session, [experiment_id])  # its metrics pages now answer 404
        return result.rowcount == 1  # type: ignore[attr-defined]

    # -- writes by the worker, fenced by `attempt` ----------------------------------------------
    def claim(self, experiment_id: int, owner: str, lease_s: float) -> int | None:
        """Take the run if it is queued, or running under a lease that has expired. Returns the
        new attempt number, or None when someone else holds it (or it has ended)."""
        claimed = self.claim_run(experiment_id, owner, lease_s)
        return None if claimed is None else claimed.attempt

    def claim_run(
        self, experiment_id: int, owner: str, lease_s: float, takeover: bool = True
    ) -> Claimed | None:
        """`claim`, returning with the attempt what a worker runs (in the same statement).
        `takeover=False`: a queued run only, not one whose lease expired (the worker applies
        the reaper's rules to such a run first)."""
        now = utcnow()
        # The announcement rides in the UPDATE's RETURNING (PostgreSQL): no round trip of its own.
        notify.touched(self.session, [str(experiment_id)])
        stmt = _claim_statement(takeover, notify.notifies(self.session))
        row = _core(self.session, stmt, {
            "p_id": experiment_id, "p_owner": owner, "p_now": now,
            "p_expires": now + timedelta(seconds=lease_s),
        }).one_or_none()  # fmt: skip
        if row is None:
            return None
        _core(
            self.session,
            _new_attempt_statement(),
            {"p_id": experiment_id, "p_attempt": row.attempt, "p_owner": owner, "p_now": now},
        )
        return Claimed._make(tuple(row)[: len(Claimed._fields)])

    def lost_attempts(self, experiment_id: int, before: int) -> int:
        """Attempts before `before` whose worker was lost: reaped ("lost"), or taken over by a
        claim after their lease expired (never ended). Hand-backs and pauses are not losses."""
        return int(self.session.scalar(
            select(func.count()).select_from(Attempt)
            .where(Attempt.experiment_id == experiment_id, Attempt.attempt < before,
                   Attempt.outcome.is_(None) | (Attempt.outcome == "lost"))
        ) or 0)  # fmt: skip

    def end_attempt(self, experiment_id: int, attempt: int, outcome: str) -> None:
        _core(
            self.session,
            update(Attempt)
            .where(
                Attempt.experiment_id == experiment_id,
                Attempt.attempt == attempt,
                Attempt.ended_at.is_(None),
            )
            .values(ended_at=utcnow(), outcome=outcome),
        )

    def attempts(self, experiment_id: int) -> list[Attempt]:
        return list(self.session.scalars(select(Attempt).where(
            Attempt.experiment_id == experiment_id).order_by(Attempt.attempt)))  # fmt: skip

    def attempts_of(self, experiment_ids: Sequence[int]) -> dict[int, list[Row[Any]]]:
        """Each run's attempts, oldest first, as plain Core rows (`Attempt`'s columns): one
        query for a whole page of runs, or for one."""
        out: dict[int, list[Row[Any]]] = {i: [] for i in experiment_ids}
        if experiment_ids:
            params = {"p_ids": list(out)}
            for a in _core(self.session, _detail_statements()[2], params):
                out[a.experiment_id].append(a)
        return out

    def resumed_from(self, experiment_id: int, attempt: int, epoch: int) -> None:
        _core(
            self.session,
            update(Attempt)
            .where(Attempt.experiment_id == experiment_id, Attempt.attempt == attempt)
            .values(resumed_from_epoch=epoch),
        )

    def heartbeat(self, experiment_id: int, attempt: int, lease_s: float) -> tuple[bool, bool]:
        """Extend the lease. Returns (still ours, cancel requested)."""
        result = self.session.execute(
            update(Experiment)
            .where(_held(experiment_id, attempt))
            .values(lease_expires_at=utcnow() + timedelta(seconds=lease_s))
            .returning(Experiment.cancel_requested)
        )
        cancel = result.scalar_one_or_none()
        return cancel is not None, bool(cancel)

    def fence(self, experiment_id: int, attempt: int, **values: Any) -> bool:
        """Update the run only while `attempt` is current and it is running; False otherwise.
        Taken first in every worker transaction, it also locks the row on PostgreSQL."""
        return self.fence_reading_cancel(experiment_id, attempt, **values) is not None

    def fence_reading_cancel(self, experiment_id: int, attempt: int,
                             **values: Any) -> bool | None:  # fmt: skip
        """`fence`, telling more: None when `attempt` no longer holds the run, else whether a
        cancel of it is requested (an epoch write's answer to its run)."""
        # Every worker write (epochs, resume, pause, final status) begins here, so it also
        # announces the change to live events: in this statement, no extra round trip.
        notify.touched(self.session, [str(experiment_id)])
        stmt = _fence_statement(tuple(values), notify.notifies(self.session))
        rows = _core(self.session, stmt, _fence_params(experiment_id, attempt, values)).all()
        return bool(rows[0][0]) if len(rows) == 1 else None

    def last_epoch(self, experiment_id: int) -> int:
        last = self.session.scalar(
            select(func.max(EpochRow.epoch)).where(EpochRow.experiment_id == experiment_id)
        )
        return int(last or 0)

    def release(self, experiment_id: int, attempt: int) -> str | None:
        """Give a running run back to the queue (worker shutdown). Returns its queue, or None
        when this attempt no longer holds it."""
        result = self.session.execute(
            update(Experiment)
            .where(_held(experiment_id, attempt))
            .values(
                status=ExperimentStatus.QUEUED,
                lease_owner=None,
                lease_expires_at=None,
                updated_at=utcnow(),
            )
            .returning(Experiment.queue)
        )
        queue: str | None = result.scalar_one_or_none()
        if queue is not None:
            self.end_attempt(experiment_id, attempt, "handed_back")
            announce(self.session, [experiment_id])
        return queue

    def expired(
        self, limit: int = 100, only: int | None = None
    ) -> list[tuple[int, int, bool, str]]:
        """Running runs whose lease ran out (`only`: this one, if so): (id, attempt,
        cancel_requested, queue)."""
        q = select(
            Experiment.id, Experiment.attempt, Experiment.cancel_requested, Experiment.queue
        ).where(
            Experiment.status == ExperimentStatus.RUNNING,
            Experiment.lease_expires_at < utcnow(),
        )
        if only is not None:
            q = q.where(Experiment.id == only)
        rows = self.session.execute(q.order_by(Experiment.id).limit(limit))
        return [tuple(r) for r in rows]  # type: ignore[misc]

    def requeue_expired(self, experiment_id: int, attempt: int, **values: Any) -> bool:
        """Take back a run whose lease expired, only if nobody renewed or re-claimed it since."""
        result = self.session.execute(
            update(Experiment)
            .where(_held(experiment_id, attempt), Experiment.lease_expires_at < utcnow())
            .values(lease_owner=None, lease_expires_at=None, updated_at=utcnow(), **values)
        )
        done = result.rowcount == 1  # type: ignore[attr-defined]
        if done:
            self.end_attempt(experiment_id, attempt, "lost")
            announce(self.session, [experiment_id])
        return done

    def truncate_history(self, experiment_id: int, after_epoch: int) -> None:
        """Cut rows and decisions back to a checkpoint: a resumed run redoes what follows it."""
        for model in (EpochRow, Decision):
            self.session.execute(
                delete(model).where(model.experiment_id == experiment_id, model.epoch > after_epoch)
            )

    def prune_waiting(self, reasons: dict[int, str]) -> set[int]:
        """End the runs still `waiting` at a rung as `pruned`, each with its reason (one
        statement however many; a run cancelled meanwhile stays cancelled): the ids pruned."""
        if not reasons:
            return set()
        runs, now = cast(Table, Experiment.__table__), utcnow()
        self.session.execute(
            update(runs).where(runs.c.id == bindparam("eid"),
                               runs.c.status == ExperimentStatus.WAITING)
            .values(status=ExperimentStatus.PRUNED, updated_at=now, finished_at=now,
                    stop_reason=bindparam("reason")),
            [{"eid": i, "reason": r} for i, r in reasons.items()],
        )  # fmt: skip
        pruned = select(runs.c.id).where(runs.c.id.in_(list(reasons)),
                                         runs.c.status == ExperimentStatus.PRUNED)  # fmt: skip
        return set(self.session.scalars(pruned))

    def requeue_waiting(self, experiment_ids: Sequence[int]) -> list[tuple[int, str]]:
        """Queue again the runs still `waiting` among `experiment_ids` (promoted at a rung):
        their ids and queues, for their tasks."""
        if not experiment_ids:
            return []
        runs = cast(Table, Experiment.__table__)
        rows = self.session.execute(
            update(runs).where(runs.c.id.in_(experiment_ids),
                               runs.c.status == ExperimentStatus.WAITING)
            .values(status=ExperimentStatus.QUEUED, updated_at=utcnow())
            .returning(runs.c.id, runs.c.queue)
        ).all()  # fmt: skip
        return [(int(i), str(q)) for i, q in rows]

    def record_decisions(self, decisions: list[dict[str, Any]]) -> None:
        """Decisions taken outside the run's own epoch write (a sweep pruner's stop), upserted
        on (run, epoch, kind) like the ones written with an epoch."""
        upsert(self.session, Decision.__table__, decisions, ["experiment_id", "epoch", "kind"])  # type: ignore[arg-type]

    def write_epoch(self, row: dict[str, Any], decisions: list[dict[str, Any]]) -> None:
        self.write_epochs([row], decisions)

    def write_epochs(self, rows: list[dict[str, Any]], decisions: list[dict[str, Any]]) -> None:
        upsert(self.session, EpochRow.__table__, rows, ["experiment_id", "epoch"])  # type: ignore[arg-type]
        self.record_decisions(decisions)

    def finish(self, experiment_id: int, attempt: int, status: str, **values: Any) -> bool:
        assert status in FINAL
        return self.fence_and_end(experiment_id, attempt, status, status=status,
                                  finished_at=utcnow(), lease_owner=None, lease_expires_at=None,
                                  **values)  # fmt: skip

    def fence_and_end(self, experiment_id: int, attempt: int, outcome: str,
                      **values: Any) -> bool:  # fmt: skip
        """`fence` with `values`, and the attempt ended with `outcome` if the fence held: how a
        worker lets a run go (a final status, a pause at a rung). On PostgreSQL one statement,
        the attempt's UPDATE a CTE over the fenced row (a round trip fewer in the gap between
        a worker's runs); elsewhere the two statements."""
        if not notify.notifies(self.session):
            done = self.fence(experiment_id, attempt, **values)
            if done:
                self.end_attempt(experiment_id, attempt, outcome)
            return done
        notify.touched(self.session, [str(experiment_id)])
        stmt = _fence_and_end_statement(tuple(values))
        params = {**_fence_params(experiment_id, attempt, values), "p_outcome": outcome}
        return len(_core(self.session, stmt, params).all()) == 1

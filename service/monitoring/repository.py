"""Every query /metrics makes. A scrape starts with one probe: the newest id of each table that is
read by a high-water mark (tail.py) and the queued runs' signature, each a subquery on an index,
in one round trip. Then only what the probe says is new is read: the rows past each mark, with
their few columns, by primary key. Runs are counted by status from the ledger of status changes
(RunStatusChange), read past its mark like the epochs, not by counting the runs.

The statements are built once, with bound parameters: building a SELECT costs more Python than
running one of these against the database."""

from __future__ import annotations

from collections.abc import Collection, Sequence
from dataclasses import dataclass
from typing import Any

from sqlalchemy import BigInteger, Integer, bindparam, case, cast, func, select
from sqlalchemy.orm import Session

from service.experiments.models import Decision, EpochRow, Experiment, RunStatusChange
from service.training.status import ExperimentStatus
from service.workers.models import WorkerRow

CHUNK = 1_000  # ids per IN (...) list

Row = Sequence[Any]

_MARK = bindparam("mark", type_=Integer)
_IDS = bindparam("ids", type_=Integer, expanding=True)
_RUN = (Experiment.id, Experiment.queue, Experiment.status, Experiment.created_at,
        Experiment.started_at)  # fmt: skip
_EPOCH = (EpochRow.id, EpochRow.duration_s)
_DECISION = (Decision.id, Decision.kind)
_STATUS_CHANGE = (RunStatusChange.id, RunStatusChange.status, RunStatusChange.delta)

_QUEUED_RUN = Experiment.status == ExperimentStatus.QUEUED


def _scalar(*columns: Any) -> Any:
    return [select(c).scalar_subquery() for c in columns]


# The queued runs' signature reads the queued range of the (status, id) index once: a few rows
# where a fleet keeps up, however many runs have ended.
_QUEUED_SIGNATURE = (
    select(
        func.count().label("n"),
        func.coalesce(func.sum(Experiment.id), 0).label("total"),
        func.coalesce(func.sum(cast(Experiment.id, BigInteger) * Experiment.id), 0).label("sq"),
    )
    .where(_QUEUED_RUN)
    .subquery()
)
_PROBE = select(
    *_scalar(
        func.coalesce(func.max(Experiment.id), 0),
        func.coalesce(func.max(EpochRow.id), 0),
        func.coalesce(func.max(Decision.id), 0),
        func.coalesce(func.max(RunStatusChange.id), 0),
    ),
    *_QUEUED_SIGNATURE.c,
)
_QUEUED = select(Experiment.id).where(_QUEUED_RUN)
_RUNS_AFTER = select(*_RUN).where(Experiment.id > _MARK).order_by(Experiment.id)
_RUNS_BY_IDS = select(*_RUN).where(Experiment.id.in_(_IDS))
_EPOCHS_AFTER = select(*_EPOCH).where(EpochRow.id > _MARK).order_by(EpochRow.id)
_EPOCHS_BY_IDS = select(*_EPOCH).where(EpochRow.id.in_(_IDS))
_DECISIONS_AFTER = select(*_DECISION).where(Decision.id > _MARK).order_by(Decision.id)
_DECISIONS_BY_IDS = select(*_DECISION).where(Decision.id.in_(_IDS))
_STATUS_CHANGES_AFTER = (
    select(*_STATUS_CHANGE).where(RunStatusChange.id > _MARK).order_by(RunStatusChange.id)
)
_STATUS_CHANGES_BY_IDS = select(*_STATUS_CHANGE).where(RunStatusChange.id.in_(_IDS))
_WORKERS = select(WorkerRow.stopped_at, WorkerRow.last_seen, WorkerRow.current_run,
                  WorkerRow.queues)  # fmt: skip


@dataclass(frozen=True)
class Probe:
    top_run: int
    top_epoch: int
    top_decision: int
    top_status_change: int
    # tail.signature of the queued runs' ids, computed by the database: says whether that set
    # changed without reading it.
    queued_signature: tuple[int, int, int]


class MonitoringRepository:
    def __init__(self, session: Session) -> None:
        self.session = session

    def _rows(self, stmt: Any, **params: Any) -> list[Row]:
        # Core on the session's connection: plain tuples, none of the ORM's per-statement work.
        return list(self.session.connection().execute(stmt, params).all())

    def _by_ids(self, stmt: Any, ids: Collection[int]) -> list[Row]:
        wanted, out = sorted(ids), []
        for i in range(0, len(wanted), CHUNK):
            out += self._rows(stmt, ids=wanted[i : i + CHUNK])
        return out

    def probe(self) -> Probe:
        top_run, top_epoch, top_decision, top_change, queued, total, squares = self._rows(_PROBE)[0]
        return Probe(int(top_run), int(top_epoch), int(top_decision), int(top_change),
                     (int(queued), int(total), int(squares)))  # fmt: skip

    def runs_after(self, mark: int) -> list[Row]:
        """(id, queue, status, created_at, started_at) of the runs past `mark`, by id."""
        return self._rows(_RUNS_AFTER, mark=mark)

    def runs_by_ids(self, ids: Collection[int]) -> list[Row]:
        return self._by_ids(_RUNS_BY_IDS, ids)

    def queued_ids(self) -> set[int]:
        """Covered by the (status, id) index: the ids alone, whatever the table's width."""
        return {row[0] for row in self._rows(_QUEUED)}

    def epochs_after(self, mark: int) -> list[Row]:
        """(id, duration_s) of the epoch rows past `mark`, by id."""
        return self._rows(_EPOCHS_AFTER, mark=mark)

    def epochs_by_ids(self, ids: Collection[int]) -> list[Row]:
        return self._by_ids(_EPOCHS_BY_IDS, ids)

    def epoch_histogram(self, upto: int, bounds: Sequence[float]) -> tuple[list[int], float]:
        """Counts of the epoch rows with id <= upto whose duration is <= each bound (cumulative,
        then the count of all), and their durations' sum: one pass in the database, for a
        process's first scrape of a long history."""
        d = EpochRow.duration_s
        le = [func.coalesce(func.sum(case((d <= b, 1), else_=0)), 0) for b in bounds]
        stmt = select(*le, func.count(), func.coalesce(func.sum(d), 0.0)).where(EpochRow.id <= upto)
        *counts, total = self._rows(stmt)[0]
        return [int(c) for c in counts], float(total)

    def decisions_after(self, mark: int) -> list[Row]:
        """(id, kind) of the decisions past `mark`, by id."""
        return self._rows(_DECISIONS_AFTER, mark=mark)

    def decisions_by_ids(self, ids: Collection[int]) -> list[Row]:
        return self._by_ids(_DECISIONS_BY_IDS, ids)

    def decision_kinds(self, upto: int) -> dict[str, int]:
        """Decisions with id <= upto, by kind (a first scrape's history, in one query)."""
        stmt = select(Decision.kind, func.count()).where(Decision.id <= upto)
        stmt = stmt.group_by(Decision.kind)
        return {str(kind): int(n) for kind, n in self._rows(stmt)}

    def status_changes_after(self, mark: int) -> list[Row]:
        """(id, status, delta) of the ledger rows past `mark`, by id."""
        return self._rows(_STATUS_CHANGES_AFTER, mark=mark)

    def status_changes_by_ids(self, ids: Collection[int]) -> list[Row]:
        return self._by_ids(_STATUS_CHANGES_BY_IDS, ids)

    def status_totals(self, upto: int) -> dict[str, int]:
        """The ledger's rows with id <= upto summed by status (a first scrape's history)."""
        stmt = select(RunStatusChange.status, func.sum(RunStatusChange.delta))
        stmt = stmt.where(RunStatusChange.id <= upto).group_by(RunStatusChange.status)
        return {str(status): int(n) for status, n in self._rows(stmt)}

    def entered(self, status: str, upto: int) -> int:
        """How many runs came to hold `status` in the ledger's rows with id <= upto: its
        positive deltas (a first scrape's history of a final status, such as `pruned`)."""
        stmt = select(func.coalesce(func.sum(RunStatusChange.delta), 0)).where(
            RunStatusChange.id <= upto,
            RunStatusChange.status == status,
            RunStatusChange.delta > 0,
        )
        return int(self._rows(stmt)[0][0])

    def workers(self) -> list[Row]:
        """(stopped_at, last_seen, current_run, queues) of every registered worker."""
        return self._rows(_WORKERS)

"""Every query /metrics makes: counts by one GROUP BY, and the rows past a high-water mark (tail.py)
with their few columns, read by primary key or by the (status, id) index."""

from __future__ import annotations

from collections.abc import Collection, Sequence
from typing import Any

from sqlalchemy import func, select
from sqlalchemy.orm import Session

from service.experiments.models import Decision, EpochRow, Experiment
from service.training.status import ExperimentStatus
from service.workers.models import WorkerRow

CHUNK = 1_000  # ids per IN (...) list

Row = Sequence[Any]

_RUN = (Experiment.id, Experiment.queue, Experiment.status, Experiment.created_at,
        Experiment.started_at)  # fmt: skip


class MonitoringRepository:
    def __init__(self, session: Session) -> None:
        self.session = session

    def _rows(self, stmt: Any) -> list[Row]:
        return list(self.session.execute(stmt))

    def _by_ids(self, columns: tuple[Any, ...], ids: Collection[int]) -> list[Row]:
        key, wanted, out = columns[0], sorted(ids), []
        for i in range(0, len(wanted), CHUNK):
            out += self._rows(select(*columns).where(key.in_(wanted[i : i + CHUNK])))
        return out

    def runs_by_status(self) -> dict[str, int]:
        rows = self.session.execute(
            select(Experiment.status, func.count()).group_by(Experiment.status)
        )
        return {str(status): int(n) for status, n in rows}

    def runs_after(self, mark: int) -> list[Row]:
        """(id, queue, status, created_at, started_at) of the runs past `mark`, by id."""
        return self._rows(select(*_RUN).where(Experiment.id > mark).order_by(Experiment.id))

    def runs_by_ids(self, ids: Collection[int]) -> list[Row]:
        return self._by_ids(_RUN, ids)

    def queued_ids(self) -> set[int]:
        """Covered by the (status, id) index: the ids alone, whatever the table's width."""
        stmt = select(Experiment.id).where(Experiment.status == ExperimentStatus.QUEUED)
        return set(self.session.scalars(stmt))

    def epochs_after(self, mark: int) -> list[Row]:
        """(id, duration_s) of the epoch rows past `mark`, by id."""
        stmt = select(EpochRow.id, EpochRow.duration_s).where(EpochRow.id > mark)
        return self._rows(stmt.order_by(EpochRow.id))

    def epochs_by_ids(self, ids: Collection[int]) -> list[Row]:
        return self._by_ids((EpochRow.id, EpochRow.duration_s), ids)

    def decisions_after(self, mark: int) -> list[Row]:
        """(id, kind) of the decisions past `mark`, by id."""
        stmt = select(Decision.id, Decision.kind).where(Decision.id > mark)
        return self._rows(stmt.order_by(Decision.id))

    def decisions_by_ids(self, ids: Collection[int]) -> list[Row]:
        return self._by_ids((Decision.id, Decision.kind), ids)

    def workers(self) -> list[Row]:
        """(stopped_at, last_seen, current_run, queues) of every registered worker."""
        columns = (WorkerRow.stopped_at, WorkerRow.last_seen, WorkerRow.current_run,
                   WorkerRow.queues)  # fmt: skip
        return self._rows(select(*columns))

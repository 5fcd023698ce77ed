"""Every query on `workers`: the registry rows the workers write and the API reads."""

from __future__ import annotations

from datetime import datetime
from typing import Any

from sqlalchemy import delete, select, update
from sqlalchemy.orm import Session

from service.kit.time import utcnow
from service.workers.models import WorkerRow


class WorkerRepository:
    def __init__(self, session: Session) -> None:
        self.session = session

    def register(self, worker_id: str, **manifest: Any) -> None:
        """Insert or replace this worker's manifest (a restarted worker has a new pid, hence a new
        id; the same id again is the same process registering twice)."""
        now = utcnow()
        row = self.session.get(WorkerRow, worker_id)
        if row is None:
            row = WorkerRow(id=worker_id, started_at=now)
            self.session.add(row)
        for key, value in manifest.items():
            setattr(row, key, value)
        row.last_seen, row.stopped_at = now, None
        self.session.flush()

    def beat(self, worker_id: str, current_run: int | None) -> bool:
        """The heartbeat: last_seen and the run it holds. False if the row is gone (forgotten
        while the worker was away): the caller registers again."""
        result = self.session.execute(
            update(WorkerRow)
            .where(WorkerRow.id == worker_id)
            .values(last_seen=utcnow(), current_run=current_run, stopped_at=None)
        )
        return result.rowcount == 1  # type: ignore[attr-defined]

    def stopped(self, worker_id: str) -> None:
        self.session.execute(
            update(WorkerRow)
            .where(WorkerRow.id == worker_id)
            .values(stopped_at=utcnow(), current_run=None, last_seen=utcnow())
        )

    def all(self) -> list[WorkerRow]:
        """Most recently seen first."""
        return list(
            self.session.scalars(
                select(WorkerRow).order_by(WorkerRow.last_seen.desc(), WorkerRow.id)
            )
        )

    def forget_seen_before(self, cutoff: datetime) -> int:
        result = self.session.execute(delete(WorkerRow).where(WorkerRow.last_seen < cutoff))
        return int(result.rowcount)  # type: ignore[attr-defined]

"""Every query on `sweeps`. A sweep's runs are experiments rows: `ExperimentRepository` reads
them (the runs of a sweep, their counts per status, their best scores)."""

from __future__ import annotations

from sqlalchemy import select, update
from sqlalchemy.orm import Session

from service.kit.notify import announce
from service.kit.time import utcnow
from service.sweeps.models import Sweep, SweepStatus


class SweepRepository:
    def __init__(self, session: Session) -> None:
        self.session = session

    def get(self, sweep_id: int) -> Sweep | None:
        return self.session.get(Sweep, sweep_id)

    def newest(self, limit: int) -> list[Sweep]:
        return list(self.session.scalars(select(Sweep).order_by(Sweep.id.desc()).limit(limit)))

    def running_ids(self, limit: int) -> list[int]:
        q = select(Sweep.id).where(Sweep.status == SweepStatus.RUNNING).limit(limit)
        return list(self.session.scalars(q))

    def add(self, sweep: Sweep) -> Sweep:
        self.session.add(sweep)
        self.session.flush()
        return sweep

    def cancel(self, sweep_id: int) -> None:
        """A running sweep ends as cancelled; one already ended keeps its status."""
        self.session.execute(
            update(Sweep)
            .where(Sweep.id == sweep_id, Sweep.status == SweepStatus.RUNNING)
            .values(status=SweepStatus.CANCELLED, finished_at=utcnow(), note="cancelled")
        )
        announce(self.session, sweep_id=sweep_id)

    def start_stage_two(self, sweep_id: int, note: str) -> bool:
        """Move a running sweep from stage 1 to 2. A conditional UPDATE: when two processes see
        stage 1 end at once, exactly one gets True and launches the stage."""
        won = self.session.execute(
            update(Sweep)
            .where(Sweep.id == sweep_id, Sweep.stage == 1, Sweep.status == SweepStatus.RUNNING)
            .values(stage=2, note=note)
        )
        return won.rowcount == 1  # type: ignore[attr-defined]

    def finish(self, sweep_id: int, note: str | None) -> None:
        self.session.execute(
            update(Sweep)
            .where(Sweep.id == sweep_id, Sweep.status == SweepStatus.RUNNING)
            .values(status=SweepStatus.FINISHED, finished_at=utcnow(), note=note)
        )
        announce(self.session, sweep_id=sweep_id)

"""Every query on `lr_range_points`. The run itself is an `experiments` row: its claim, fence and
finish are `ExperimentRepository`'s."""

from __future__ import annotations

from typing import Any

from sqlalchemy import delete, func, select
from sqlalchemy.orm import Session

from service.experiments.models import RangePoint
from service.kit.upsert import upsert


class RangeRepository:
    def __init__(self, session: Session) -> None:
        self.session = session

    def points(self, experiment_id: int, from_step: int = 0) -> list[RangePoint]:
        """In step order; the primary key (experiment_id, step) makes this a range scan."""
        return list(
            self.session.scalars(
                select(RangePoint)
                .where(RangePoint.experiment_id == experiment_id, RangePoint.step >= from_step)
                .order_by(RangePoint.step)
            )
        )

    def steps_run(self, experiment_id: int) -> int:
        last = self.session.scalar(
            select(func.max(RangePoint.step)).where(RangePoint.experiment_id == experiment_id)
        )
        return 0 if last is None else int(last) + 1

    def steps_run_of(self, experiment_ids: list[int]) -> dict[int, int]:
        """`steps_run` of many tests in one grouped query (a list page never asks once per row)."""
        out = dict.fromkeys(experiment_ids, 0)
        if experiment_ids:
            rows = self.session.execute(
                select(RangePoint.experiment_id, func.max(RangePoint.step))
                .where(RangePoint.experiment_id.in_(experiment_ids))
                .group_by(RangePoint.experiment_id)
            )
            for experiment_id, last in rows:
                out[experiment_id] = int(last) + 1
        return out

    def clear(self, experiment_id: int) -> None:
        """A new attempt starts the test over: the points of the one before it go."""
        self.session.execute(delete(RangePoint).where(RangePoint.experiment_id == experiment_id))

    def write(self, rows: list[dict[str, Any]]) -> None:
        # An upsert, so a write retried after a lost commit acknowledgement writes the same rows.
        upsert(self.session, RangePoint.__table__, rows, ["experiment_id", "step"])  # type: ignore[arg-type]

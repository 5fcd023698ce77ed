"""The reads behind live events, over the experiments tables (this domain has none of its own):
a run's status columns, its epoch rows after a cursor, their decisions, and the runs of a sweep,
a batch, or all that are not final."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from sqlalchemy import Row, and_, func, or_, select
from sqlalchemy.orm import Session

from service.batches.models import Batch
from service.experiments.models import Decision, EpochRow, Experiment
from service.sweeps.models import Sweep
from service.training.spec import stored_epochs
from service.training.status import FINAL

STATUS_COLUMNS = (
    Experiment.id,
    Experiment.status,
    Experiment.epochs_run,
    Experiment.attempt,
    Experiment.best_epoch,
    Experiment.best_value,
    Experiment.stop_reason,
    Experiment.error,
    Experiment.cancel_requested,
    Experiment.updated_at,
)


class EventsRepository:
    def __init__(self, session: Session) -> None:
        self.session = session

    def status(self, experiment_id: int) -> Any:
        """The run's STATUS_COLUMNS (a Row), or None."""
        q = select(*STATUS_COLUMNS).where(Experiment.id == experiment_id)
        return self.session.execute(q).one_or_none()

    def epochs_of(self, experiment_ids: Sequence[int]) -> dict[int, int]:
        """The epochs each run's spec asks for (read once per run: a spec never changes)."""
        if not experiment_ids:
            return {}
        q = select(Experiment.id, Experiment.spec).where(Experiment.id.in_(experiment_ids))
        return {i: stored_epochs(spec or {}) for i, spec in self.session.execute(q)}

    def last_row(self, experiment_id: int) -> tuple[int, int]:
        """(epoch, attempt) of the run's last stored epoch row; (0, 0) when it has none."""
        row = self.session.execute(
            select(EpochRow.epoch, EpochRow.attempt)
            .where(EpochRow.experiment_id == experiment_id)
            .order_by(EpochRow.epoch.desc())
            .limit(1)
        ).one_or_none()
        return (row.epoch, row.attempt) if row is not None else (0, 0)

    def attempt_at(self, experiment_id: int, epoch: int) -> int:
        """The attempt that wrote the stored row of `epoch` (0: there is none)."""
        attempt = self.session.scalar(
            select(EpochRow.attempt).where(
                EpochRow.experiment_id == experiment_id, EpochRow.epoch == epoch
            )
        )
        return int(attempt or 0)

    def rows_after(
        self, experiment_id: int, epoch: int, attempt: int | None = None
    ) -> list[EpochRow]:
        """Rows after `epoch`, by epoch; with `attempt`, also every row a later attempt wrote
        (a run resumed from an earlier checkpoint rewrites the epochs after it)."""
        newer = EpochRow.epoch > epoch
        if attempt is not None:
            newer = or_(newer, EpochRow.attempt > attempt)
        q = select(EpochRow).where(EpochRow.experiment_id == experiment_id, newer)
        return list(self.session.scalars(q.order_by(EpochRow.epoch)))

    def decisions_in(self, experiment_id: int, first: int, last: int) -> list[Decision]:
        q = select(Decision).where(
            Decision.experiment_id == experiment_id, Decision.epoch.between(first, last)
        )
        return list(self.session.scalars(q.order_by(Decision.epoch, Decision.id)))

    def group(
        self, kind: str, key: int | str | None, known: Sequence[int] = (),
        after_id: int | None = None,
    ) -> list[Row[Any]]:  # fmt: skip
        """Status columns of a sweep's or a batch's runs; for kind "all": the training runs not
        final, those in `known` (to see them end) and any newer than `after_id`."""
        if kind == "sweep":
            where: Any = Experiment.sweep_id == key
        elif kind == "batch":
            where = Experiment.batch_id == key
        else:
            parts: list[Any] = [Experiment.status.not_in(list(FINAL))]
            if known:
                parts.append(Experiment.id.in_(list(known)))
            if after_id is not None:
                parts.append(Experiment.id > after_id)
            where = and_(Experiment.kind == "train", or_(*parts))
        q = select(*STATUS_COLUMNS).where(where).order_by(Experiment.id)
        return list(self.session.execute(q))

    def max_id(self) -> int:
        return int(self.session.scalar(select(func.max(Experiment.id))) or 0)

    def sweep_status(self, sweep_id: int) -> str | None:
        status: str | None = self.session.scalar(select(Sweep.status).where(Sweep.id == sweep_id))
        return status

    def batch_exists(self, batch_id: str) -> bool:
        return self.session.scalar(select(Batch.id).where(Batch.id == batch_id)) is not None

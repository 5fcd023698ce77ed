"""Every query on the outbox."""

from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime

from sqlalchemy import column, func, select, table, update
from sqlalchemy.orm import Session, aliased

from service.dispatch.models import OutboxMessage
from service.kit.time import utcnow
from service.training.status import ExperimentStatus

# The runs' table, known by name as the outbox's foreign key knows it: the experiments domain
# records messages through this one, so the outbox does not import it back.
_experiments = table("experiments", column("id"), column("status"))


class OutboxRepository:
    def __init__(self, session: Session) -> None:
        self.session = session

    def add(self, message: OutboxMessage) -> OutboxMessage:
        self.session.add(message)
        return message

    def mark_sent(self, message_ids: Sequence[int]) -> None:
        self.session.execute(
            update(OutboxMessage)
            .where(OutboxMessage.id.in_(message_ids))
            .values(sent_at=utcnow(), send_attempts=OutboxMessage.send_attempts + 1)
        )

    def unsent(self, created_before: datetime, limit: int) -> list[OutboxMessage]:
        """Messages never marked sent, oldest first."""
        return list(
            self.session.scalars(
                select(OutboxMessage)
                .where(OutboxMessage.sent_at.is_(None))
                .where(OutboxMessage.created_at < created_before)
                .order_by(OutboxMessage.id)
                .limit(limit)
            )
        )

    def last_sent_to_queued(self, sent_before: datetime, limit: int) -> list[OutboxMessage]:
        """For each run still queued, its latest message, when that was sent before
        `sent_before`; oldest first."""
        newer = aliased(OutboxMessage)
        latest = (
            select(func.max(newer.id))
            .where(newer.experiment_id == _experiments.c.id)
            .correlate(_experiments)
            .scalar_subquery()
        )
        return list(
            self.session.scalars(
                select(OutboxMessage)
                .join(_experiments, _experiments.c.id == OutboxMessage.experiment_id)
                .where(
                    _experiments.c.status == ExperimentStatus.QUEUED,
                    OutboxMessage.id == latest,
                    OutboxMessage.sent_at.is_not(None),
                    OutboxMessage.sent_at < sent_before,
                )
                .order_by(OutboxMessage.id)
                .limit(limit)
            )
        )

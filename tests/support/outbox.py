"""A run's outbox messages as the database holds them. The API sends a POST's messages before it
answers and marks them sent just after, on its outbox thread (service/dispatch/service.py)."""

from __future__ import annotations

from sqlalchemy import select

from service.dispatch.models import OutboxMessage
from service.kit.db import session_scope


def messages_of(experiment_id: int) -> list[OutboxMessage]:
    with session_scope() as session:
        q = select(OutboxMessage).where(OutboxMessage.experiment_id == experiment_id)
        return list(session.scalars(q))


def marked_sent(experiment_id: int) -> bool:
    """Every message of the run is marked sent (and there is at least one)."""
    messages = messages_of(experiment_id)
    return bool(messages) and all(m.sent_at is not None for m in messages)

"""The outbox: a task is recorded in the same transaction as its experiment and sent to the
broker only after that transaction commits. Whatever did not reach the broker (the process died
between commit and send, the broker was down) is sent again by `relay_pending`."""

from __future__ import annotations

from datetime import UTC, timedelta
from functools import partial

from sqlalchemy import event
from sqlalchemy.orm import Session

from service.dispatch import broker
from service.dispatch.models import OutboxMessage
from service.dispatch.repository import OutboxRepository
from service.kit import behind
from service.kit.db import session_scope
from service.kit.logging import get_logger
from service.kit.time import utcnow

log = get_logger(__name__)

_PENDING_KEY = "glidepath_outbox_pending"
RUN_TASK = "glidepath.run_experiment"


def enqueue(session: Session, experiment_id: int, queue: str, task: str) -> OutboxMessage:
    """Record a task in `session`'s transaction; it is sent once that transaction commits."""
    message = OutboxRepository(session).add(
        OutboxMessage(experiment_id=experiment_id, queue=queue, task=task)
    )
    session.info.setdefault(_PENDING_KEY, []).append(message)
    return message


# Up to this many messages are sent inline, before the response; more (a batch, a sweep) go to
# a background thread, so accepting 1,000 specs does not wait on 1,000 broker round trips. Either
# way the rows are committed first: if the process dies before sending, the relay sends them.
INLINE_SEND_MAX = 20
_sender = behind.Lane("outbox-sender")


def wait_sent(timeout_s: float = 10.0) -> bool:
    """Wait until what this process queued for its background sender so far is done; False on
    timeout. For whoever is about to point the process elsewhere: tests switching databases."""
    return _sender.wait(timeout_s)


def warm() -> None:
    """A process that sends (the API; a worker: a rung's promoted runs, a hand-back) pays the
    broker's one-time costs and starts its background sender now, not in its first send."""
    _sender.start()
    broker.warm()


@event.listens_for(Session, "after_commit")
def _send_after_commit(session: Session) -> None:
    # Every session that enqueued sends on its own commit: no caller has to remember to.
    pending: list[OutboxMessage] = session.info.pop(_PENDING_KEY, [])
    if len(pending) > INLINE_SEND_MAX:
        _sender.put(partial(send, pending))
    elif pending:
        # The messages reach the broker before the response (a worker can start at once); marking
        # them sent is a transaction of its own (~4 ms of a POST's ~25 on PostgreSQL), done
        # behind it. Unmarked, a message is sent again by the relay after 5 s at the earliest,
        # which the claim makes harmless.
        sent = publish(pending)
        if sent:
            _sender.put(partial(mark_sent, sent))


@event.listens_for(Session, "after_rollback")
def _drop_on_rollback(session: Session) -> None:
    session.info.pop(_PENDING_KEY, None)  # their rows are gone: nothing to send


def send(messages: list[OutboxMessage]) -> int:
    """Send messages and mark them sent. A failure leaves them for the relay: never raises."""
    sent_ids = publish(messages)
    if sent_ids:
        mark_sent(sent_ids)
    return len(sent_ids)


def publish(messages: list[OutboxMessage]) -> list[int]:
    """Hand each message to the broker; the ids of those it took (the rest: the relay's)."""
    sent_ids = []
    for message in messages:
        try:
            broker.send_task(message.task, message.experiment_id, message.queue)
            sent_ids.append(message.id)
        except Exception:  # the broker is down: the relay retries
            log.warning("send_failed", message_id=message.id, experiment_id=message.experiment_id,
                        retry="by housekeeping", exc_info=True)  # fmt: skip
    return sent_ids


def mark_sent(sent_ids: list[int]) -> None:
    try:
        with session_scope() as session:
            OutboxRepository(session).mark_sent(sent_ids)
    except Exception:  # a re-send later is harmless: the claim makes duplicates no-ops
        log.warning("mark_sent_failed", message_ids=sent_ids, exc_info=True)


def resend_stale(resend_after_s: float, limit: int = 500) -> int:
    """Re-send the task of runs still queued long after it was sent: a broker can lose a message
    (Redis restarted without persistence; a consumer died holding it). The wait doubles with each
    re-send, so a long but healthy backlog costs a few duplicates, which the claim ignores."""
    now = utcnow()
    with session_scope() as session:
        rows = OutboxRepository(session).last_sent_to_queued(
            now - timedelta(seconds=resend_after_s), limit
        )
    due = []
    for m in rows:
        assert m.sent_at is not None
        sent_at = m.sent_at if m.sent_at.tzinfo else m.sent_at.replace(tzinfo=UTC)
        backoff = resend_after_s * 2 ** min(max(m.send_attempts - 1, 0), 6)
        if now - sent_at >= timedelta(seconds=backoff):
            due.append(m)
    return send(due)


def relay_pending(min_age_s: float = 5.0, limit: int = 500) -> int:
    """Send what was recorded but never marked sent (older than `min_age_s`, so a request that is
    sending its own messages right now is not raced)."""
    with session_scope() as session:
        rows = OutboxRepository(session).unsent(utcnow() - timedelta(seconds=min_age_s), limit)
    return send(rows)

"""The production broker, Redis, as the API and the workers use it (service/dispatch/broker.py):
a real redis-server, the PostgreSQL + Redis variant."""

from __future__ import annotations

from collections.abc import Iterator

import pytest
import redis

from service.config import settings
from service.dispatch import broker
from service.dispatch.service import RUN_TASK
from service.monitoring import queues


@pytest.fixture
def on_redis(redis_url: str, monkeypatch: pytest.MonkeyPatch) -> Iterator[redis.Redis]:
    monkeypatch.setattr(settings, "broker_url", redis_url)
    broker.sender.cache_clear()  # made once per process: make it again for this broker
    try:
        yield redis.Redis.from_url(redis_url)
    finally:
        broker.sender.cache_clear()


@pytest.mark.postgres
def test_warming_up_the_sender_declares_the_queues_and_sends_nothing(
    on_redis: redis.Redis,
) -> None:
    broker.warm()
    assert queues.depths({"auto", "cpu"}) == {"auto": 0, "cpu": 0}
    assert on_redis.smembers("_kombu.binding.auto")  # declared: the first send skips it
    broker.send_task(RUN_TASK, 7, "auto")
    assert queues.depths({"auto", "cpu"}) == {"auto": 1, "cpu": 0}


@pytest.mark.postgres
def test_a_taken_message_is_gone_from_redis_before_its_ack(on_redis: redis.Redis) -> None:
    """No ack emulation: Redis keeps no copy of a message a worker took (the database re-sends
    the run's task if that worker is lost), so a delivery costs no bookkeeping round trips."""
    broker.send_task(RUN_TASK, 7, "auto")
    app = broker.make_celery()
    with app.connection_for_read() as conn, conn.SimpleQueue("auto") as taken:
        message = taken.get(timeout=5)
        assert message.payload is not None
        assert queues.depths({"auto"}) == {"auto": 0}
        assert on_redis.keys("unacked*") == []
        message.ack()

"""How many task messages wait in each queue, read from the broker itself: the lengths of the
Redis lists kombu keeps per queue (and per priority), or the message files in the embedded
broker's folder. The names asked for come from the database (each run's queue, each worker's
queues), since neither broker lists its queues cheaply."""

from __future__ import annotations

import functools
import os
from collections import Counter
from collections.abc import Iterable

import redis
import structlog
from kombu.transport.redis import PRIORITY_STEPS, Channel

from service.config import settings
from service.dispatch import broker

log = structlog.get_logger(__name__)

TIMEOUT_S = 1.0  # a scrape answers without queue depths rather than hang on a lost broker


def depths(names: Iterable[str]) -> dict[str, int] | None:
    """Messages waiting per queue: every name asked for (0 when empty) and, on the embedded
    broker, any other queue that has messages. None when the broker cannot be read."""
    wanted = set(names)
    try:
        if settings.is_embedded_broker:
            return _folder(wanted)
        url = settings.effective_broker_url
        if url.startswith(("redis://", "rediss://")):
            return _redis(url, wanted)
        return None  # another kombu transport: not one Glidepath deploys (docs/deploy.md)
    except (OSError, redis.RedisError) as exc:
        log.warning("queue_depth_unavailable", error=str(exc).splitlines()[0][:200])
        return None


def _folder(wanted: set[str]) -> dict[str, int]:
    found: Counter[str] = Counter(dict.fromkeys(wanted, 0))
    folder = broker.queue_folder()
    if not folder.is_dir():
        return dict(found)  # no message was ever sent
    with os.scandir(folder) as entries:
        for entry in entries:
            # `<ms>_<uuid>.<queue>.msg`: the queue is all between the first dot and `.msg`
            # (queue names have dots, the rest has none), as kombu's own _size reads it.
            _, _, rest = entry.name.partition(".")
            if rest.endswith(".msg"):
                found[rest.removesuffix(".msg")] += 1
    return dict(found)


@functools.cache
def _client(url: str) -> redis.Redis:
    return redis.Redis.from_url(url, socket_timeout=TIMEOUT_S, socket_connect_timeout=TIMEOUT_S)


def _keys(queue: str) -> list[str]:
    """kombu's lists for a queue: the name itself (priority 0, all Glidepath sends), then one per
    higher priority step."""
    return [queue] + [f"{queue}{Channel.sep}{p}" for p in PRIORITY_STEPS if p]


def _redis(url: str, wanted: set[str]) -> dict[str, int]:
    names = sorted(wanted)
    with _client(url).pipeline(transaction=False) as pipe:
        for name in names:
            for key in _keys(name):
                pipe.llen(key)
        lengths = pipe.execute()  # one round trip for all of them
    per = len(_keys(""))
    return {name: int(sum(lengths[i * per : (i + 1) * per])) for i, name in enumerate(names)}

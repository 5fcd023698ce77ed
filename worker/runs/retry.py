"""Worker-side database calls survive a database restart: retried with backoff."""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import TypeVar

from sqlalchemy.exc import DBAPIError, OperationalError

from service.kit.logging import get_logger

log = get_logger(__name__)
T = TypeVar("T")


def _transient(exc: BaseException) -> bool:
    return isinstance(exc, OperationalError) or (
        isinstance(exc, DBAPIError) and exc.connection_invalidated
    )


def with_db_retry(fn: Callable[[], T], what: str, budget_s: float = 120.0) -> T:
    """Run `fn` (one whole transaction) again after a connection failure, backing off from 0.1 s
    to 5 s, for up to `budget_s`. Each transaction the worker runs is idempotent (fenced upserts),
    so a retry after a commit whose acknowledgement was lost writes the same thing again."""
    deadline = time.monotonic() + budget_s
    delay = 0.1
    while True:
        try:
            return fn()
        except Exception as exc:
            if not _transient(exc) or time.monotonic() + delay > deadline:
                raise
            log.warning("database_unavailable", doing=what, retry_in_s=delay,
                        error=str(exc).splitlines()[0][:120])  # fmt: skip
            time.sleep(delay)
            delay = min(delay * 2, 5.0)

"""Worker-side calls survive a database restart or an artifact store that is briefly away:
retried with backoff."""

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


def with_retry(
    fn: Callable[[], T], what: str, transient: Callable[[BaseException], bool], event: str,
    budget_s: float = 120.0,
) -> T:  # fmt: skip
    """Run `fn` again while it fails with a `transient` error, backing off from 0.1 s to 5 s, for
    up to `budget_s`; each retry is logged as `event`."""
    deadline = time.monotonic() + budget_s
    delay = 0.1
    while True:
        try:
            return fn()
        except Exception as exc:
            if not transient(exc) or time.monotonic() + delay > deadline:
                raise
            log.warning(event, doing=what, retry_in_s=delay,
                        error=(str(exc).splitlines() or [""])[0][:200])  # fmt: skip
            time.sleep(delay)
            delay = min(delay * 2, 5.0)


def with_db_retry(fn: Callable[[], T], what: str, budget_s: float = 120.0) -> T:
    """`fn` is one whole transaction. Each transaction the worker runs is idempotent (fenced
    upserts), so a retry after a commit whose acknowledgement was lost writes the same again."""
    return with_retry(fn, what, _transient, "database_unavailable", budget_s)

"""Fixtures of the API tests (the `client` and backends come from tests/conftest.py)."""

from __future__ import annotations

import threading
from collections.abc import Iterator
from typing import Any

import pytest
from sqlalchemy import event

from service.kit.db import get_engine


@pytest.fixture
def statements() -> Iterator[list[str]]:
    """The SQL statements run while it is open, for tests that a page costs a fixed number of
    queries. The token check's read of the tokens table comes and goes with its 1 s cache, so it
    is left out, as is the outbox thread's marking of a POST's messages, just after it, and the
    in-process API's housekeeping pass (the outbox relay, the reaper, the sweeps check), which
    comes every few seconds whatever the requests."""
    seen: list[str] = []
    background = {"outbox-sender", "housekeeping"}

    def count(_c: Any, _cur: Any, statement: str, *_: Any) -> None:
        if "tokens" not in statement and threading.current_thread().name not in background:
            seen.append(statement)

    event.listen(get_engine(), "before_cursor_execute", count)
    yield seen
    event.remove(get_engine(), "before_cursor_execute", count)

"""PostgreSQL's pooled connections (service/kit/db.py): one idle past PING_AFTER_IDLE_S is pinged
before use and replaced if the server dropped it; one used just before is not pinged (a round
trip saved on every transaction of a busy process), and if the server dropped that one, the one
statement that finds out fails and the next goes through on a new connection."""

from __future__ import annotations

import time
from collections.abc import Iterator
from typing import Any

import pytest
from sqlalchemy import Engine, text
from sqlalchemy.exc import OperationalError
from sqlalchemy.orm import Session

from service.kit import db
from tests.support.databases import drop_connection

pytestmark = pytest.mark.postgres


def backend_pid(engine: Engine) -> int:
    with Session(engine) as session:
        return int(session.execute(text("SELECT pg_backend_pid()")).scalar_one())


@pytest.fixture
def engine(pg_url: str) -> Iterator[Engine]:
    made = db.make_engine(pg_url)
    yield made
    made.dispose()


def test_a_connection_dropped_while_idle_is_replaced_before_use(
    engine: Engine, pg_url: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(db, "PING_AFTER_IDLE_S", 0.05)
    first = backend_pid(engine)
    drop_connection(pg_url, first)
    time.sleep(0.1)
    assert backend_pid(engine) != first  # no error: the ping found it gone


def test_a_connection_used_just_before_is_not_pinged(
    engine: Engine, monkeypatch: pytest.MonkeyPatch
) -> None:
    pings: list[object] = []
    ping = engine.dialect.do_ping

    def counted(dbapi_connection: Any) -> bool:
        pings.append(dbapi_connection)
        return ping(dbapi_connection)

    monkeypatch.setattr(engine.dialect, "do_ping", counted)
    monkeypatch.setattr(db, "PING_AFTER_IDLE_S", 60.0)  # a slow moment of a busy box is no idle
    pids = {backend_pid(engine) for _ in range(5)}
    assert (len(pids), pings) == (1, [])  # one connection, reused, never pinged
    monkeypatch.setattr(db, "PING_AFTER_IDLE_S", 0.0)
    backend_pid(engine)
    assert len(pings) == 1


def test_a_connection_dropped_between_two_uses_fails_one_statement_only(
    engine: Engine, pg_url: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(db, "PING_AFTER_IDLE_S", 60.0)  # used "just before", however slow the box
    first = backend_pid(engine)
    drop_connection(pg_url, first)
    with pytest.raises(OperationalError):  # the API answers this 503; the worker retries it
        backend_pid(engine)
    assert backend_pid(engine) != first


@pytest.mark.parametrize("backend", ["postgres"], indirect=True)
def test_reads_run_in_autocommit_and_leave_the_pool_transactional(backend: Any) -> None:
    """`db.read_scope` (a polled run's reads) runs its statements in autocommit: no BEGIN and
    COMMIT round trips. The connection goes back to the pool transactional again: a write that
    fails after it, on that same connection (the pool is LIFO), rolls back whole."""
    from tests.support.backends import in_process

    with in_process(backend):
        with db.session_scope() as session:
            session.execute(text("CREATE TABLE probe (x INTEGER)"))
        with db.read_scope() as session:
            session.execute(text("SELECT pg_sleep(0.01)"))
            # Each statement its own transaction: it starts when the statement does.
            assert session.execute(text("SELECT now() = statement_timestamp()")).scalar_one()
            reader = session.execute(text("SELECT pg_backend_pid()")).scalar_one()
        with pytest.raises(RuntimeError), db.session_scope() as session:
            assert session.execute(text("SELECT pg_backend_pid()")).scalar_one() == reader
            session.execute(text("INSERT INTO probe VALUES (1)"))
            raise RuntimeError("after the insert")
        with db.session_scope() as session:
            session.execute(text("SELECT pg_sleep(0.01)"))
            assert not session.execute(text("SELECT now() = statement_timestamp()")).scalar_one()
            assert session.execute(text("SELECT count(*) FROM probe")).scalar_one() == 0

"""Engine, sessions and the declarative base shared by the API and the workers.

Both sides use synchronous SQLAlchemy: the worker is a plain Python loop around torch, and the
API runs its (short) queries in FastAPI's thread pool. One repository layer then serves both.
"""

from __future__ import annotations

import functools
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from sqlalchemy import MetaData, create_engine, event, exc
from sqlalchemy.engine import Connection, Dialect, Engine, make_url
from sqlalchemy.orm import DeclarativeBase, Session, sessionmaker
from sqlalchemy.pool import ConnectionPoolEntry, PoolProxiedConnection

from service.config import settings

# Stable constraint names, so Alembic migrations are the same on SQLite and PostgreSQL.
NAMING_CONVENTION = {
    "ix": "ix_%(column_0_label)s",
    "uq": "uq_%(table_name)s_%(column_0_N_name)s",
    "ck": "ck_%(table_name)s_%(constraint_name)s",
    "fk": "fk_%(table_name)s_%(column_0_name)s_%(referred_table_name)s",
    "pk": "pk_%(table_name)s",
}


class Base(DeclarativeBase):
    metadata = MetaData(naming_convention=NAMING_CONVENTION)


def _sqlite_pragmas(dbapi_connection: Any, _record: Any) -> None:
    # WAL lets the API read while a worker writes; busy_timeout makes writers queue instead of
    # failing with "database is locked"; NORMAL sync is durable across process crashes in WAL.
    cursor = dbapi_connection.cursor()
    cursor.execute("PRAGMA journal_mode=WAL")
    cursor.execute("PRAGMA busy_timeout=30000")
    cursor.execute("PRAGMA synchronous=NORMAL")
    cursor.execute("PRAGMA foreign_keys=ON")
    cursor.close()
    # SQLite's lower() folds ASCII only, so a case-insensitive search (`icontains`: lower() on
    # both sides) missed "Élan" for "élan"; PostgreSQL's folds every letter. Python's does too.
    dbapi_connection.create_function("lower", 1, _lower, deterministic=True)


def _lower(value: Any) -> Any:
    return value.lower() if isinstance(value, str) else value


# A pooled connection used less than this long ago is taken to be alive; one idle longer is
# pinged before use (a restarted server, or a proxy or firewall that drops idle connections).
# SQLAlchemy's pool_pre_ping pings at every checkout: a round trip per transaction (0.11 ms
# of 0.51 on an idle box, more with the database on the same busy cores), on every poll the
# API answers and at each of a run's claim, start and finish.
PING_AFTER_IDLE_S = 1.0
_IDLE_SINCE = "glidepath_idle_since"


def _ping_when_idle(engine: Engine) -> None:
    """Pre-ping, on the connections that sat idle: the pool's own pre-ping, which it replaces,
    skips only fresh ones. A connection that fails between is one failed statement, which
    invalidates the pool (as a failed ping does): the worker's transactions retry
    (`worker/runs/retry.py`), the API answers that request 503 with Retry-After."""
    dialect: Dialect = engine.dialect

    @event.listens_for(engine, "checkin")
    def _idle_from(_dbapi: Any, record: ConnectionPoolEntry | None) -> None:
        if record is not None:
            record.info[_IDLE_SINCE] = time.monotonic()

    @event.listens_for(engine, "checkout")
    def _ping_if_idle(dbapi: Any, record: ConnectionPoolEntry, _p: PoolProxiedConnection) -> None:
        since = record.info.get(_IDLE_SINCE)  # none yet: connected for this checkout
        if since is None or time.monotonic() - since < PING_AFTER_IDLE_S:
            return
        try:
            dialect.do_ping(dbapi)
        except dialect.loaded_dbapi.Error as err:
            if not dialect.is_disconnect(err, dbapi, None):
                raise
            # As the pool's pre-ping: every pooled connection is suspect; this one reconnects.
            raise exc.InvalidatePoolError() from err


def make_engine(url: str) -> Engine:
    parsed = make_url(url)
    if parsed.get_backend_name() == "sqlite":
        if parsed.database and parsed.database != ":memory:":
            Path(parsed.database).parent.mkdir(parents=True, exist_ok=True)
        engine = create_engine(url, connect_args={"check_same_thread": False, "timeout": 30})
        event.listen(engine, "connect", _sqlite_pragmas)
        return engine
    # insertmanyvalues pages of 100 rows: psycopg's placeholder parsing grows faster than linearly
    # with a statement's length (1,000-row pages made a 1,000-spec batch spend ~0.7 s in it).
    # LIFO: the connections in use stay the recently used ones (no ping), the rest idle out.
    engine = create_engine(
        url, pool_use_lifo=True, pool_size=10, max_overflow=20, insertmanyvalues_page_size=100
    )
    _ping_when_idle(engine)
    return engine


@functools.cache
def get_engine() -> Engine:
    return make_engine(settings.effective_database_url)


@functools.cache
def get_sessionmaker() -> sessionmaker[Session]:
    return sessionmaker(get_engine(), expire_on_commit=False)


def dispose_engine() -> None:
    """Drop pooled connections; called after a fork so a child never shares its parent's sockets."""
    if get_engine.cache_info().currsize:
        get_engine().dispose(close=False)


@contextmanager
def session_scope(bind: Connection | None = None) -> Iterator[Session]:
    """Commit once, at the edge: commit on success, roll back on any error. `bind`: a connection
    held by the caller across many transactions (a worker's per-epoch writes), which saves the
    pool's checkout (and a ping after idling) on each; after a lost connection it reconnects on
    next use."""
    session = Session(bind=bind, expire_on_commit=False) if bind else get_sessionmaker()()
    try:
        yield session
        session.commit()
    except BaseException:
        session.rollback()
        raise
    finally:
        session.close()


@contextmanager
def read_scope() -> Iterator[Session]:
    """A session for reads that change nothing: on PostgreSQL its connection runs in autocommit
    (reset when it returns to the pool), so the reads pay no BEGIN and COMMIT round trips, two
    of the six of a polled run's detail (~0.3-0.8 ms of its 2.3-3.5 ms in-process). They see
    what they would in a transaction: PostgreSQL's READ COMMITTED takes a snapshot per statement
    either way. On SQLite, `session_scope` (one snapshot for the reads, and no BEGIN to save)."""
    engine = get_engine()
    if engine.dialect.name != "postgresql":
        with session_scope() as session:
            yield session
        return
    with engine.connect() as conn:
        autocommit = conn.execution_options(isolation_level="AUTOCOMMIT")
        with Session(bind=autocommit, expire_on_commit=False) as session:
            yield session

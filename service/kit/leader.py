"""A lock that dies with its holder, for work that exactly one process of many should do
(housekeeping, with `glidepath api --workers N` or several API hosts on one database).

- PostgreSQL: a session-level `pg_try_advisory_lock` on a connection of its own. The server
  frees it when the session ends: the process exits or is killed, or its host vanishes (TCP
  keepalives on both ends notice that within ~25 s instead of the system's default two hours).
- SQLite (embedded): `flock` on a file next to the database. The kernel frees it when the
  process's descriptor closes, however the process died.

Nobody waits on the lock: a process that does not hold it asks again later (`try_acquire`).
"""

from __future__ import annotations

import contextlib
import fcntl
import hashlib
import os
from pathlib import Path
from typing import Protocol

from sqlalchemy import create_engine, text
from sqlalchemy.engine import Connection, Engine, make_url
from sqlalchemy.pool import NullPool

from service.kit.logging import get_logger

log = get_logger(__name__)

# The server drops a silent client after idle + interval * count seconds; libpq does the same
# for a silent server. Only this connection: the pool's are short-lived.
_KEEPALIVES = {"keepalives": 1, "keepalives_idle": 10, "keepalives_interval": 5,
               "keepalives_count": 3}  # fmt: skip
_SERVER_KEEPALIVES = (
    "-c tcp_keepalives_idle=10 -c tcp_keepalives_interval=5 -c tcp_keepalives_count=3"
)


class LeaderLock(Protocol):
    def try_acquire(self) -> bool:
        """Take the lock if it is free; never waits. True when this process holds it."""

    def held(self) -> bool:
        """Whether a lock taken earlier is still held (its connection may have died)."""

    def release(self) -> None:
        """Let it go (no-op when not held)."""


def advisory_key(name: str) -> int:
    """A stable signed 64-bit key for `name` (pg advisory locks are keyed by bigint)."""
    return int.from_bytes(hashlib.sha256(f"glidepath:{name}".encode()).digest()[:8], signed=True)


class AdvisoryLock:
    """PostgreSQL: `pg_try_advisory_lock(key)` held by a dedicated session."""

    def __init__(self, url: str, name: str) -> None:
        self.key = advisory_key(name)
        self._url = url
        self._engine: Engine | None = None
        self._conn: Connection | None = None

    def _connect(self) -> Connection:
        if self._engine is None:
            # NullPool: this connection is never shared, and closing it ends the session.
            self._engine = create_engine(
                self._url, poolclass=NullPool,
                connect_args={**_KEEPALIVES, "options": _SERVER_KEEPALIVES},
            )  # fmt: skip
        # AUTOCOMMIT: the session lock outlives transactions; nothing sits idle in one.
        return self._engine.connect().execution_options(isolation_level="AUTOCOMMIT")

    def try_acquire(self) -> bool:
        if self._conn is not None:
            return self.held()
        conn = self._connect()
        try:
            got = bool(
                conn.execute(text("SELECT pg_try_advisory_lock(:k)"), {"k": self.key}).scalar()
            )
        except BaseException:
            conn.close()
            raise
        if got:
            self._conn = conn
        else:
            conn.close()  # holding a connection while another process leads buys nothing
        return got

    def held(self) -> bool:
        if self._conn is None:
            return False
        try:
            self._conn.execute(text("SELECT 1"))
            return True
        except Exception:
            # The session is gone, and the lock with it: another process may hold it now.
            log.warning("leader_lock_lost", key=self.key, exc_info=True)
            self._drop()
            return False

    def release(self) -> None:
        if self._conn is None:
            return
        with contextlib.suppress(Exception):  # closing the session below frees it anyway
            self._conn.execute(text("SELECT pg_advisory_unlock(:k)"), {"k": self.key})
        self._drop()

    def _drop(self) -> None:
        conn, self._conn = self._conn, None
        if conn is not None:
            with contextlib.suppress(Exception):  # already broken: nothing left to free
                conn.close()
        if self._engine is not None:
            self._engine.dispose()


class FileLock:
    """`flock(LOCK_EX | LOCK_NB)` on `path`; the file holds the holder's pid (for operators)."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self._fd: int | None = None

    def try_acquire(self) -> bool:
        if self._fd is not None:
            return True
        self.path.parent.mkdir(parents=True, exist_ok=True)
        fd = os.open(self.path, os.O_RDWR | os.O_CREAT, 0o644)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            os.close(fd)
            return False
        except BaseException:
            os.close(fd)
            raise
        os.ftruncate(fd, 0)
        os.write(fd, f"{os.getpid()}\n".encode())
        self._fd = fd
        return True

    def held(self) -> bool:
        return self._fd is not None  # a flock lasts as long as the descriptor

    def release(self) -> None:
        fd, self._fd = self._fd, None
        if fd is not None:
            os.close(fd)  # closing the last descriptor frees the flock


class Always:
    """No other process can share the database (SQLite in memory): always the leader."""

    def try_acquire(self) -> bool:
        return True

    def held(self) -> bool:
        return True

    def release(self) -> None:
        pass


def leader_lock(database_url: str, name: str) -> LeaderLock:
    """The lock named `name` among the processes that share `database_url`."""
    url = make_url(database_url)
    backend = url.get_backend_name()
    if backend == "postgresql":
        return AdvisoryLock(database_url, name)
    if backend == "sqlite" and url.database and url.database != ":memory:":
        db = Path(url.database).resolve()
        return FileLock(db.with_name(f"{db.name}.{name}.lock"))
    return Always()

"""Databases for tests: the schema is migrated once per test session into a template, and every
test (or module) gets a copy of it instead of running Alembic again.

- SQLite: a migrated template file, copied with `shutil.copy` (checkpointed and in rollback-journal
  mode first, so the one file is the whole database; the service turns WAL back on at connect).
- PostgreSQL: a template database `glidepath_template_<pid>_<random>`, migrated once; each test
  gets `CREATE DATABASE glidepath_test_<pid>_<random> TEMPLATE <it>` (made ahead of need, and
  dropped after use, by a background thread). Names are unique per session, so concurrent runs
  on one server never share or drop each other's databases; the session drops its template and
  any copy still left at its end.
"""

from __future__ import annotations

import contextlib
import os
import queue
import shutil
import sqlite3
import threading
import uuid
from pathlib import Path

from sqlalchemy import create_engine, text
from sqlalchemy.engine import URL, Engine
from sqlalchemy.pool import NullPool

from service.kit import migrate


class SqliteTemplate:
    def __init__(self, root: Path) -> None:
        self.path = root / "template.db"

    def build(self) -> SqliteTemplate:
        self.path.parent.mkdir(parents=True, exist_ok=True)
        migrate.upgrade(f"sqlite:///{self.path}")
        with sqlite3.connect(self.path) as conn:  # fold the WAL into the file
            conn.execute("PRAGMA journal_mode=DELETE")
        conn.close()
        return self

    def copy(self, data_dir: Path) -> str:
        """A migrated database at data_dir/glidepath.db (where `glidepath` would put it)."""
        data_dir.mkdir(parents=True, exist_ok=True)
        target = data_dir / "glidepath.db"
        shutil.copy(self.path, target)
        return f"sqlite:///{target}"


class PostgresDatabases:
    """Per-session template and copies on one PostgreSQL server (`host`: a URL without the
    database, e.g. postgresql+psycopg://postgres@127.0.0.1:5432).

    A CREATE DATABASE … TEMPLATE costs ~0.2 s on this machine's cluster (its WAL is flushed), so
    a background thread keeps `POOL` copies ready and drops used ones while the tests run."""

    POOL = 2

    def __init__(self, host: str) -> None:
        self.host = host
        self.session = f"{os.getpid()}_{uuid.uuid4().hex[:8]}"
        self.template = f"glidepath_template_{self.session}"
        self.created: set[str] = set()
        self._lock = threading.Lock()
        self._admin: Engine | None = None
        self._ready: queue.Queue[str | BaseException] = queue.Queue()
        self._jobs: queue.Queue[str | None] = queue.Queue()  # a name to drop, "" to refill
        self._thread: threading.Thread | None = None

    def admin(self) -> Engine:
        if self._admin is None:
            self._admin = create_engine(
                f"{self.host}/postgres", isolation_level="AUTOCOMMIT", pool_size=2
            )
        return self._admin

    def _execute(self, sql: str) -> None:
        with self.admin().connect() as conn:
            conn.execute(text(sql))

    def build(self) -> PostgresDatabases:
        """The template, migrated to head. Alembic's engine is disposed when it returns, so no
        session stays connected to it (CREATE DATABASE … TEMPLATE needs that)."""
        self._execute(f'CREATE DATABASE "{self.template}"')
        self.created.add(self.template)
        migrate.upgrade(f"{self.host}/{self.template}")
        return self

    def empty(self) -> str:
        """A new database without any table (synchronously: rarely asked for)."""
        return f"{self.host}/{self._create(None)}"

    def copy(self) -> str:
        """A new database with the migrated schema, from the ready pool."""
        if self._thread is None:
            self._thread = threading.Thread(target=self._keeper, name="pg-copies", daemon=True)
            self._thread.start()
        got = self._ready.get(timeout=120)
        if isinstance(got, BaseException):
            self._ready.put(got)  # the thread has stopped: every later test fails the same way
            raise got
        self._jobs.put("")
        return f"{self.host}/{got}"

    def drop(self, url: str) -> None:
        """Dropped in the background (WITH FORCE), or now when no background thread runs."""
        name = url.rsplit("/", 1)[1]
        if self._thread is not None:
            self._jobs.put(name)
        else:
            self._drop(name)

    def _create(self, template: str | None) -> str:
        name = f"glidepath_test_{self.session}_{uuid.uuid4().hex[:6]}"
        with self._lock:
            self.created.add(name)
        self._execute(f'CREATE DATABASE "{name}"' + (f' TEMPLATE "{template}"' if template else ""))
        return name

    def _drop(self, name: str) -> None:
        self._execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
        with self._lock:
            self.created.discard(name)

    def _keeper(self) -> None:
        while True:
            if self._ready.qsize() < self.POOL:
                try:
                    self._ready.put(self._create(self.template))
                except BaseException as exc:  # handed to the test that waits for a copy
                    self._ready.put(exc)
                    return
                continue
            job = self._jobs.get()
            if job is None:
                return
            if job:
                with contextlib.suppress(Exception):
                    self._drop(job)

    def close(self) -> None:
        """Drop what this session created and is still there: the template last."""
        if self._thread is not None:
            self._jobs.put(None)
            self._thread.join(timeout=60)
        for name in sorted(self.created, key=lambda n: n == self.template):
            with contextlib.suppress(Exception):
                self._drop(name)
        if self._admin is not None:
            self._admin.dispose()
            self._admin = None


def drop_connection(url: str | URL, pid: int) -> None:
    """PostgreSQL ends the session of backend `pid` (`pg_terminate_backend`), as a server restart,
    a failover or an idle-connection killer does to a connection a pool still holds."""
    admin = create_engine(url, poolclass=NullPool)
    with admin.begin() as conn:
        conn.execute(text("SELECT pg_terminate_backend(:p)"), {"p": pid})
    admin.dispose()

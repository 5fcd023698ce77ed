"""Databases for tests: the schema is migrated once per test session into a template, and every
test (or module) gets a copy of it instead of running Alembic again.

- SQLite: a migrated template file, copied with `shutil.copy` (checkpointed and in rollback-journal
  mode first, so the one file is the whole database; the service turns WAL back on at connect).
- PostgreSQL: a template database `glidepath_template_<pid>_<random>`, migrated once; each test
  gets `CREATE DATABASE glidepath_test_<pid>_<random> TEMPLATE <it>`. Names are unique per
  session, so concurrent runs on one server never share or drop each other's databases; the
  session drops its template and any copy still left at its end.
"""

from __future__ import annotations

import contextlib
import os
import shutil
import sqlite3
import uuid
from pathlib import Path

from sqlalchemy import create_engine, text
from sqlalchemy.engine import Engine

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
    database, e.g. postgresql+psycopg://postgres@127.0.0.1:5432)."""

    def __init__(self, host: str) -> None:
        self.host = host
        self.session = f"{os.getpid()}_{uuid.uuid4().hex[:8]}"
        self.template = f"glidepath_template_{self.session}"
        self.created: set[str] = set()
        self._admin: Engine | None = None

    def admin(self) -> Engine:
        if self._admin is None:
            self._admin = create_engine(
                f"{self.host}/postgres", isolation_level="AUTOCOMMIT", pool_size=1
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
        return self._create(None)

    def copy(self) -> str:
        return self._create(self.template)

    def _create(self, template: str | None) -> str:
        name = f"glidepath_test_{self.session}_{uuid.uuid4().hex[:6]}"
        self._execute(f'CREATE DATABASE "{name}"' + (f' TEMPLATE "{template}"' if template else ""))
        self.created.add(name)
        return f"{self.host}/{name}"

    def drop(self, url: str) -> None:
        name = url.rsplit("/", 1)[1]
        self._execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
        self.created.discard(name)

    def close(self) -> None:
        """Drop what this session created and is still there: the template last."""
        for name in sorted(self.created, key=lambda n: n == self.template):
            with contextlib.suppress(Exception):
                self._execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
        self.created.clear()
        if self._admin is not None:
            self._admin.dispose()
            self._admin = None

"""INSERT … ON CONFLICT DO UPDATE (and DO NOTHING) on both SQLite and PostgreSQL (the same SQL,
two dialects)."""

from __future__ import annotations

import functools
from typing import Any

from sqlalchemy import Table
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.orm import Session
from sqlalchemy.sql.dml import Insert


@functools.cache
def _statement(
    dialect: str, table: Table, columns: tuple[str, ...], keys: tuple[str, ...]
) -> Insert:
    # Built once per shape: building `excluded` proxies costs more than the round trip itself.
    insert = postgresql.insert if dialect == "postgresql" else sqlite.insert
    stmt = insert(table)
    update_cols = {c: stmt.excluded[c] for c in columns if c not in keys}
    return stmt.on_conflict_do_update(index_elements=list(keys), set_=update_cols)


def upsert(session: Session, table: Table, rows: list[dict[str, Any]], keys: list[str]) -> None:
    if not rows:
        return
    dialect = session.get_bind().dialect.name
    stmt = _statement(dialect, table, tuple(rows[0]), tuple(keys))
    session.execute(stmt, rows)


def insert_new(session: Session, table: Table, row: dict[str, Any]) -> bool:
    """INSERT … ON CONFLICT DO NOTHING: True when this call inserted the row, False when its key
    was taken (by another process too: the database decides, exactly once)."""
    dialect = session.get_bind().dialect.name
    insert = postgresql.insert if dialect == "postgresql" else sqlite.insert
    # RETURNING, not rowcount: psycopg does not report a count for every INSERT form.
    key = next(iter(table.primary_key.columns))
    stmt = insert(table).values(**row).on_conflict_do_nothing().returning(key)
    return session.execute(stmt).first() is not None

"""Integers that name rows or count in the database, as request parameters. The id, epoch and
step columns are INTEGER: 32 bits on PostgreSQL (SQLite's are wider). A larger integer can match
nothing, so it is refused as input (a 422 with its field path) before a driver that cannot bind
it turns it into a 500."""

from __future__ import annotations

from typing import Annotated

from fastapi import Path, Query

DB_INT_MIN, DB_INT_MAX = -(2**31), 2**31 - 1

RowId = Annotated[int, Path(ge=DB_INT_MIN, le=DB_INT_MAX)]
RowIdQuery = Annotated[int | None, Query(ge=DB_INT_MIN, le=DB_INT_MAX)]


def fits_db_int(value: int) -> bool:
    return DB_INT_MIN <= value <= DB_INT_MAX

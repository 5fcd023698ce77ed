"""The range of the database's INTEGER columns (ids, epochs, steps): 32 bits on PostgreSQL
(SQLite's are wider). A larger integer can match nothing, and a driver that cannot bind it
raises, so input is checked against this range first (service/kit/params.py for request
parameters). No web framework here: the worker's epoch writer imports it through the
repository."""

from __future__ import annotations

DB_INT_MIN, DB_INT_MAX = -(2**31), 2**31 - 1


def fits_db_int(value: int) -> bool:
    return DB_INT_MIN <= value <= DB_INT_MAX

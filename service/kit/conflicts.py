"""A unique key taken by another transaction, turned into what the caller means by it: the row
that won (an Idempotency-Key race), or a 409 with the caller's message. An IntegrityError that
neither catches is a 409 too, from the handler in `exception_handlers`."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import TypeVar

from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session

from service.kit.errors import Conflict

T = TypeVar("T")


def insert_or_winner(
    session: Session, insert: Callable[[], T], winner: Callable[[], T | None]
) -> tuple[T, bool]:
    """Run `insert` (which flushes a row with a unique key). When a concurrent transaction
    committed the same key first, roll back and return that transaction's row, read by `winner`.
    Returns (row, inserted); re-raises when there is no winner to read (another constraint).

    No SAVEPOINT: pysqlite's default transaction handling makes them unreliable on SQLite, and
    the callers' unit of work holds nothing else yet, so a full rollback loses nothing."""
    try:
        return insert(), True
    except IntegrityError:
        session.rollback()
        row = winner()
        if row is None:
            raise
        return row, False


@contextmanager
def conflict_on_duplicate(msg: str, loc: list[str | int]) -> Iterator[None]:
    """A unique key violated inside the block is a 409 with `msg` at `loc`."""
    try:
        yield
    except IntegrityError:
        raise Conflict(msg, loc=loc) from None

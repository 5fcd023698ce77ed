"""How `GET /v1/experiments` orders its runs and pages through them: the `sort` vocabulary and
the keyset cursor that carries the last row's sort key, so every sort pages without gaps or
repeats while runs are added (an offset would shift under a new run)."""

from __future__ import annotations

import base64
import json
from enum import StrEnum
from typing import Any, NamedTuple

from service.kit.dbint import fits_db_int
from service.kit.errors import InvalidInput

CURSOR_LOC: list[str | int] = ["query", "cursor"]
MAX_NAME_KEY = 1000  # a name is at most 200 characters; its lowered form a little more at worst


class ListSort(StrEnum):
    """`-` is descending. `created` is creation order (the id's), `best` the run's best value of
    its own best metric (`best.metric`), `base_lr` the spec's; runs without one come last either
    way. Names sort case-insensitively, statuses by their name."""

    CREATED_DESC = "-created"
    CREATED = "created"
    NAME = "name"
    NAME_DESC = "-name"
    BEST = "best"
    BEST_DESC = "-best"
    BASE_LR = "base_lr"
    BASE_LR_DESC = "-base_lr"
    ID = "id"
    ID_DESC = "-id"
    STATUS = "status"
    STATUS_DESC = "-status"

    @property
    def field(self) -> str:
        """What it orders by: id (for created and id), name, status, best or base_lr."""
        name = self.value.removeprefix("-")
        return "id" if name == "created" else name

    @property
    def descending(self) -> bool:
        return self.value.startswith("-")


DEFAULT_SORT = ListSort.CREATED_DESC


class Key(NamedTuple):
    """The last row's sort key: its value of the sort's field (None for a run without one; the
    id itself for the id sorts) and its id, the tie-breaker."""

    value: str | float | None
    id: int


def encode(sort: ListSort, key: Key) -> str:
    body: dict[str, Any] = {"sort": sort.value, "key": [key.value, key.id]}
    return base64.urlsafe_b64encode(json.dumps(body).encode()).decode()


def decode(cursor: str, sort: ListSort) -> Key:
    """The key a `next_cursor` carries, checked against the sort it is used with. A cursor of
    the form before this module (`{"before": id}`) still reads, for the newest-first order it
    was made in."""
    try:
        body = json.loads(base64.urlsafe_b64decode(cursor.encode()))
        if not isinstance(body, dict):
            raise ValueError
        if "before" in body:
            before = body["before"]
            if not _is_id(before):
                raise ValueError
            made_for = DEFAULT_SORT
            key = Key(None, before)
        else:
            made_for = ListSort(body["sort"])
            value, last_id = body["key"]
            if not _is_id(last_id):
                raise ValueError
            key = Key(_value(made_for, value), last_id)
    # RecursionError: JSON nested deeper than the parser goes (`[[[[…`), still only a bad cursor.
    except (ValueError, KeyError, TypeError, OverflowError, RecursionError):
        raise InvalidInput(
            "malformed cursor; pass back `next_cursor` as given", loc=CURSOR_LOC
        ) from None
    if made_for.field != sort.field or made_for.descending != sort.descending:
        raise InvalidInput(
            f"this cursor pages sort={made_for.value}, not sort={sort.value}; start the new "
            "order without a cursor",
            loc=CURSOR_LOC,
        )
    return key


def _is_id(value: Any) -> bool:
    return isinstance(value, int) and not isinstance(value, bool) and fits_db_int(value)


def _value(sort: ListSort, value: Any) -> str | float | None:
    """The cursor's value as the sort's column holds it; ValueError when it cannot be one."""
    if value is None:
        return None
    if sort.field == "id":
        if not _is_id(value):
            raise ValueError
        return int(value)
    if sort.field in ("name", "status"):
        if not isinstance(value, str) or len(value) > MAX_NAME_KEY:
            raise ValueError
        return value
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        raise ValueError
    # A float (an int too large for one overflows): infinities included, as PostgreSQL stores
    # and orders them. Bound as a float, never as an integer a driver may not take.
    return float(value)

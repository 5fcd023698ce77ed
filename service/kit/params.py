"""Integers that name rows or count in the database, as request parameters. The id, epoch and
step columns are INTEGER: 32 bits on PostgreSQL (SQLite's are wider). A larger integer can match
nothing, so it is refused as input (a 422 with its field path) before a driver that cannot bind
it turns it into a 500."""

from __future__ import annotations

import re
from typing import Annotated

from fastapi import Path, Query
from starlette.convertors import Convertor, register_url_convertor

from service.kit.dbint import DB_INT_MAX, DB_INT_MIN

RowId = Annotated[int, Path(ge=DB_INT_MIN, le=DB_INT_MAX)]
RowIdQuery = Annotated[int | None, Query(ge=DB_INT_MIN, le=DB_INT_MAX)]


class SegmentBeside(Convertor[str]):
    """A path parameter that is any one segment except the literal paths beside it (`regex`,
    set by `segment_beside`). With a plain `{experiment_id}`, `DELETE /v1/experiments/compare`
    reaches the id's DELETE route and is a 422 ("compare" is no integer); excluding `compare`
    makes it the 405 that names the methods compare serves. Any other segment still reaches the
    parameter's own check."""

    regex = "[^/]+"

    def convert(self, value: str) -> str:
        return value

    def to_string(self, value: str) -> str:
        return str(value)


def segment_beside(*literals: str) -> str:
    """The name of a path convertor for a segment other than `literals`, registered once:
    `"/{experiment_id:" + segment_beside("compare") + "}"`."""
    excluded = "(?!(?:" + "|".join(re.escape(w) for w in literals) + ")$)[^/]+"

    class Beside(SegmentBeside):
        regex = excluded

    name = "beside_" + "_".join(literals)
    register_url_convertor(name, Beside())
    return name

"""Errors that carry their HTTP status, and the one JSON shape every error response has:

    {"detail": [{"loc": ["body", "solver", "params", "momentum"], "msg": "...", "type": "..."}]}

`loc` is the field path (FastAPI's convention: the first element says where the field was).
"""

from __future__ import annotations

from typing import Any

from service.training.errors import ErrorItem, item

# The most errors one answer lists where a request can hold thousands of them (a batch's or a
# sweep's specs): enough to fix in one round, without reading every spec past them.
MAX_ERRORS = 50


class GlidepathError(Exception):
    status_code = 400
    type_ = "bad_request"

    def __init__(
        self,
        msg: str,
        loc: list[str | int] | None = None,
        items: list[ErrorItem] | None = None,
        headers: dict[str, str] | None = None,
    ) -> None:
        super().__init__(msg)
        self.items = items or [item(loc or [], msg, self.type_)]
        self.headers = headers

    def body(self) -> dict[str, Any]:
        return {"detail": self.items}


class NotFound(GlidepathError):
    status_code = 404
    type_ = "not_found"


class Conflict(GlidepathError):
    status_code = 409
    type_ = "conflict"


class InvalidInput(GlidepathError):
    status_code = 422
    type_ = "invalid"

    @classmethod
    def of(cls, items: list[ErrorItem]) -> InvalidInput:
        return cls(items[0]["msg"], items=items)


class Unavailable(GlidepathError):
    status_code = 503
    type_ = "unavailable"

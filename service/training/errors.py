"""One item of the error shape every 4xx carries (`{"loc", "msg", "type"}`); the core's checks
return these so the API can render them unchanged."""

from __future__ import annotations

from typing import TypedDict


class ErrorItem(TypedDict):
    loc: list[str | int]
    msg: str
    type: str


def item(loc: list[str | int] | tuple[str | int, ...], msg: str, type_: str) -> ErrorItem:
    return {"loc": list(loc), "msg": msg, "type": type_}

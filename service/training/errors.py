"""One item of the error shape every 4xx carries (`{"loc", "msg", "type"}`); the core's checks
return these so the API can render them unchanged."""

from __future__ import annotations

from typing import Any, TypedDict


class ErrorItem(TypedDict):
    loc: list[str | int]
    msg: str
    type: str


def item(loc: list[str | int] | tuple[str | int, ...], msg: str, type_: str) -> ErrorItem:
    return {"loc": list(loc), "msg": msg, "type": type_}


def allowed(names: Any) -> str:
    return ", ".join(sorted(names))


def kwargs_errors(
    loc: list[str | int],
    kind: str,
    type_: str,
    params: dict[str, Any],
    allowed_kwargs: dict[str, Any],
    reserved: Any,
) -> list[ErrorItem]:
    """A 422 for each key of `params` that Glidepath sets itself (`reserved(kind, key)` says why)
    or that the class does not take; `loc` is where `params` sits."""
    errors = []
    for key in params:
        reason = reserved(kind, key)
        if reason:
            errors.append(
                item([*loc, key], f"{key!r} is not settable here: {reason}", "reserved_param")
            )
        elif key not in allowed_kwargs:
            errors.append(
                item(
                    [*loc, key],
                    f"{type_} has no parameter {key!r}; allowed: {allowed(allowed_kwargs)}",
                    "unknown_param",
                )
            )
    return errors

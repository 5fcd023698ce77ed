"""One error shape for every failure: {"detail": [{"loc", "msg", "type"}]}. Bad input is a 4xx,
a unique key taken by a concurrent request is a 409, a database that cannot be reached is a 503
with Retry-After, never a 500.

What FastAPI and Starlette answer themselves is put in the same shape and made exact: a body
that is not JSON is a 422 at `["body"]` saying why (FastAPI: a 400, or `["body", <offset>]`
"JSON decode error"), and so is a form Starlette cannot parse (a 400); a body of another media
type than the route reads is a 415 (FastAPI: a 422 that the body "should be a valid
dictionary"); a 405's `Allow` lists every method of the path (Starlette: only those of the first
route that matched it)."""

from __future__ import annotations

import re
from typing import Any

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from fastapi.routing import iter_route_contexts
from sqlalchemy.exc import DataError, DBAPIError, IntegrityError, OperationalError
from starlette.concurrency import run_in_threadpool
from starlette.exceptions import HTTPException as StarletteHTTPException
from starlette.routing import compile_path

from service.kit import after_schema
from service.kit.errors import MAX_ERRORS, ErrorItem, GlidepathError, item
from service.kit.limits import NUL
from service.kit.logging import get_logger
from service.kit.media_types import media_type, reads_json

log = get_logger(__name__)


def _json(
    status: int, items: list[ErrorItem], headers: dict[str, str] | None = None
) -> JSONResponse:
    return JSONResponse({"detail": items}, status_code=status, headers=headers)


# The order a 405's Allow lists methods in.
_METHODS = ("GET", "HEAD", "POST", "PUT", "PATCH", "DELETE", "OPTIONS")


def _path_methods(app: FastAPI) -> list[tuple[re.Pattern[str], set[str]]]:
    """(path regex, methods) of every route of `app`, routers included, built once per app."""
    table = getattr(app.state, "path_methods", None)
    if table is None:
        table = [
            (compile_path(r.path)[0], set(r.methods))
            for r in iter_route_contexts(app.routes)
            if r.path and r.methods
        ]
        app.state.path_methods = table
    return table


def _allowed_methods(request: Request, exc: StarletteHTTPException) -> str:
    """Every method some route serves at the request's path: FastAPI makes one route per
    method, and Starlette's 405 names only those of the first route whose path matched."""
    said = (getattr(exc, "headers", None) or {}).get("Allow", "")
    methods = {m.strip() for m in said.split(",") if m.strip()}
    for regex, route_methods in _path_methods(request.app):
        if regex.match(request.url.path):
            methods |= route_methods
    return ", ".join(sorted(methods, key=lambda m: (*_METHODS, m).index(m)))


def _unsupported_media_type(request: Request, errors: list[dict[str, Any]]) -> JSONResponse | None:
    """A 415 when the body failed because the route does not read its media type: FastAPI reads
    a JSON body only when it is declared JSON, else it validates the raw bytes (a body without a
    Content-Type, or `text/plain`, is "not a valid dictionary"); a form route finds no fields in
    a JSON body."""
    if not any(tuple(e.get("loc", ()))[:1] == ("body",) for e in errors):
        return None
    body_field = getattr(request.scope.get("route"), "body_field", None)
    length = request.headers.get("content-length", "")
    sent_body = (length.isdigit() and int(length) > 0) or "transfer-encoding" in request.headers
    if body_field is None or not sent_body:
        return None
    expected = str(getattr(body_field.field_info, "media_type", "application/json"))
    sent = media_type(request.headers.get("content-type"))
    if expected == "application/json":
        if reads_json(sent):
            return None
    elif sent in (expected, "application/x-www-form-urlencoded", "multipart/form-data"):
        return None  # a form route parses either form encoding
    said = f"Content-Type {sent}" if sent else "no Content-Type"
    return _json(
        415,
        [
            item(
                ["header", "content-type"],
                f"the body must be {expected}; got {said}",
                "unsupported_media_type",
            )
        ],
    )


def _not_json(cause: BaseException | None) -> str:
    if isinstance(cause, UnicodeDecodeError):
        return "it is not UTF-8 text"
    if isinstance(cause, RecursionError):
        return "it is nested too deeply"
    return str(cause) if cause else "it could not be parsed"


async def _beyond_schema(
    request: Request, exc: RequestValidationError, items: list[ErrorItem]
) -> list[ErrorItem]:
    """What the route's own checks find in the rest of a body its schema refused
    (`after_schema`): one 422 with every mistake. They may read the database; if they fail,
    the schema's errors are still the answer."""
    check = after_schema.check_for(getattr(request.scope.get("route"), "endpoint", None))
    if check is None or exc.body is None:
        return []
    try:
        return await run_in_threadpool(check, exc.body, items)
    except Exception:
        log.warning("after_schema_check_failed", path=request.url.path, exc_info=True)
        return []


def install(app: FastAPI) -> None:
    @app.exception_handler(GlidepathError)
    async def _domain(_: Request, exc: GlidepathError) -> JSONResponse:
        return _json(exc.status_code, exc.items, exc.headers)

    @app.exception_handler(RequestValidationError)
    async def _validation(request: Request, exc: RequestValidationError) -> JSONResponse:
        errors = list(exc.errors())
        unsupported = _unsupported_media_type(request, errors)
        if unsupported is not None:
            return unsupported
        items = []
        for e in errors:
            msg = str(e.get("msg", "invalid"))
            loc = list(e.get("loc", ()))
            if e.get("type") == "extra_forbidden":
                msg = "unknown field"
            elif e.get("type") == "json_invalid":  # FastAPI's loc is ["body", <char offset>]
                reason = (e.get("ctx") or {}).get("error", "malformed")
                msg = f"the body is not valid JSON: {reason} at character {loc[-1]}"
                loc = ["body"]
            items.append(item(loc, msg, str(e.get("type", "invalid"))))
        items += await _beyond_schema(request, exc, items)
        # A batch or sweep of a thousand broken specs: the first MAX_ERRORS, as the checks
        # beyond the schema stop at (Pydantic lists every one).
        return _json(422, items[:MAX_ERRORS])

    @app.exception_handler(StarletteHTTPException)
    async def _http(request: Request, exc: StarletteHTTPException) -> JSONResponse:
        if exc.status_code == 405:
            allow = _allowed_methods(request, exc)
            return _json(
                405,
                [
                    item(
                        [],
                        f"{request.method} is not allowed here; allowed: {allow}",
                        "method_not_allowed",
                    )
                ],
                {"Allow": allow},
            )
        if exc.status_code == 400 and exc.detail == "There was an error parsing the body":
            # FastAPI's answer when reading a JSON body raised something other than a JSON
            # decode error (bytes that are not UTF-8, nesting past Python's recursion limit).
            return _json(
                422,
                [
                    item(
                        ["body"],
                        f"the body is not valid JSON: {_not_json(exc.__cause__)}",
                        "json_invalid",
                    )
                ],
            )
        if exc.status_code == 400:
            # Starlette's answer to a form it cannot parse (a bad multipart body, too many
            # fields or files): bad input at the body, as every other.
            kind = media_type(request.headers.get("content-type")) or "the route's type"
            return _json(
                422,
                [item(["body"], f"the body is not valid {kind}: {exc.detail}", "body_invalid")],
            )
        return _json(
            exc.status_code,
            [item([], str(exc.detail), "http_error")],
            getattr(exc, "headers", None),
        )

    @app.exception_handler(OperationalError)
    async def _db_down(_: Request, exc: OperationalError) -> JSONResponse:
        log.warning("database_unavailable", error=str(exc).splitlines()[0][:200])
        return _json(
            503,
            [item([], "the database is unavailable; retry shortly", "unavailable")],
            {"Retry-After": "2"},
        )

    @app.exception_handler(IntegrityError)
    async def _conflict(_: Request, exc: IntegrityError) -> JSONResponse:
        # A unique key taken by a concurrent request that no service translated itself
        # (`kit.conflicts` gives the races it expects their own message or answer).
        log.warning("integrity_conflict", error=str(exc.orig).splitlines()[0][:200])
        return _json(
            409,
            [item([], "the request conflicts with existing data", "conflict")],
        )

    @app.exception_handler(DBAPIError)
    async def _db_error(_: Request, exc: DBAPIError) -> JSONResponse:
        if exc.connection_invalidated:
            return await _db_down(_, exc)  # type: ignore[arg-type]
        if isinstance(exc, DataError):
            # A value the database cannot hold (SQLSTATE class 22), from the request: above all
            # a NUL character, which PostgreSQL's text refuses wherever it is (a name, a tag, an
            # id in a path or a query). Bad input, never a 500.
            reason = str(exc.orig).splitlines()[0][:200]
            log.warning("database_refused_value", error=reason)
            if "NUL" in reason:
                reason = NUL
            return _json(422, [item([], f"a value cannot be stored: {reason}", "invalid")])
        log.exception("database_error")
        return _json(500, [item([], "internal database error", "internal")])

"""One error shape for every failure: {"detail": [{"loc", "msg", "type"}]}. Bad input is a 4xx,
a unique key taken by a concurrent request is a 409, a database that cannot be reached is a 503
with Retry-After, never a 500."""

from __future__ import annotations

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from sqlalchemy.exc import DBAPIError, IntegrityError, OperationalError
from starlette.exceptions import HTTPException as StarletteHTTPException

from service.kit.errors import ErrorItem, GlidepathError, item
from service.kit.logging import get_logger

log = get_logger(__name__)


def _json(
    status: int, items: list[ErrorItem], headers: dict[str, str] | None = None
) -> JSONResponse:
    return JSONResponse({"detail": items}, status_code=status, headers=headers)


def install(app: FastAPI) -> None:
    @app.exception_handler(GlidepathError)
    async def _domain(_: Request, exc: GlidepathError) -> JSONResponse:
        return _json(exc.status_code, exc.items, exc.headers)

    @app.exception_handler(RequestValidationError)
    async def _validation(_: Request, exc: RequestValidationError) -> JSONResponse:
        items = []
        for e in exc.errors():
            msg = str(e.get("msg", "invalid"))
            if e.get("type") == "extra_forbidden":
                msg = "unknown field"
            items.append(item(list(e.get("loc", ())), msg, str(e.get("type", "invalid"))))
        return _json(422, items)

    @app.exception_handler(StarletteHTTPException)
    async def _http(_: Request, exc: StarletteHTTPException) -> JSONResponse:
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
        log.exception("database_error")
        return _json(500, [item([], "internal database error", "internal")])

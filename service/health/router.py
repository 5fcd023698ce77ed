from __future__ import annotations

import os
from typing import Any

from fastapi import APIRouter, Request
from fastapi.responses import JSONResponse
from sqlalchemy import text

from service.artifacts import service as artifacts
from service.dispatch import broker
from service.kit.db import get_engine

router = APIRouter(tags=["health"])


@router.get("/healthz")
async def healthz() -> dict[str, str]:
    """Liveness: the process answers."""
    return {"status": "ok"}


def _check_db() -> dict[str, Any]:
    try:
        with get_engine().connect() as conn:
            conn.execute(text("SELECT 1"))
        return {"ok": True}
    except Exception as exc:
        return {"ok": False, "error": str(exc).splitlines()[0][:200]}


def _process(request: Request) -> dict[str, Any]:
    housekeeping = getattr(request.app.state, "housekeeping", None)  # set by the app's lifespan
    return {"pid": os.getpid(), "housekeeping": bool(housekeeping and housekeeping.leading)}


@router.get(
    "/readyz", responses={503: {"description": "Database, broker or artifact store unreachable"}}
)
def readyz(request: Request) -> JSONResponse:
    """Readiness: the database, the broker and the artifact store all answer. `process`: which
    API process answered, and whether it is the one running housekeeping."""
    checks = {
        "database": _check_db(),
        "broker": broker.check(),
        "artifacts": artifacts.store().check(),
    }
    ready = all(c["ok"] for c in checks.values())
    return JSONResponse(
        {
            "status": "ready" if ready else "unavailable",
            "checks": checks,
            "process": _process(request),
        },
        status_code=200 if ready else 503,
        headers=None if ready else {"Retry-After": "2"},
    )

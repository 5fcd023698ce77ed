"""The dashboard's HTML routes and its static files.

Every page is the same `index.html`; `static/js/main.js` renders by path, so each route here is a
deep link a person can share (CONTRACT.md). The pages are open even when `GLIDEPATH_API_TOKENS`
is set: they hold no data, and the browser sends the token with its `/v1` calls.
"""

from __future__ import annotations

import inspect
import json
from functools import cache
from pathlib import Path

from fastapi import APIRouter, FastAPI, Request
from fastapi.responses import HTMLResponse, Response
from fastapi.staticfiles import StaticFiles
from starlette.exceptions import HTTPException

from service.dashboard.docs import router as docs_router
from service.training.status import FINAL, OK, ExperimentStatus, RangeTestStatus

STATIC = Path(__file__).parent / "static"
INDEX = STATIC / "index.html"

router = APIRouter(include_in_schema=False)

# Revalidate the page shell on every load, so a new release's module URLs are picked up at once.
_HEADERS = {"Cache-Control": "no-cache"}


@cache
def _page() -> str:
    """index.html with the service's vocabulary (run statuses, which are final, which ended
    well, and the fewer a range test takes) inlined, so the scripts read it instead of keeping
    their own lists."""
    vocabulary = {
        "statuses": list(ExperimentStatus),
        "range_test_statuses": list(RangeTestStatus),
        "final": sorted(FINAL),
        "ok": sorted(OK),
    }
    tag = f'<script id="vocabulary" type="application/json">{json.dumps(vocabulary)}</script>'
    return INDEX.read_text().replace("</head>", f"  {tag}\n</head>", 1)


def _index() -> HTMLResponse:
    return HTMLResponse(_page(), headers=_HEADERS)


@router.get("/")
def experiments_page() -> HTMLResponse:
    return _index()


@router.get("/new")
def create_page() -> HTMLResponse:
    return _index()


@router.get("/experiments/{experiment_id:int}")
def experiment_page(experiment_id: int) -> HTMLResponse:
    return _index()


@router.get("/compare")
def compare_page() -> HTMLResponse:
    return _index()


@router.get("/sweeps")
def sweeps_page() -> HTMLResponse:
    return _index()


@router.get("/sweeps/{sweep_id:int}")
def sweep_page(sweep_id: int) -> HTMLResponse:
    return _index()


@router.get("/range-tests")
def range_tests_page() -> HTMLResponse:
    return _index()


@router.get("/range-tests/{test_id:int}")
def range_test_page(test_id: int) -> HTMLResponse:
    return _index()


@router.get("/workers")
def workers_page() -> HTMLResponse:
    return _index()


@router.get("/tokens")
def tokens_page() -> HTMLResponse:
    """Admins make and revoke tokens here (the page itself holds nothing secret)."""
    return _index()


def _wants_page(request: Request) -> bool:
    """A browser asking for a page (a mistyped or stale link): not the API, not an asset."""
    path = request.url.path
    return (
        request.method in ("GET", "HEAD")
        and "text/html" in request.headers.get("accept", "")
        and not path.startswith(("/v1/", "/static/"))
        and path not in ("/v1", "/metrics", "/healthz", "/readyz", "/openapi.json")
    )


def install(app: FastAPI) -> None:
    """The page routes, `/docs` and `/static` (no prefix clash: the API is under `/v1`, health
    at `/healthz` and `/readyz`, its schema at `/openapi.json`), and the dashboard's own 404:
    a browser that follows a link to no page (`/experiment/3`, `/sweeps/abc`) gets the shell,
    which says "Not found" with a way back, not the API's JSON; everything else gets the API's
    404 in its error shape, as before."""
    app.include_router(router)
    app.include_router(docs_router)  # /docs from the vendored Swagger UI
    app.mount("/static", StaticFiles(directory=STATIC, follow_symlink=False), name="static")
    api_error = app.exception_handlers[HTTPException]

    async def not_found(request: Request, exc: Exception) -> Response:
        if _wants_page(request):
            return HTMLResponse(_page(), status_code=404, headers=_HEADERS)
        response = api_error(request, exc)  # the kit's handler: a coroutine function
        return await response if inspect.isawaitable(response) else response

    app.add_exception_handler(404, not_found)

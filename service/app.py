"""The FastAPI application: routers per domain, one error shape, OpenAPI at /docs."""

from __future__ import annotations

import threading
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

from fastapi import Depends, FastAPI

from service.batches.router import router as batches_router
from service.config import settings
from service.dashboard.router import install as install_dashboard
from service.datasets.router import router as datasets_router
from service.dispatch import service as dispatch
from service.events.listener import Listener
from service.events.router import router as events_router
from service.experiments.catalog_router import router as catalog_router
from service.experiments.polls import PollCache
from service.experiments.router import router as experiments_router
from service.health.router import router as health_router
from service.housekeeping import Housekeeping
from service.kit import exception_handlers
from service.kit.auth import RESPONSES, Authenticator, require_role
from service.kit.limits import BodyLimit, NoNul, RequestTimeout, refuse_nul_body
from service.kit.logging import get_logger
from service.kit.request_id import RequestId
from service.kit.security_headers import SecurityHeaders
from service.lr_range.router import router as lr_range_router
from service.monitoring.http_metrics import HttpMetrics
from service.monitoring.router import router as metrics_router
from service.schedules.router import router as schedules_router
from service.sweeps.router import router as sweeps_router
from service.tokens.router import router as tokens_router
from service.tokens.service import DatabaseTokens
from service.training import checks
from service.workers.router import router as workers_router

log = get_logger(__name__)


def _warm_up() -> None:
    """What the first request would pay once: torch's first optimizer (a spec's check, ~1 s)
    and the broker's first send (its connection and queues, ~25 ms; the background sender)."""
    checks.warm()
    try:
        dispatch.warm()
    except Exception:  # the broker is away: the first send connects (or the outbox retries)
        log.warning("broker_warm_up_failed", exc_info=True)


@asynccontextmanager
async def lifespan(app: FastAPI) -> AsyncIterator[None]:
    housekeeping = app.state.housekeeping = Housekeeping()  # /readyz: does this process lead?
    housekeeping.start()
    # Behind the start, not before it: the process answers (/readyz) while it warms up.
    threading.Thread(target=_warm_up, name="warm-up", daemon=True).start()
    app.state.events.end_streams_on_exit()  # open event streams would hold the stop up
    app.state.polls.start(settings.effective_database_url)
    # The metrics pages' cache follows the listener's notifications (PostgreSQL).
    app.state.events.start(only_with_notifications=True)
    yield
    await app.state.events.close()
    app.state.polls.stop()
    housekeeping.stop()


def create_app() -> FastAPI:
    app = FastAPI(
        lifespan=lifespan,
        title="Glidepath",
        version="0.1.0",
        description="Runs PyTorch training experiments and tells you what the learning rate did.",
        docs_url=None,  # /docs is the dashboard's, from vendored assets (dashboard/docs.py)
        redoc_url=None,
        # FastAPI's own OpenTelemetry hooks off: this service's telemetry is Prometheus metrics
        # and structured logs, and the hooks looked up three providers (environment reads) in
        # every request to find none configured (~3 % of a cached poll's CPU).
        telemetry={"tracing": False, "metrics": False, "logs": False},
    )
    exception_handlers.install(app)
    # Added first, so innermost: their 413s and 504s carry a request id and are counted.
    app.add_middleware(RequestTimeout)
    app.add_middleware(BodyLimit, uploads={"/v1/datasets"})
    app.add_middleware(NoNul)
    app.add_middleware(RequestId)
    app.add_middleware(HttpMetrics)  # outside RequestId: its time is the request's too
    app.add_middleware(SecurityHeaders)  # CSP, nosniff, no framing: every response
    app.include_router(health_router)
    # Roles by method (kit/roles.py); open while no token exists (no env token, no table row).
    app.state.auth = Authenticator(DatabaseTokens())
    guarded = [Depends(require_role), Depends(refuse_nul_body)]
    for router in (
        experiments_router,
        batches_router,
        sweeps_router,
        datasets_router,
        schedules_router,
        lr_range_router,
        catalog_router,
        workers_router,
        events_router,
        metrics_router,  # /metrics: the read role
        tokens_router,
    ):
        app.include_router(router, dependencies=guarded, responses=RESPONSES)
    # Live events and the metrics pages' cache: one listener and one cache per API process.
    app.state.polls = PollCache()
    app.state.events = Listener(app.state.polls)
    install_dashboard(app)  # pages and /static: open, the browser sends the token to /v1
    return app


app = create_app()

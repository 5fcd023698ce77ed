"""GET /metrics: the Prometheus text format (docs/metrics.md). Readable by the `read` role."""

from __future__ import annotations

from collections.abc import Iterable

from fastapi import APIRouter
from fastapi.responses import Response
from prometheus_client import generate_latest
from prometheus_client.metrics_core import Metric
from prometheus_client.registry import Collector
from sqlalchemy.orm import Session

from service.kit.deps import in_session
from service.monitoring import collector, http_metrics

router = APIRouter(tags=["monitoring"])

# The classic text format every Prometheus reads (all names here are plain ASCII).
CONTENT_TYPE = "text/plain; version=0.0.4; charset=utf-8"


class _Families(Collector):
    def __init__(self, session: Session) -> None:
        self.families = collector.collect(session)

    def collect(self) -> Iterable[Metric]:
        return iter(self.families)


def render(session: Session) -> bytes:
    """The database's and broker's figures, then the HTTP ones. The database is read before a
    byte is written, so a database error is the API's usual 503, not half a page."""
    figures = _Families(session)
    return generate_latest(figures) + generate_latest(http_metrics.source())


@router.get(
    "/metrics",
    response_class=Response,
    responses={
        200: {
            "content": {"text/plain": {"schema": {"type": "string"}}},
            "description": "The Prometheus text format, version 0.0.4 (docs/metrics.md)",
        }
    },
)
async def metrics() -> Response:
    """Runs by status, queue depth and wait, epochs, decisions, workers, HTTP requests. One hop
    to the thread pool for the whole scrape, as every route."""

    return Response(await in_session(render), media_type=CONTENT_TYPE)

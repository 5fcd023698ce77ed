"""HTTP request metrics, by route template (`/v1/experiments/{experiment_id}`, never the path a
client sent: one series per route, not per run).

A plain ASGI middleware (no BaseHTTPMiddleware): it wraps `send` and nothing else, so streamed
responses (downloads, Server-Sent Events) pass through unbuffered. A request is counted, and its
duration taken, when its response starts: the time to the first byte, so a stream held open for
an hour is not an hour-long request. The same moment logs the request (access_log.py).

These figures are the process's own. With PROMETHEUS_MULTIPROC_DIR set in the environment of
every API process (an empty folder per start, shared by the processes of one machine),
prometheus_client keeps them in files there and a scrape of any process sums them all
(docs/metrics.md)."""

from __future__ import annotations

import os
import re
import time
import weakref

from fastapi import FastAPI
from prometheus_client import CollectorRegistry, Counter, Histogram, disable_created_metrics
from prometheus_client.multiprocess import MultiProcessCollector
from prometheus_client.registry import Collector
from starlette.routing import compile_path
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from service.monitoring import access_log

METHODS = frozenset({"GET", "HEAD", "POST", "PUT", "PATCH", "DELETE", "OPTIONS"})
UNMATCHED = "unmatched"  # no route: one series for every unknown path, however many are tried
# From a cached GET's milliseconds to a large upload's seconds.
DURATION_BUCKETS = (0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30)

# No `_created` series: a timestamp per label set, twice the lines, that no dashboard here reads
# (and multiprocess mode has none). Process-wide, and this is the process's only client.
disable_created_metrics()
REGISTRY = CollectorRegistry(auto_describe=True)
REQUESTS = Counter(
    "glidepath_http_requests",
    "HTTP requests answered, by method, route template and status code.",
    ["method", "route", "status"],
    registry=REGISTRY,
)
DURATION = Histogram(
    "glidepath_http_request_duration_seconds",
    "Time from a request's arrival to its response's start, by method and route template.",
    ["method", "route"],
    buckets=DURATION_BUCKETS,
    registry=REGISTRY,
)


def source() -> Collector:
    """Where a scrape reads the HTTP figures: every process's files in multiprocess mode, else
    this process's own."""
    path = os.environ.get("PROMETHEUS_MULTIPROC_DIR")
    if not path:
        return REGISTRY
    registry = CollectorRegistry()
    MultiProcessCollector(registry, path=path)
    return registry


def route_of(scope: Scope, root_path: str) -> str:
    """The template of the route that answered: a FastAPI route's path format, or a mount's
    prefix (the router sets `root_path` to it) with `/{path}`, or `unmatched`."""
    route = scope.get("route")
    template = getattr(route, "path_format", None)
    if isinstance(template, str):
        return template
    mounted = str(scope.get("root_path", ""))
    if mounted != root_path and mounted.startswith(root_path):
        return mounted.removeprefix(root_path) + "/{path}"
    # Answered before routing (a body past its limit is a 413 from its Content-Length): the
    # route it was for, by the API's own list of path templates (its OpenAPI paths).
    app = scope.get("app")
    if isinstance(app, FastAPI):
        path = str(scope.get("path", ""))
        for pattern, template in _templates(app):
            if pattern.match(path):
                return template
    return UNMATCHED


_compiled: weakref.WeakKeyDictionary[FastAPI, list[tuple[re.Pattern[str], str]]] = (
    weakref.WeakKeyDictionary()
)


def _templates(app: FastAPI) -> list[tuple[re.Pattern[str], str]]:
    found = _compiled.get(app)
    if found is None:
        found = _compiled[app] = [(compile_path(t)[0], t) for t in app.openapi()["paths"]]
    return found


class HttpMetrics:
    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        start = time.perf_counter()
        root_path = str(scope.get("root_path", ""))
        method = scope["method"] if scope["method"] in METHODS else "other"
        answered = False

        def record(status: int) -> None:
            route, seconds = route_of(scope, root_path), time.perf_counter() - start
            REQUESTS.labels(method, route, str(status)).inc()
            DURATION.labels(method, route).observe(seconds)
            access_log.request_answered(method, route, status, seconds, scope)

        async def send_counted(message: Message) -> None:
            nonlocal answered
            if message["type"] == "http.response.start" and not answered:
                answered = True
                record(int(message["status"]))
            await send(message)

        try:
            await self.app(scope, receive, send_counted)
        except Exception:
            # The error middleware outside answers 500; a cancelled request (the client left)
            # is no Exception and answered nothing.
            if not answered:
                record(500)
            raise

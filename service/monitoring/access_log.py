"""One structured `request` event per answered HTTP request, in place of uvicorn's access line.

A script waiting for a run polls it every few milliseconds to seconds, and a dashboard every
second: uvicorn logged each of those answers at INFO, a formatted line written per poll that cost
~0.15 ms of the API's CPU in a 0.9 ms cached poll (on a small machine, CPU taken from the
training being polled). Here a successful read (GET or HEAD answered below 400) is a DEBUG event,
like Celery's own line per task; what changes something and every refused or failed request stay
at INFO. The event carries the route template, so requests group by route as the metrics do."""

from __future__ import annotations

import logging

from starlette.types import Scope

from service.kit.logging import get_logger

NAME = "glidepath.access"
log = get_logger(NAME)
_level_of = logging.getLogger(NAME)  # asked first: a filtered event costs no formatting

READS = frozenset({"GET", "HEAD"})


def request_answered(method: str, route: str, status: int, seconds: float, scope: Scope) -> None:
    level = logging.DEBUG if method in READS and status < 400 else logging.INFO
    if not _level_of.isEnabledFor(level):
        return
    client = scope.get("client")
    log.log(
        level,
        "request",
        method=method,
        path=scope.get("path"),
        route=route,
        status=status,
        ms=round(seconds * 1000, 1),
        client=f"{client[0]}:{client[1]}" if client else None,
    )

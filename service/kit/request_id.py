"""A request id per HTTP request: taken from `X-Request-ID` when the caller sends a sane one,
made up otherwise, bound to every log event of the request and sent back in the response.
Plain ASGI (no BaseHTTPMiddleware): it costs a header lookup, and streams pass through."""

from __future__ import annotations

import itertools
import os
import re

import structlog
from starlette.types import ASGIApp, Message, Receive, Scope, Send

HEADER = b"x-request-id"
_SANE = re.compile(rb"^[A-Za-z0-9._:-]{1,64}$")


# A made-up id is 32 hex digits: this process's random half, then a counter. Unique as uuid4s
# are, without a random read per request (a uuid4 was ~4 % of a cached poll's CPU in the API).
_prefix = os.urandom(8).hex()
_serial = itertools.count()


def _new_prefix() -> None:
    """A forked child's own random half."""
    global _prefix, _serial
    _prefix, _serial = os.urandom(8).hex(), itertools.count()


os.register_at_fork(after_in_child=_new_prefix)


def new_id() -> bytes:
    return f"{_prefix}{next(_serial):016x}".encode()


class RequestId:
    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        given = dict(scope["headers"]).get(HEADER, b"")
        rid = given if _SANE.match(given) else new_id()

        async def send_with_id(message: Message) -> None:
            if message["type"] == "http.response.start":
                message["headers"] = [*message.get("headers", []), (HEADER, rid)]
            await send(message)

        with structlog.contextvars.bound_contextvars(request_id=rid.decode()):
            await self.app(scope, receive, send_with_id)

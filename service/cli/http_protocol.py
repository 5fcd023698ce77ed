"""uvicorn's HTTP protocol as `glidepath api` serves with it (an import string, so each of
`--workers N` processes loads it): httptools (C; about half of h11's CPU per request, which is
most of what a cached poll costs), or h11 where httptools is not installed. Nagle's algorithm
off on every connection, and the answer past the connection limit in the API's one error shape.

TCP_NODELAY: with several processes uvicorn binds the listening socket itself, as protocol 0
rather than IPPROTO_TCP, and asyncio then leaves TCP_NODELAY off on the connections it accepts
(it sets it only on TCP-protocol sockets). A response goes out as two writes (the head, then the
body): the second waited for the client's delayed ACK, ~40 ms per request on Linux (one poller
alone: p50 56 ms with 2 processes against 14 ms with one).

The limit: uvicorn answers a request past `limit_concurrency` with a plain-text 503 of its own
(`flow_control.service_unavailable`), outside `{"detail": [...]}`. Here uvicorn's check is off
and the same check, on the same counts, picks `kit.limits.over_capacity` instead of the app.

A request uvicorn cannot parse got its plain-text 400 "Invalid HTTP request received.", a long
query string (past GLIDEPATH_API_MAX_HEADER_BYTES) included: here it is a 400 in the one error
shape, `type` request_too_large or bad_request, and the connection closes as uvicorn's does.
(400 rather than 431 or 414: clients and fuzzers read those as the request accepted.)"""

from __future__ import annotations

import asyncio
import json
import socket
from typing import Any, ClassVar

from uvicorn.protocols.http.h11_impl import H11Protocol

from service.config import settings
from service.kit.limits import over_capacity

try:
    from uvicorn.protocols.http.httptools_impl import HttpToolsProtocol
except ImportError:  # httptools not installed: h11 alone
    HttpToolsProtocol = None  # type: ignore[assignment,misc]


class ApiProtocol:
    """What `glidepath api` adds to uvicorn's protocol classes (mixed in before them)."""

    # Requests this process has let into the app and not yet answered (one server a process).
    admitted: ClassVar[int] = 0
    connection_limit: int | None
    limit_concurrency: int | None
    connections: set[Any]
    app: Any
    logger: Any
    transport: Any

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.connection_limit = self.limit_concurrency
        self.limit_concurrency = None  # uvicorn's own check, and its plain-text answer, off
        self.app = self._limited(self.app)

    def _limited(self, app: Any) -> Any:
        """`app`, or `over_capacity` while this process has `connection_limit` connections open
        or requests in the app. Counted as requests start, not as uvicorn counts its tasks when
        it reads them: a burst read in one go would all see the whole burst, and all be refused."""
        limit = self.connection_limit
        if limit is None:
            return app
        cls = ApiProtocol
        refuse = over_capacity(limit)

        async def limited(scope: Any, receive: Any, send: Any) -> None:
            if scope["type"] == "http" and (
                len(self.connections) >= limit or cls.admitted >= limit
            ):
                self.logger.warning("Exceeded concurrency limit.")
                await refuse(scope, receive, send)
                return
            cls.admitted += 1
            try:
                await app(scope, receive, send)
            finally:
                cls.admitted -= 1

        return limited

    def send_400_response(self, msg: str) -> None:
        if self._head_too_large():
            kind = "request_too_large"
            text = (f"the request line and headers are over {settings.api_max_header_bytes} "
                    "bytes (GLIDEPATH_API_MAX_HEADER_BYTES): a query string that long is not a "
                    "request the API takes")  # fmt: skip
        else:
            kind, text = "bad_request", "the request is not valid HTTP/1.1, so it was not read"
        self.logger.warning(text)
        body = json.dumps({"detail": [{"loc": [], "msg": text, "type": kind}]}).encode()
        head = (b"HTTP/1.1 400 Bad Request\r\ncontent-type: application/json\r\n"
                b"content-length: %d\r\nconnection: close\r\n\r\n") % len(body)  # fmt: skip
        self.transport.write(head + body)
        self.transport.close()

    def _head_too_large(self) -> bool:
        """h11 refuses a receive buffer past its limit; httptools, our count (below)."""
        conn = getattr(self, "conn", None)
        if conn is not None:
            return len(getattr(conn, "_receive_buffer", b"")) > settings.api_max_header_bytes
        return getattr(self, "_header_bytes", 0) > settings.api_max_header_bytes

    def connection_made(self, transport: asyncio.Transport) -> None:
        sock = transport.get_extra_info("socket")
        if sock is not None and sock.family in (socket.AF_INET, socket.AF_INET6):
            sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        super().connection_made(transport)  # type: ignore[misc]


class ApiH11Protocol(ApiProtocol, H11Protocol):  # type: ignore[misc]
    pass


if HttpToolsProtocol is not None:

    class ApiHttpToolsProtocol(ApiProtocol, HttpToolsProtocol):  # type: ignore[misc]
        """With GLIDEPATH_API_MAX_HEADER_BYTES enforced as h11 does (httptools has no limit):
        a request line and headers past it are a 400 and the connection closes, before the
        app sees the request."""

        def on_message_begin(self) -> None:
            super().on_message_begin()
            self._header_bytes = 0

        def on_url(self, url: bytes) -> None:
            self._count(len(url))
            super().on_url(url)

        def on_header(self, name: bytes, value: bytes) -> None:
            self._count(len(name) + len(value) + 4)
            super().on_header(name, value)

        def _count(self, n: int) -> None:
            self._header_bytes += n
            if self._header_bytes > settings.api_max_header_bytes:
                raise ValueError("request line and headers too large")  # a parser error

    PROTOCOL = "service.cli.http_protocol:ApiHttpToolsProtocol"
else:
    PROTOCOL = "service.cli.http_protocol:ApiH11Protocol"

"""uvicorn's h11 protocol as `glidepath api` serves with it (an import string, so each of
`--workers N` processes loads it): Nagle's algorithm off on every connection, and the answer past
the connection limit in the API's one error shape.

TCP_NODELAY: with several processes uvicorn binds the listening socket itself, as protocol 0
rather than IPPROTO_TCP, and asyncio then leaves TCP_NODELAY off on the connections it accepts
(it sets it only on TCP-protocol sockets). A response goes out as two writes (the head, then the
body): the second waited for the client's delayed ACK, ~40 ms per request on Linux (one poller
alone: p50 56 ms with 2 processes against 14 ms with one).

The limit: uvicorn answers a request past `limit_concurrency` with a plain-text 503 of its own
(`flow_control.service_unavailable`), outside `{"detail": [...]}`. Here uvicorn's check is off
and the same check, on the same counts, picks `kit.limits.over_capacity` instead of the app."""

from __future__ import annotations

import asyncio
import socket
from typing import Any, ClassVar

from uvicorn.protocols.http.h11_impl import H11Protocol

from service.kit.limits import over_capacity


class ApiH11Protocol(H11Protocol):
    # Requests this process has let into the app and not yet answered (one server a process).
    admitted: ClassVar[int] = 0

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
        cls = type(self)
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

    def connection_made(self, transport: asyncio.Transport) -> None:  # type: ignore[override]
        sock = transport.get_extra_info("socket")
        if sock is not None and sock.family in (socket.AF_INET, socket.AF_INET6):
            sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        super().connection_made(transport)

"""uvicorn's h11 protocol with Nagle's algorithm off on every connection, which `glidepath api`
serves with (an import string, so each of `--workers N` processes loads it).

With several processes uvicorn binds the listening socket itself, as protocol 0 rather than
IPPROTO_TCP, and asyncio then leaves TCP_NODELAY off on the connections it accepts (it sets it
only on TCP-protocol sockets). A response goes out as two writes (the head, then the body): the
second waited for the client's delayed ACK, ~40 ms per request on Linux (one poller alone: p50
56 ms with 2 processes against 14 ms with one)."""

from __future__ import annotations

import asyncio
import socket

from uvicorn.protocols.http.h11_impl import H11Protocol


class NoDelayH11Protocol(H11Protocol):
    def connection_made(self, transport: asyncio.Transport) -> None:  # type: ignore[override]
        sock = transport.get_extra_info("socket")
        if sock is not None and sock.family in (socket.AF_INET, socket.AF_INET6):
            sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        super().connection_made(transport)

"""Past its connection limit (GLIDEPATH_API_LIMIT_CONCURRENCY) an API process answers 503 in the
one error shape `{"detail": [...]}` with Retry-After, not uvicorn's plain-text "Service
Unavailable". A real uvicorn server on a port, with the protocol `glidepath api` serves with
(service/cli/http_protocol.py) and a limit of 2; the app is a stand-in that can hold a request
open, as an event stream does."""

from __future__ import annotations

import asyncio
import json
import socket
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

import httpx
import pytest
import uvicorn

from service.cli.processes import HTTP_PROTOCOL
from tests.support.stack import free_port

LIMIT = 2


class App:
    """`/` answers at once; `/hold` answers once released (an open stream, as it were)."""

    def __init__(self) -> None:
        self.release = threading.Event()
        self.seen: list[str] = []

    async def __call__(self, scope: Any, receive: Any, send: Any) -> None:
        assert scope["type"] == "http"
        self.seen.append(scope["path"])
        if scope["path"] == "/hold":
            while not self.release.is_set():
                await asyncio.sleep(0.01)
        await send({"type": "http.response.start", "status": 200,
                    "headers": [(b"content-type", b"text/plain")]})  # fmt: skip
        await send({"type": "http.response.body", "body": b"ok"})


@pytest.fixture
def served() -> Iterator[tuple[str, App]]:
    with serving(HTTP_PROTOCOL) as running:
        yield running


@contextmanager
def serving(protocol: str) -> Iterator[tuple[str, App]]:
    app = App()
    port = free_port()
    config = uvicorn.Config(app, host="127.0.0.1", port=port, http=protocol,
                            limit_concurrency=LIMIT, lifespan="off", log_config=None)  # fmt: skip
    server = uvicorn.Server(config)
    thread = threading.Thread(target=server.run, daemon=True)
    thread.start()
    deadline = time.monotonic() + 10
    while not server.started:
        assert time.monotonic() < deadline and thread.is_alive(), "server did not start"
        time.sleep(0.02)
    try:
        yield f"http://127.0.0.1:{port}", app
    finally:
        app.release.set()
        server.should_exit = True
        thread.join(timeout=10)


def assert_over_capacity(r: httpx.Response) -> None:
    assert r.status_code == 503
    assert r.headers["content-type"] == "application/json"
    assert r.headers["retry-after"] == "1"
    assert r.json() == {
        "detail": [
            {
                "loc": [],
                "msg": f"this API process is serving its limit of {LIMIT} connections "
                "(GLIDEPATH_API_LIMIT_CONCURRENCY); retry shortly",
                "type": "over_capacity",
            }
        ]
    }


def test_a_connection_past_the_limit_gets_the_error_shape_then_room_again(
    served: tuple[str, App],
) -> None:
    url, app = served
    with httpx.Client(base_url=url) as first, httpx.Client(base_url=url) as second:
        assert first.get("/").status_code == 200  # its connection stays open (keep-alive)
        assert_over_capacity(second.get("/"))  # the second connection: 2 of 2
        assert app.seen == ["/"]  # the app never saw the refused request
    with httpx.Client(base_url=url) as third:  # the others closed: room again
        assert third.get("/").text == "ok"


def test_a_held_request_counts_until_it_is_answered(served: tuple[str, App]) -> None:
    url, app = served
    with httpx.Client(base_url=url, timeout=10) as held:
        answers: list[httpx.Response] = []
        waiting = threading.Thread(target=lambda: answers.append(held.get("/hold")))
        waiting.start()
        deadline = time.monotonic() + 10
        while app.seen != ["/hold"]:
            assert time.monotonic() < deadline
            time.sleep(0.01)
        with httpx.Client(base_url=url) as other:
            assert_over_capacity(other.get("/"))
        app.release.set()
        waiting.join(timeout=10)
        assert answers[0].text == "ok"


@pytest.mark.parametrize("protocol", ["ApiHttpToolsProtocol", "ApiH11Protocol"])
def test_a_request_too_long_or_not_http_is_refused_in_the_error_shape(protocol: str) -> None:
    """A query string past GLIDEPATH_API_MAX_HEADER_BYTES, or anything that is not HTTP, is a 400
    in the one error shape `{"detail": [...]}` (uvicorn's was plain text); the app never
    sees either, and the server goes on. With httptools (installed) and h11 (where it is not;
    h11 counts only a head still incomplete, so one sent in a single write may pass)."""
    with serving(f"service.cli.http_protocol:{protocol}") as (url, app):
        if protocol == "ApiHttpToolsProtocol":
            long = httpx.get(f"{url}/v1/experiments", params={"cursor": "A" * 20_000})
            assert long.status_code == 400 and long.headers["connection"] == "close"
            [error] = long.json()["detail"]
            assert error["type"] == "request_too_large"
            assert "GLIDEPATH_API_MAX_HEADER_BYTES" in error["msg"]
        not_http(url)
        assert app.seen == []
        assert httpx.get(f"{url}/", params={"cursor": "A" * 1000}).status_code == 200


def not_http(url: str) -> None:
    host, port = url.removeprefix("http://").split(":")
    with socket.create_connection((host, int(port)), timeout=10) as raw:
        raw.sendall(b"NOT HTTP AT ALL\r\n\r\n")
        answer = b""
        while chunk := raw.recv(4096):
            answer += chunk
    head, body = answer.split(b"\r\n\r\n", 1)
    assert head.startswith(b"HTTP/1.1 400 ")
    assert json.loads(body)["detail"][0]["type"] == "bad_request"

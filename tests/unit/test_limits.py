"""service/kit/limits.py on a small Starlette app, driven through ASGI directly so that the test
decides when each body chunk arrives: body-size limits (declared and streamed, at and past the
limit) and request timeouts (a slow handler is a 504; a slow stream, a slow upload and a response
already begun are not cut)."""

from __future__ import annotations

import asyncio
import json
import time
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from typing import Any

import pytest
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse, Response, StreamingResponse
from starlette.routing import Route
from starlette.types import ASGIApp, Message

from service.config import settings
from service.kit.limits import FORM_SLACK, BodyLimit, RequestTimeout


async def echo(request: Request) -> Response:
    body = await request.body()
    return JSONResponse({"bytes": len(body)})


async def slow(request: Request) -> Response:
    await asyncio.sleep(float(request.query_params["s"]))
    return JSONResponse({"slept": True})


def blocking(request: Request) -> Response:  # a sync handler: Starlette runs it in a thread
    time.sleep(float(request.query_params["s"]))
    return JSONResponse({"slept": True})


async def stream(request: Request) -> Response:
    async def chunks() -> AsyncIterator[bytes]:
        for i in range(4):
            await asyncio.sleep(0.1)
            yield f"data: {i}\n\n".encode()

    return StreamingResponse(chunks(), media_type="text/event-stream")


def make_app() -> ASGIApp:
    app = Starlette(
        routes=[
            Route("/echo", echo, methods=["POST"]),
            Route("/upload", echo, methods=["POST"]),
            Route("/slow", slow),
            Route("/blocking", blocking),
            Route("/stream", stream),
        ]
    )
    return BodyLimit(RequestTimeout(app), uploads={"/upload"})


@dataclass
class Answer:
    status: int = 0
    body: bytes = b""
    chunks: list[tuple[float, bytes]] = field(default_factory=list)  # (seconds, body) as sent
    seconds: float = 0.0  # request sent → response complete

    def json(self) -> Any:
        return json.loads(self.body)


def call(
    path: str,
    method: str = "GET",
    chunks: tuple[bytes, ...] = (),
    declare: bool = True,
    gap_s: float = 0.0,
) -> Answer:
    """One request; the body in `chunks`, `gap_s` apart, with a Content-Length when `declare`
    (chunked transfer otherwise)."""
    path, _, query = path.partition("?")
    length = sum(len(c) for c in chunks)
    headers = (
        [(b"content-length", str(length).encode())] if declare
        else [(b"transfer-encoding", b"chunked")]
    )  # fmt: skip
    scope = {
        "type": "http", "method": method, "path": path, "raw_path": path.encode(),
        "query_string": query.encode(), "headers": headers if chunks else [],
        "http_version": "1.1", "scheme": "http", "server": ("test", 80), "client": ("c", 1),
        "root_path": "",
    }  # fmt: skip
    answer = Answer()
    pending = list(chunks) or [b""]
    done = asyncio.Event()

    async def receive() -> Message:
        if not pending:
            await done.wait()
            return {"type": "http.disconnect"}
        if gap_s:
            await asyncio.sleep(gap_s)
        chunk = pending.pop(0)
        return {"type": "http.request", "body": chunk, "more_body": bool(pending)}

    async def send(message: Message) -> None:
        if message["type"] == "http.response.start":
            answer.status = message["status"]
        elif message["type"] == "http.response.body":
            answer.body += message.get("body", b"")
            answer.chunks.append((time.monotonic() - t0, message.get("body", b"")))
            if not message.get("more_body"):
                answer.seconds = time.monotonic() - t0
                done.set()

    async def run() -> None:
        await make_app()(scope, receive, send)

    t0 = time.monotonic()
    asyncio.run(run())
    return answer


@pytest.fixture
def limits(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(settings, "max_json_bytes", 1000)
    monkeypatch.setattr(settings, "max_upload_mb", 1)
    monkeypatch.setattr(settings, "request_timeout_s", 0.3)


def too_large(answer: Answer, loc: list[str], setting: str) -> None:
    assert answer.status == 413, answer.body
    [item] = answer.json()["detail"]
    assert item["loc"] == loc and item["type"] == "too_large"
    assert setting in item["msg"]


@pytest.mark.usefixtures("limits")
@pytest.mark.parametrize("declare", [True, False], ids=["content-length", "chunked"])
def test_a_json_body_at_the_limit_passes_one_byte_more_is_413(declare: bool) -> None:
    at = call("/echo", "POST", (b"x" * 600, b"y" * 400), declare)
    assert (at.status, at.json()) == (200, {"bytes": 1000})
    over = call("/echo", "POST", (b"x" * 600, b"y" * 401), declare)
    too_large(over, ["body"], "GLIDEPATH_MAX_JSON_BYTES")


@pytest.mark.usefixtures("limits")
def test_an_upload_has_the_upload_limit_and_names_the_file() -> None:
    limit = 2**20 + FORM_SLACK
    assert call("/upload", "POST", (b"u" * limit,)).json() == {"bytes": limit}
    too_large(call("/upload", "POST", (b"u" * (limit + 1),)), ["body", "file"], "MAX_UPLOAD_MB")
    streamed = call("/upload", "POST", (b"u" * limit, b"!"), declare=False)
    too_large(streamed, ["body", "file"], "MAX_UPLOAD_MB")
    # The same bytes to any other path are a JSON body, refused long before.
    too_large(call("/echo", "POST", (b"u" * 2000,), declare=False), ["body"], "MAX_JSON_BYTES")


@pytest.mark.usefixtures("limits")
@pytest.mark.parametrize("route", ["slow", "blocking"])
def test_a_handler_past_the_timeout_is_504_in_the_error_shape(route: str) -> None:
    answer = call(f"/{route}?s=0.6")
    assert answer.status == 504, answer.body
    [item] = answer.json()["detail"]
    assert item["type"] == "timeout" and "GLIDEPATH_REQUEST_TIMEOUT_S" in item["msg"]
    # Answered at the deadline, not when the handler would have finished.
    assert 0.3 <= answer.seconds < 0.6, answer.seconds
    assert call(f"/{route}?s=0.05").json() == {"slept": True}


@pytest.mark.usefixtures("limits")
def test_a_stream_longer_than_the_timeout_is_not_cut() -> None:
    answer = call("/stream")
    assert answer.status == 200
    assert answer.body == b"".join(f"data: {i}\n\n".encode() for i in range(4))
    assert answer.seconds >= 0.4  # four chunks 0.1 s apart went out past the 0.3 s timeout


@pytest.mark.usefixtures("limits")
def test_time_spent_receiving_a_slow_upload_does_not_count() -> None:
    chunks = tuple(b"c" * 100 for _ in range(5))
    answer = call("/upload", "POST", chunks, gap_s=0.15)  # 0.75 s of arriving bytes
    assert (answer.status, answer.json()) == (200, {"bytes": 500})
    assert answer.seconds >= 0.7

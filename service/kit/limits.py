"""Body-size limits and request timeouts, as plain ASGI middleware: nothing is buffered, so
streamed responses (event streams, model downloads) and uploads pass through as they come.

- `BodyLimit`: a request body larger than its kind's limit is a 413 in the one error shape: at
  once when Content-Length says so (nothing is read), or as soon as the bytes streamed past it.
  Dataset uploads have GLIDEPATH_MAX_UPLOAD_MB (plus room for the form around the file); every
  other body is JSON and has GLIDEPATH_MAX_JSON_BYTES.
- `over_capacity`: what a request gets when its API process already serves
  GLIDEPATH_API_LIMIT_CONCURRENCY connections, a 503 in the one error shape with `Retry-After`
  (uvicorn's own answer to its `limit_concurrency` is plain text; cli/http_protocol.py sends this).
- `NoNul`: a NUL character (%00) in the path or a query parameter is a 422 at that parameter:
  PostgreSQL's text refuses it (a read answered "cannot be stored"), and SQLite's LIKE reads it
  as the pattern's end (`?q=%00` listed every run).
- `RequestTimeout`: a request whose response has not begun GLIDEPATH_REQUEST_TIMEOUT_S after
  the last body bytes arrived is a 504 in the one error shape; its handler runs on to its end,
  unseen. A response that has begun is never cut (an event stream lives for hours), and time
  spent waiting for a client's body does not count.
"""

from __future__ import annotations

import asyncio
import json
from collections.abc import Collection
from typing import Any
from urllib.parse import parse_qsl

from starlette.requests import Request
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from service.config import settings
from service.kit.errors import GlidepathError, InvalidInput
from service.kit.logging import get_logger
from service.kit.media_types import media_type, reads_json

log = get_logger(__name__)

FORM_SLACK = 2**20  # an upload's multipart boundaries and the small fields around the file


class BodyTooLarge(GlidepathError):
    status_code = 413
    type_ = "too_large"


def mib(n: int) -> str:
    return f"{n / 2**20:.1f} MiB" if n >= 2**20 else f"{n} bytes"


async def _answer(
    send: Send,
    status: int,
    loc: list[str],
    msg: str,
    type_: str,
    headers: Collection[tuple[bytes, bytes]] = (),
) -> None:
    body = json.dumps({"detail": [{"loc": loc, "msg": msg, "type": type_}]}).encode()
    await send(
        {
            "type": "http.response.start",
            "status": status,
            "headers": [
                (b"content-type", b"application/json"),
                (b"content-length", str(len(body)).encode()),
                *headers,
            ],
        }
    )
    await send({"type": "http.response.body", "body": body})


NUL = "text may not contain the NUL character (\\u0000)"


def nul_loc(scope: Scope) -> list[str] | None:
    """Where a NUL character is in the request's path or query, None when nowhere (two byte
    searches on every request; the query is parsed only when one matched)."""
    if "\x00" in scope["path"]:
        return ["path"]
    query: bytes = scope.get("query_string", b"")
    if b"%00" in query or b"\x00" in query:
        for name, value in parse_qsl(query.decode("latin-1"), keep_blank_values=True):
            if "\x00" in name or "\x00" in value:
                return ["query", name.replace("\x00", "")]
    return None


class NoNul:
    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        loc = nul_loc(scope) if scope["type"] == "http" else None
        if loc is None:
            await self.app(scope, receive, send)
        else:
            await _answer(send, 422, loc, NUL, "invalid")


def _nul_path(value: Any, path: list[str | int]) -> list[str | int] | None:
    """The path of the first key or string holding a NUL character in parsed JSON."""
    if isinstance(value, str):
        return path if "\x00" in value else None
    if isinstance(value, dict):
        for key, item in value.items():
            if "\x00" in key:
                return [*path, key.replace("\x00", "")]
            found = _nul_path(item, [*path, key])
            if found is not None:
                return found
    if isinstance(value, list):
        for i, item in enumerate(value):
            found = _nul_path(item, [*path, i])
            if found is not None:
                return found
    return None


async def refuse_nul_body(request: Request) -> None:
    """A JSON body with a NUL character (`\\u0000`: JSON has no other way to hold one) is a 422
    at its field on both backends; SQLite stored it, where PostgreSQL's text refused it with no
    field named. A dependency, run after FastAPI read the body (cached), so a body without one
    costs a byte search."""
    if request.method in ("GET", "HEAD", "DELETE", "OPTIONS"):
        return
    if not reads_json(media_type(request.headers.get("content-type"))):
        return
    if getattr(request.scope.get("route"), "body_field", None) is None:
        return  # a route that reads its own body (a dataset's): reading it here would take it
    body = await request.body()
    if b"\\u0000" not in body:
        return
    try:
        loc = _nul_path(json.loads(body), ["body"])
    except ValueError:
        return  # not JSON: FastAPI's own answer says so
    if loc is not None:
        raise InvalidInput(NUL, loc=loc)


class BodyLimit:
    """413 for a body past its limit. `uploads`: the paths whose bodies are dataset uploads."""

    def __init__(self, app: ASGIApp, uploads: Collection[str] = ()) -> None:
        self.app = app
        self.uploads = frozenset(uploads)

    def _limit(self, path: str) -> tuple[int, list[str], str]:
        """The byte limit for a request to `path`, the `loc` and the setting to name."""
        if path in self.uploads:
            return settings.max_upload_mb * 2**20 + FORM_SLACK, ["body", "file"], "MAX_UPLOAD_MB"
        return settings.max_json_bytes, ["body"], "MAX_JSON_BYTES"

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        declared: int | None = None
        has_body = False
        for key, value in scope["headers"]:
            if key == b"content-length":
                has_body = True
                declared = int(value) if value.isdigit() else None
            elif key == b"transfer-encoding":
                has_body = True
        if not has_body:  # HTTP/1.1: no length, no chunks, no body (every poll)
            await self.app(scope, receive, send)
            return
        limit, loc, setting = self._limit(scope["path"])

        def refusal(size: str) -> str:
            return f"the request body is {size}; the limit is {mib(limit)} (GLIDEPATH_{setting})"

        if declared is not None and declared > limit:
            await _answer(send, 413, loc, refusal(mib(declared)), BodyTooLarge.type_)
            return

        seen = 0
        refused = False  # the body ran past the limit: the answer is a 413, whatever the app says
        app_started = answered = False

        async def counted() -> Message:
            nonlocal seen, refused
            if not refused:
                message = await receive()
                if message["type"] != "http.request":
                    return message
                seen += len(message.get("body", b""))
                if seen <= limit:
                    return message
                refused = True
            raise BodyTooLarge(refusal(f"over {mib(limit)}"), loc=list(loc))

        async def guarded(message: Message) -> None:
            nonlocal app_started, answered
            if answered:
                return
            if refused and not app_started:
                # The app made the error an answer of its own (FastAPI turns any failure while
                # reading a JSON body into a 400): the client learns the real reason instead.
                answered = True
                await _answer(send, 413, loc, refusal(f"over {mib(limit)}"), BodyTooLarge.type_)
                return
            app_started = True
            await send(message)

        try:
            await self.app(scope, counted, guarded)
        except Exception:
            if not refused or app_started:
                raise
            if not answered:
                answered = True
                await _answer(send, 413, loc, refusal(f"over {mib(limit)}"), BodyTooLarge.type_)


class RequestTimeout:
    """504 when the response has not begun in time (see the module's docstring). A timer per
    request, no task: the request runs in its own task as before, and only a timeout starts
    one, to answer."""

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        timeout = settings.request_timeout_s
        loop = asyncio.get_running_loop()
        begun = loop.time()
        answered = False
        reading = 0  # receive() calls in progress: waiting on the client is not the handler's time
        answering: asyncio.Task[None] | None = None
        timer: asyncio.TimerHandle  # when the 504 goes out, unless the response begins first

        def expire() -> None:
            nonlocal timer, answered, answering
            if reading:  # the clock starts again when the bytes come
                timer = loop.call_later(timeout, expire)
                return
            answered = True  # from now on the app's messages are dropped
            answering = loop.create_task(self._answer(send, scope, timeout))

        timer = loop.call_later(timeout, expire)

        async def timed_receive() -> Message:
            nonlocal timer, reading
            reading += 1
            try:
                return await receive()
            finally:
                reading -= 1
                if not answered and not timer.cancelled():
                    timer.cancel()
                    timer = loop.call_later(timeout, expire)

        async def guarded_send(message: Message) -> None:
            if answered:
                return  # too late: the client has its 504
            if message["type"] == "http.response.start":
                timer.cancel()  # a response under way is never cut
            await send(message)

        try:
            await self.app(scope, timed_receive, guarded_send)
        except Exception:
            if not answered:
                raise
            log.warning("request_failed_after_timeout", path=scope["path"], exc_info=True)
        finally:
            timer.cancel()
        if answering is not None:
            # The handler was not cancelled: a sync handler's thread cannot be stopped, and
            # cancelling its task would close its database session under it (the session's
            # teardown runs at once, in another thread, while the handler still uses it). It
            # ran to its end, unseen, and its changes are kept.
            await answering
            log.info("request_finished_after_timeout", path=scope["path"],
                     seconds=round(loop.time() - begun, 3))  # fmt: skip

    @staticmethod
    async def _answer(send: Send, scope: Scope, timeout: float) -> None:
        log.warning("request_timeout", path=scope["path"], timeout_s=timeout)
        await _answer(
            send,
            504,
            [],
            f"no response within {timeout:g} s (GLIDEPATH_REQUEST_TIMEOUT_S); the request may "
            "still take effect: look before repeating it",
            "timeout",
        )


def over_capacity(limit: int) -> ASGIApp:
    """The answer past `limit` connections (GLIDEPATH_API_LIMIT_CONCURRENCY): a 503 in the one
    error shape, to retry (on another process or shortly); the connection is closed, as
    uvicorn's own answer does, to free one. The app never sees the request."""
    msg = (f"this API process is serving its limit of {limit} connections "
           "(GLIDEPATH_API_LIMIT_CONCURRENCY); retry shortly")  # fmt: skip
    headers = [(b"retry-after", b"1"), (b"connection", b"close")]

    async def answer(scope: Scope, receive: Receive, send: Send) -> None:
        await _answer(send, 503, [], msg, "over_capacity", headers)

    return answer

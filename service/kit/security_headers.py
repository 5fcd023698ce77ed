"""The headers a browser needs to keep the dashboard and /docs to themselves, on every response:

- `Content-Security-Policy`: scripts, styles, fonts and connections from this origin only
  (`default-src 'self'`): no inline script, no `eval`, no CDN. Images may also be `data:` URIs
  (the pages' empty favicon, Swagger UI's icons). No plugins, no `<base>` rewriting, forms post
  here only, and no page may frame these (`frame-ancestors 'none'`: clickjacking).
- `X-Frame-Options: DENY`: the same for browsers that predate frame-ancestors.
- `X-Content-Type-Options: nosniff`: a file is run or styled only as the type it is served as.
- `Referrer-Policy: same-origin`: a run's URL is not sent to other sites.

A response that sets one of these itself keeps its own (/docs allows its inline init script by
its hash, see dashboard/docs.py). Plain ASGI (not BaseHTTPMiddleware): a response is neither
buffered nor delayed, so event streams and downloads pass through as they come.
"""

from __future__ import annotations

from collections.abc import Sequence

from starlette.types import ASGIApp, Message, Receive, Scope, Send


def content_security_policy(script_src: Sequence[str] = ("'self'",)) -> str:
    """The policy, with `script-src` widened where a page needs it (hashes of inline scripts)."""
    return "; ".join(
        [
            "default-src 'self'",
            f"script-src {' '.join(script_src)}",
            "img-src 'self' data:",
            "object-src 'none'",
            "base-uri 'none'",
            "form-action 'self'",
            "frame-ancestors 'none'",
        ]
    )


HEADERS = {
    "Content-Security-Policy": content_security_policy(),
    "X-Frame-Options": "DENY",
    "X-Content-Type-Options": "nosniff",
    "Referrer-Policy": "same-origin",
}
# As ASGI sends them: lower-case names, bytes.
_RAW = [
    (name.lower().encode("latin-1"), value.encode("latin-1")) for name, value in HEADERS.items()
]


class SecurityHeaders:
    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return

        async def send_with_headers(message: Message) -> None:
            if message["type"] == "http.response.start":
                headers = list(message.get("headers", ()))
                present = {name.lower() for name, _ in headers}
                headers.extend(h for h in _RAW if h[0] not in present)
                message["headers"] = headers
            await send(message)

        await self.app(scope, receive, send_with_headers)

"""The client's errors: every failure is an `ApiError` carrying the API's `[{loc, msg, type}]`."""

from __future__ import annotations

from typing import Any

import httpx

from service.client.types import ErrorDetail


def _loc(loc: list[str | int]) -> str:
    return ".".join(str(part) for part in loc)


def normalize_detail(body: Any, fallback: str) -> list[ErrorDetail]:
    """The `detail` of an error body as a list of `{loc, msg, type}`, whatever the server sent
    (FastAPI's list, a bare string, or no JSON at all, e.g. from a proxy)."""
    detail = body.get("detail") if isinstance(body, dict) else None
    if isinstance(detail, list) and detail:
        items: list[ErrorDetail] = []
        for d in detail:
            if isinstance(d, dict):
                loc = d.get("loc") or []
                items.append(
                    {
                        "loc": [p if isinstance(p, int) else str(p) for p in loc]
                        if isinstance(loc, list)
                        else [str(loc)],
                        "msg": str(d.get("msg", fallback)),
                        "type": str(d.get("type", "error")),
                    }
                )
            else:
                items.append({"loc": [], "msg": str(d), "type": "error"})
        return items
    if isinstance(detail, str) and detail:
        return [{"loc": [], "msg": detail, "type": "error"}]
    return [{"loc": [], "msg": fallback, "type": "error"}]


class ApiError(Exception):
    """The service answered with an error (`status_code` ≥ 400), or could not be reached
    (`ConnectionFailed`, status_code 0). `detail` is the API's list of `{loc, msg, type}`;
    `str()` gives one "field.path: message" per entry."""

    def __init__(
        self,
        status_code: int,
        detail: list[ErrorDetail],
        *,
        method: str = "",
        url: str = "",
    ) -> None:
        self.status_code = status_code
        self.detail = detail
        self.method = method
        self.url = url
        super().__init__(str(self))

    @classmethod
    def from_response(cls, response: httpx.Response) -> ApiError:
        try:
            body: Any = response.json()
        except ValueError:
            body = None
        fallback = response.text.strip()[:200] or response.reason_phrase or "error"
        return cls(
            response.status_code,
            normalize_detail(body, fallback),
            method=response.request.method,
            url=str(response.request.url),
        )

    def messages(self) -> list[str]:
        """One line per error: `body.experiments.3.base_lr: Input should be greater than 0`."""
        return [f"{_loc(d['loc'])}: {d['msg']}" if d["loc"] else d["msg"] for d in self.detail]

    def __str__(self) -> str:
        return "; ".join(self.messages())

    def __repr__(self) -> str:
        return f"{type(self).__name__}(status_code={self.status_code}, detail={self.detail!r})"

    @property
    def is_not_found(self) -> bool:
        return self.status_code == 404

    @property
    def is_client_error(self) -> bool:
        return 400 <= self.status_code < 500

    @property
    def is_unavailable(self) -> bool:
        """Unreachable, or a 5xx left after the retries."""
        return self.status_code == 0 or self.status_code >= 500


class ConnectionFailed(ApiError):
    """The request never got an answer (refused, DNS, timeout) after the retries."""

    def __init__(self, base_url: str, exc: Exception, *, method: str = "", url: str = "") -> None:
        reason = str(exc) or type(exc).__name__
        super().__init__(
            0,
            [
                {
                    "loc": [],
                    "msg": f"cannot reach the service at {base_url}: {reason}",
                    "type": "unreachable",
                }
            ],
            method=method,
            url=url,
        )

"""Bearer tokens for the /v1 API: with GLIDEPATH_API_TOKENS set, every /v1 request must send
`Authorization: Bearer <one of them>`; empty leaves the API open (the embedded default).
Health checks stay open so orchestrators can probe without a secret."""

from __future__ import annotations

import hmac
from typing import Annotated

from fastapi import Header

from service.config import settings
from service.kit.errors import GlidepathError


class Unauthorized(GlidepathError):
    status_code = 401
    type_ = "unauthorized"


def tokens() -> list[str]:
    return [t.strip() for t in settings.api_tokens.split(",") if t.strip()]


# async: a check with no I/O runs on the event loop, with no hop to the thread pool per request.
async def require_token(authorization: Annotated[str | None, Header()] = None) -> None:
    allowed = tokens()
    if not allowed:
        return
    scheme, _, given = (authorization or "").partition(" ")
    # compare_digest on every token: the time taken does not tell how much of a guess matched.
    if scheme.lower() != "bearer" or not any(
        hmac.compare_digest(given.strip().encode(), t.encode()) for t in allowed
    ):
        raise Unauthorized(
            "missing or wrong API token: send `Authorization: Bearer <token>`",
            loc=["header", "Authorization"],
            headers={"WWW-Authenticate": "Bearer"},
        )

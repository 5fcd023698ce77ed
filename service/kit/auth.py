"""Who is calling /v1, and may they: bearer tokens with roles (CONTRACT.md, "Live events,
metrics, access"; docs/access.md).

A token is either in GLIDEPATH_API_TOKENS (an admin named `env:1`, `env:2`, … by its place in
the list) or a row of the `tokens` table, found by the sha256 of what the client sent. With no
token at all (the variable empty and the table without a row) the API stays open: the embedded
default. Health checks and the dashboard's pages stay open either way.

`require_role` is the FastAPI dependency every /v1 router is mounted with; the role a request
needs comes from `roles.needed_role` (its method, with overrides by path). Routes that record who
made something take `CallerDep` (the same dependency: FastAPI calls it once per request).

Table lookups are cached in-process for `TTL` seconds (one read per token per second per API
process, whatever the request rate), so a token revoked in another process is refused within
that time; a revoke or create in this process drops the cache at once. An event stream asks
again as it goes (`revocation_check`): a revoked token's open streams end within about as long.
"""

from __future__ import annotations

import asyncio
import functools
import hashlib
import hmac
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Annotated, Any, Protocol, TypeVar

from fastapi import Depends, Request
from fastapi.security import HTTPAuthorizationCredentials, HTTPBearer
from starlette.concurrency import run_in_threadpool

from service.config import settings
from service.kit.errors import GlidepathError
from service.kit.logging import get_logger
from service.kit.roles import Role, needed_role

log = get_logger(__name__)

TTL = 1.0
MAX_CACHED = 10_000  # distinct tokens remembered (a client spraying random ones cannot grow it)
TOKEN_PREFIX = "gp_"

T = TypeVar("T")


class Unauthorized(GlidepathError):
    status_code = 401
    type_ = "unauthorized"


class Forbidden(GlidepathError):
    status_code = 403
    type_ = "forbidden"


LOC: list[str | int] = ["header", "Authorization"]


@dataclass(frozen=True)
class Caller:
    """Who sent the request: a token's name and role; `name` None where the API is open."""

    name: str | None
    role: Role


OPEN = Caller(None, Role.ADMIN)


@dataclass(frozen=True)
class Found:
    """A token row found by its hash."""

    name: str
    role: Role
    revoked: bool


class TokenStore(Protocol):
    """The tokens table as the guard needs it (service/tokens implements it; kit imports no
    domain)."""

    def has_tokens(self) -> bool:
        """Whether the table has any row (a revoked one included: revoking every token does not
        open the API)."""
        ...

    def find(self, digest: str) -> Found | None:
        """The row whose hash is `digest`; marks it used (at most once a minute)."""
        ...


def digest(token: str) -> str:
    """What is stored of a token: a random 32-byte token needs no slow KDF, its sha256 is as hard
    to invert as to guess."""
    return hashlib.sha256(token.encode()).hexdigest()


@functools.cache
def _env_tokens(raw: str) -> tuple[tuple[str, str], ...]:
    """(name, digest) of each token in GLIDEPATH_API_TOKENS."""
    tokens = [t.strip() for t in raw.split(",") if t.strip()]
    return tuple((f"env:{i}", digest(t)) for i, t in enumerate(tokens, start=1))


def env_tokens() -> tuple[tuple[str, str], ...]:
    return _env_tokens(settings.api_tokens)


def env_caller(given: str) -> Caller | None:
    found = None
    # Every entry is compared (no early exit), each in constant time: the time taken tells
    # nothing of which token, or how much of one, a guess matched.
    for name, stored in env_tokens():
        if hmac.compare_digest(given, stored) and found is None:
            found = Caller(name, Role.ADMIN)
    return found


class Authenticator:
    """The tokens table behind a short in-process cache. One per app (app.state.auth); its
    methods run on the event loop, the reads on the thread pool, and concurrent misses of one
    key share one read."""

    def __init__(self, store: TokenStore, ttl: float = TTL,
                 clock: Callable[[], float] = time.monotonic) -> None:  # fmt: skip
        self.store = store
        self.ttl = ttl
        self.clock = clock
        self._entries: dict[str, tuple[float, Any]] = {}
        self._pending: dict[str, asyncio.Future[Any]] = {}
        self._generation = 0

    def forget(self) -> None:
        """Drop what is cached (a token was created or revoked here): the next request reads the
        table. A read already in flight is not stored."""
        self._generation += 1
        self._entries = {}
        self._pending = {}

    async def has_tokens(self) -> bool:
        return bool(await self._cached("", self.store.has_tokens))

    async def find(self, token_digest: str) -> Found | None:
        return await self._cached(token_digest, lambda: self.store.find(token_digest))

    async def _cached(self, key: str, load: Callable[[], T]) -> T:
        hit = self._entries.get(key)
        if hit is not None and hit[0] > self.clock():
            return hit[1]
        task = self._pending.get(key)
        # A read started on another event loop (a test client's earlier portal) cannot be awaited
        # on this one: start another.
        if task is None or task.get_loop() is not asyncio.get_running_loop():
            started, generation = self.clock(), self._generation
            task = asyncio.ensure_future(run_in_threadpool(load))
            self._pending[key] = task

            def done(t: asyncio.Future[Any]) -> None:
                if self._pending.get(key) is t:
                    del self._pending[key]
                if t.cancelled() or t.exception() is not None or generation != self._generation:
                    return
                if len(self._entries) >= MAX_CACHED:
                    self._entries = {}
                # Counted from before the read: an entry is never older than `ttl`.
                self._entries[key] = (started + self.ttl, t.result())

            task.add_done_callback(done)
        # shield: a client that hangs up does not cancel the read others wait on.
        return await asyncio.shield(task)


def authenticator(request: Request) -> Authenticator:
    auth: Authenticator = request.app.state.auth
    return auth


AuthDep = Annotated[Authenticator, Depends(authenticator)]

# auto_error=False: a missing or malformed header is ours to answer (401 in the one error shape,
# or nothing at all while the API is open); the scheme also puts "Authorize" in /docs.
bearer = HTTPBearer(
    auto_error=False,
    description="A token from `glidepath token create` or `POST /v1/tokens`, or one listed in "
    "GLIDEPATH_API_TOKENS; not needed while no token exists.",
)


def _unauthorized(msg: str) -> Unauthorized:
    return Unauthorized(msg, loc=LOC, headers={"WWW-Authenticate": "Bearer"})


async def _caller(request: Request, credentials: HTTPAuthorizationCredentials | None) -> Caller:
    auth = authenticator(request)
    given = credentials.credentials.strip() if credentials is not None else ""
    if given:
        token_digest = digest(given)
        caller = env_caller(token_digest)
        if caller is not None:
            return caller
        found = await auth.find(token_digest)
        if found is not None and not found.revoked:
            request.state.token_digest = token_digest  # revocable (`revocation_check`)
            return Caller(found.name, found.role)
        if found is not None:  # its row exists, so the API is not open
            raise _unauthorized(f"token {found.name!r} was revoked")
    # No token, or one nobody knows: fine while the API is open (no token exists at all).
    if not env_tokens() and not await auth.has_tokens():
        return OPEN
    raise _unauthorized(
        "unknown API token: send `Authorization: Bearer <token>`"
        if given
        else "this API needs a token: send `Authorization: Bearer <token>`"
    )


async def require_role(
    request: Request,
    credentials: Annotated[HTTPAuthorizationCredentials | None, Depends(bearer)],
) -> Caller:
    """The caller, if its role covers what the request needs: else 401 (no, unknown or revoked
    token) or 403 naming the role needed. async: a cached check runs on the event loop with no
    hop to the thread pool."""
    caller = await _caller(request, credentials)
    needed = needed_role(request.method, request.scope["path"])
    if not caller.role.covers(needed):
        raise Forbidden(
            f"{request.method} {request.scope['path']} needs the {needed.value!r} role; "
            f"token {caller.name!r} has {caller.role.value!r}",
            loc=LOC,
        )
    request.state.caller = caller
    return caller


CallerDep = Annotated[Caller, Depends(require_role)]

Revoked = Callable[[], Awaitable[bool]]


def revocation_check(request: Request) -> Revoked | None:
    """For an answer that outlives its request (an event stream, open for hours): whether the
    token it was authorised with has been revoked since (read through the cache, so at most once
    a TTL per token and process), or None where nothing can revoke it (an open API, a
    GLIDEPATH_API_TOKENS token). A failed read is not a revocation: the stream goes on."""
    token_digest = getattr(request.state, "token_digest", None)
    if token_digest is None:
        return None
    auth = authenticator(request)

    async def revoked() -> bool:
        try:
            found = await auth.find(token_digest)
        except Exception:  # the database is away: the next check asks again
            log.warning("token_check_failed", exc_info=True)
            return False
        return found is None or found.revoked

    return revoked


# What every guarded route may also answer, for its OpenAPI entry (400: `glidepath api`'s
# protocol refuses the request before any route sees it, service/cli/http_protocol.py).
RESPONSES: dict[int | str, dict[str, Any]] = {
    400: {
        "description": "Not read: the request line and headers are over "
        "GLIDEPATH_API_MAX_HEADER_BYTES (16 KiB; a query string that long), or not HTTP"
    },
    401: {"description": "No, unknown or revoked token (while any token exists)"},
    403: {"description": "The token's role is short of what this needs; `msg` names the role"},
}

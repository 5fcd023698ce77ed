"""Tokens: make one (shown once, stored as its sha256), list them, revoke one; and the store the
API's guard reads (`DatabaseTokens`, behind kit/auth's cache). The CLI's `glidepath token`
commands call these functions on the database directly, so the first admin token can be made
before any token exists."""

from __future__ import annotations

import hmac
import secrets
from datetime import timedelta

from sqlalchemy.orm import Session

from service.kit.auth import TOKEN_PREFIX, Found, digest
from service.kit.conflicts import conflict_on_duplicate
from service.kit.db import session_scope
from service.kit.errors import Conflict, NotFound
from service.kit.roles import Role
from service.kit.time import as_utc, utcnow
from service.tokens.models import Token
from service.tokens.repository import TokenRepository
from service.tokens.schemas import TokenCreated, TokenIn, TokenList, TokenOut

# last_used_at is written at most this often per token: a busy token costs one write a minute.
USED_EVERY = timedelta(minutes=1)


def new_token() -> str:
    """32 random bytes, URL-safe, behind a prefix that secret scanners and people recognise."""
    return TOKEN_PREFIX + secrets.token_urlsafe(32)


def create(session: Session, request: TokenIn) -> TokenCreated:
    repo = TokenRepository(session)
    taken = f"a token named {request.name!r} exists (names are never reused, even revoked)"
    if repo.by_name(request.name) is not None:
        raise Conflict(taken, loc=["body", "name"])
    token = new_token()
    with conflict_on_duplicate(taken, ["body", "name"]):  # a concurrent create of the same name
        repo.add(Token(name=request.name, role=request.role, token_hash=digest(token)))
    return TokenCreated(name=request.name, role=request.role, token=token)


def out(token: Token) -> TokenOut:
    return TokenOut(
        name=token.name,
        role=Role(token.role),
        created_at=as_utc(token.created_at) or token.created_at,  # SQLite: naive UTC
        last_used_at=as_utc(token.last_used_at),
        revoked=token.revoked_at is not None,
        revoked_at=as_utc(token.revoked_at),
    )


def list_all(session: Session) -> TokenList:
    return TokenList(items=[out(t) for t in TokenRepository(session).all()])


def revoke(session: Session, name: str) -> TokenOut:
    repo = TokenRepository(session)
    if not repo.revoke(name, utcnow()):
        raise NotFound(f"no token named {name!r}", loc=["path", "name"])
    token = repo.by_name(name)
    assert token is not None
    session.refresh(token)
    return out(token)


class DatabaseTokens:
    """kit.auth.TokenStore over the `tokens` table, each call its own short transaction."""

    def has_tokens(self) -> bool:
        with session_scope() as session:
            return TokenRepository(session).any()

    def find(self, token_digest: str) -> Found | None:
        with session_scope() as session:
            repo = TokenRepository(session)
            token = repo.by_hash(token_digest)
            # The index found it by equality; compare again in constant time, so what is
            # trusted is a comparison that does not stop at the first differing character.
            if token is None or not hmac.compare_digest(token.token_hash, token_digest):
                return None
            now = utcnow()
            last = as_utc(token.last_used_at)
            if token.revoked_at is None and (last is None or now - last >= USED_EVERY):
                repo.touch(token.id, now, now - USED_EVERY)
            return Found(token.name, Role(token.role), token.revoked_at is not None)

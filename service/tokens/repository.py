"""Every query on `tokens`."""

from __future__ import annotations

from datetime import datetime

from sqlalchemy import or_, select, update
from sqlalchemy.orm import Session

from service.tokens.models import Token


class TokenRepository:
    def __init__(self, session: Session) -> None:
        self.session = session

    def any(self) -> bool:
        return self.session.scalar(select(Token.id).limit(1)) is not None

    def by_hash(self, token_hash: str) -> Token | None:
        return self.session.scalar(select(Token).where(Token.token_hash == token_hash))

    def by_name(self, name: str) -> Token | None:
        return self.session.scalar(select(Token).where(Token.name == name))

    def all(self) -> list[Token]:
        return list(self.session.scalars(select(Token).order_by(Token.id)))

    def add(self, token: Token) -> Token:
        """Insert now (a flush), so a name taken meanwhile fails here with an IntegrityError."""
        self.session.add(token)
        self.session.flush()
        return token

    def touch(self, token_id: int, now: datetime, stale_before: datetime) -> None:
        """last_used_at = now unless another process wrote it since `stale_before`."""
        self.session.execute(
            update(Token)
            .where(
                Token.id == token_id,
                or_(Token.last_used_at.is_(None), Token.last_used_at < stale_before),
            )
            .values(last_used_at=now)
            # Not evaluated on the loaded row: SQLite hands back naive times, `now` is aware.
            .execution_options(synchronize_session=False)
        )

    def revoke(self, name: str, now: datetime) -> bool:
        """Revoke the named token (a revoked one stays revoked at its first time). False: no such
        token."""
        token = self.by_name(name)
        if token is None:
            return False
        if token.revoked_at is None:
            self.session.execute(
                update(Token).where(Token.id == token.id, Token.revoked_at.is_(None))
                .values(revoked_at=now).execution_options(synchronize_session=False)
            )  # fmt: skip
        return True

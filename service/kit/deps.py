"""Request-scoped dependencies: the session, committed at the edge (outbox tasks are sent on
commit by the outbox itself)."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Annotated

from fastapi import Depends
from sqlalchemy.orm import Session

from service.kit.db import session_scope


def get_session() -> Iterator[Session]:
    """Commits when the route returns and rolls back on any error."""
    with session_scope() as session:
        yield session


# scope="function": the commit runs before the response is sent, so a client that got its 201
# can read the row at once.
SessionDep = Annotated[Session, Depends(get_session, scope="function")]

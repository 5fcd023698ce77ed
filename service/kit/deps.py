"""Request-scoped dependencies: the session (commit at the edge, then send queued tasks)."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Annotated

from fastapi import Depends
from sqlalchemy.orm import Session

from service.dispatch import service as dispatch
from service.kit.db import get_sessionmaker


def get_session() -> Iterator[Session]:
    """Commits when the route returns and rolls back on any error. Tasks recorded in the
    outbox are sent only after the commit succeeded."""
    session = get_sessionmaker()()
    try:
        yield session
        session.commit()
        dispatch.send(dispatch.take_pending(session))
    except BaseException:
        session.rollback()
        raise
    finally:
        session.close()


# scope="function": the commit runs before the response is sent, so a client that got its 201
# can read the row at once.
SessionDep = Annotated[Session, Depends(get_session, scope="function")]

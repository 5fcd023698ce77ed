"""The doorbell of live events (service/events): on PostgreSQL, a `pg_notify` in the transaction
that changes a run, delivered to every API process's listener when it commits (dropped with a
rollback). The notification says only which runs or sweeps changed; listeners read the rows from
the tables, which stay the source of truth. Embedded (SQLite) it does nothing: the listener there
notices any commit on its own (`PRAGMA data_version`).

Payload: comma-separated tokens, `<experiment id>` or `s<sweep id>`. `announce` is the helper;
`notifying` folds it into an UPDATE's RETURNING where a write is hot (the worker's fence, claim
and finish).

In this process, on every backend, the same tokens also go to the hooks `on_commit` registers,
once the transaction has committed: what this process changed is known here at once, without
waiting for the notification to come back (the metrics pages' cache, experiments/polls.py)."""

from __future__ import annotations

from collections.abc import Callable, Iterable
from typing import Any

from sqlalchemy import ColumnElement, String, cast, event, func, select
from sqlalchemy.orm import Session

CHANNEL = "glidepath_events"
# PostgreSQL refuses a payload of 8,000 bytes or more; a longer list goes as several.
_MAX_PAYLOAD = 7000
_TOUCHED = "glidepath_touched"  # session.info key: the tokens of this transaction

Hook = Callable[[list[str]], None]
_hooks: list[Hook] = []


def on_commit(hook: Hook) -> Callable[[], None]:
    """Call `hook(tokens)` after each commit in this process that changed runs or sweeps (from
    whichever thread committed); returns what removes it."""
    _hooks.append(hook)
    return lambda: _hooks.remove(hook) if hook in _hooks else None


def touched(session: Session, tokens: Iterable[str]) -> None:
    """Remember tokens for this process's hooks, told when the transaction commits."""
    if _hooks:
        session.info.setdefault(_TOUCHED, set()).update(tokens)


@event.listens_for(Session, "after_commit")
def _committed(session: Session) -> None:
    tokens = session.info.pop(_TOUCHED, None)
    if tokens:
        for hook in list(_hooks):
            hook(sorted(tokens))


@event.listens_for(Session, "after_rollback")
def _rolled_back(session: Session) -> None:
    session.info.pop(_TOUCHED, None)


def announce(
    session: Session, experiment_ids: Iterable[int] = (), sweep_id: int | None = None
) -> None:
    """Tell the API processes' listeners, at commit, that these runs (or this sweep) changed."""
    tokens = [str(i) for i in dict.fromkeys(experiment_ids)]
    if sweep_id is not None:
        tokens.append(f"s{sweep_id}")
    touched(session, tokens)
    if not notifies(session):
        return
    payload = ""
    for token in tokens:
        if payload and len(payload) + len(token) >= _MAX_PAYLOAD:
            session.execute(select(func.pg_notify(CHANNEL, payload)))
            payload = ""
        payload = f"{payload},{token}" if payload else token
    if payload:
        session.execute(select(func.pg_notify(CHANNEL, payload)))


def notifies(session: Session) -> bool:
    """Whether this session's database takes notifications (PostgreSQL)."""
    return session.get_bind().dialect.name == "postgresql"


def notifying(experiment_id: Any) -> ColumnElement[Any]:
    """On PostgreSQL, `pg_notify` of each updated row's id, to put in the RETURNING of a
    statement built once (the notification without a statement of its own)."""
    return func.pg_notify(CHANNEL, cast(experiment_id, String))

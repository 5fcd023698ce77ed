"""A route's database work: `await in_session(work)` runs `work(session)` in one hop to the
thread pool and commits there when it returns (rolls back on any error), before the response
is sent, so a client that got its 201 can read the row at once. Outbox tasks are sent on commit
by the outbox itself.

One hop, not four: a sync route taking its session as a generator dependency ran the
dependency's entry, the route, FastAPI's check of its return value against `response_model`
and the dependency's exit each in a hop of its own (~1 ms of the API's CPU per request here,
benchmarks/route_hops.py). So routes are `async def`, and everything in them that blocks (the
database, the artifact store, the broker, torch building a spec's optimizer) goes through
`in_session`."""

from __future__ import annotations

from collections.abc import Callable
from typing import TypeVar

from sqlalchemy.orm import Session
from starlette.concurrency import run_in_threadpool

from service.kit.db import session_scope

T = TypeVar("T")


async def in_session(work: Callable[[Session], T]) -> T:
    """`work(session)` on the thread pool, committed when it returns."""
    return await run_in_threadpool(_committed, work)


def _committed(work: Callable[[Session], T]) -> T:
    with session_scope() as session:
        return work(session)

"""The registry as the API uses it: list the workers, and check a spec's plugin model or dataset
against what they offer (names and params from their manifests; nothing is imported here)."""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Any

from sqlalchemy.orm import Session

from service.kit.db import session_scope
from service.kit.time import as_utc, utcnow
from service.training.errors import ErrorItem, item
from service.training.plugins import MODEL_RESERVED, check_params
from service.training.spec import BUILTIN_MODELS, ModelSpec
from service.workers.models import WorkerRow
from service.workers.repository import WorkerRepository
from service.workers.schemas import WorkerList, WorkerOut

HEARTBEAT_SECONDS = 10.0  # how often a worker refreshes its row
LOST_AFTER = 3  # heartbeats missed before a worker shows as lost
FORGET_AFTER = timedelta(days=1)  # a worker not seen for this long leaves the registry


STATES = ("alive", "lost", "stopped")


def state(row: WorkerRow) -> str:
    return state_of(row.stopped_at, row.last_seen)


def state_of(stopped_at: datetime | None, last_seen: datetime) -> str:
    """One of STATES (`/v1/workers` and `/metrics` say the same)."""
    if stopped_at is not None:
        return "stopped"
    last = as_utc(last_seen)
    assert last is not None
    alive = utcnow() - last <= timedelta(seconds=HEARTBEAT_SECONDS * LOST_AFTER)
    return "alive" if alive else "lost"


def forget_stale() -> int:
    """Housekeeping: drop the rows of workers not seen for FORGET_AFTER."""
    with session_scope() as session:
        return WorkerRepository(session).forget_seen_before(utcnow() - FORGET_AFTER)


def plugins_of(raw: Any) -> dict[str, Any]:
    """A row's manifest with every kind present. An older worker's row (or one a person wrote)
    may lack `models` or `datasets`: that worker offers none of that kind, which is no reason to
    refuse the whole list."""
    found = raw if isinstance(raw, dict) else {}
    kinds = ("models", "datasets", "errors")
    return {**found, **{kind: found.get(kind) or {} for kind in kinds}}


def list_workers(session: Session) -> WorkerList:
    rows = WorkerRepository(session).all()
    return WorkerList(
        lost_after_s=HEARTBEAT_SECONDS * LOST_AFTER,
        items=[
            WorkerOut(
                id=r.id,
                host=r.host,
                pid=r.pid,
                state=state(r),
                queues=r.queues,
                devices=r.devices,
                plugins=plugins_of(r.plugins),
                current_run=r.current_run,
                started_at=r.started_at,
                last_seen=r.last_seen,
            )
            for r in rows
        ],
    )


@dataclass
class Offer:
    """What the registered workers offer: per kind, name → the newest manifest entry of it."""

    models: dict[str, dict[str, Any]] = field(default_factory=dict)
    datasets: dict[str, dict[str, Any]] = field(default_factory=dict)

    def listing(self, kind: str) -> str:
        table = getattr(self, kind)
        if not table:
            return "none (no registered worker has a plugin installed)"
        return ", ".join(f"{n} ({e['package']} {e['version']})" for n, e in sorted(table.items()))


_OFFER_KEY = "glidepath_offer"


def offer(session: Session) -> Offer:
    """Merged manifests of the registered workers (stopped and lost ones included: a queued run
    waits for a worker that offers its plugin). Read once per session, so a batch of 1,000 specs
    costs one query."""
    cached = session.info.get(_OFFER_KEY)
    if cached is not None:
        return cached
    found = Offer()
    for row in reversed(WorkerRepository(session).all()):  # oldest first: the newest wins
        for kind in ("models", "datasets"):
            getattr(found, kind).update(plugins_of(row.plugins)[kind])
    session.info[_OFFER_KEY] = found
    return found


def check_model(session: Session, model: ModelSpec, loc: list[str | int]) -> list[ErrorItem]:
    """A plugin model must be offered by a registered worker, with params its factory takes."""
    if not model.is_plugin:
        return []
    found = offer(session)
    entry = found.models.get(model.type)
    if entry is None:
        return [
            item(
                [*loc, "type"],
                f"unknown model {model.type!r}; built-in: "
                f"{', '.join(BUILTIN_MODELS)}; offered by workers: {found.listing('models')}",
                "unknown_model",
            )
        ]
    return check_params(model.type, entry, model.params, [*loc, "params"], MODEL_RESERVED)


def check_dataset(
    session: Session, name: str, params: dict[str, Any], loc: list[str | int], known: list[str]
) -> list[ErrorItem]:
    """A name that is no built-in and no upload must be a plugin dataset a worker offers, with
    params its factory takes. `known`: the built-in and uploaded names, for the message."""
    found = offer(session)
    entry = found.datasets.get(name)
    if entry is None:
        return [
            item(
                [*loc, "type"] if params else loc,
                f"unknown dataset {name!r}; built-in and "
                f"uploaded: {', '.join(sorted(known))}; offered by workers: "
                f"{found.listing('datasets')}",
                "unknown_dataset",
            )
        ]
    return check_params(name, entry, params, [*loc, "params"])

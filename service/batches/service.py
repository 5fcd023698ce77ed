"""Many specs accepted together: all valid or none, in one transaction."""

from __future__ import annotations

import hashlib
import json
import uuid

from sqlalchemy import func, select
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session

from service.batches.models import Batch
from service.batches.schemas import BatchCreated, BatchIn, BatchOut
from service.experiments import service as experiments
from service.experiments.models import Experiment
from service.kit.errors import Conflict, NotFound
from service.kit.time import as_utc
from service.training.status import FINAL as FINAL_STATUSES


def _hash(request: BatchIn) -> str:
    canonical = json.dumps(request.model_dump(mode="json"), sort_keys=True, separators=(",", ":"))
    return hashlib.sha256(canonical.encode()).hexdigest()


def _ids(session: Session, batch_id: str) -> list[int]:
    q = select(Experiment.id).where(Experiment.batch_id == batch_id).order_by(Experiment.id)
    return list(session.scalars(q))


def _replay(session: Session, batch: Batch, digest: str) -> BatchCreated:
    if batch.request_hash != digest:
        raise Conflict(
            "this Idempotency-Key was used with a different batch",
            loc=["header", "Idempotency-Key"],
        )
    return BatchCreated(batch_id=batch.id, ids=_ids(session, batch.id))


def create(
    session: Session, request: BatchIn, idempotency_key: str | None = None
) -> tuple[BatchCreated, bool]:
    """Validate every spec, then insert them all with their outbox messages. Returns (created
    ids, created); a repeated Idempotency-Key answers with the first batch."""
    digest = _hash(request)
    if idempotency_key:
        existing = session.scalar(select(Batch).where(Batch.idempotency_key == idempotency_key))
        if existing is not None:
            return _replay(session, existing, digest), False
    rows = experiments.validate_many(session, request.experiments, ["body", "experiments"])
    batch = Batch(
        id=uuid.uuid4().hex,
        name=request.name,
        size=len(rows),
        idempotency_key=idempotency_key,
        request_hash=digest,
    )
    session.add(batch)
    try:
        session.flush()
    except IntegrityError:
        # A concurrent request with the same key won: answer as its replay (see experiments).
        session.rollback()
        existing = session.scalar(select(Batch).where(Batch.idempotency_key == idempotency_key))
        if existing is None:
            raise
        return _replay(session, existing, digest), False
    for row in rows:
        row.batch_id = batch.id
    return BatchCreated(batch_id=batch.id, ids=experiments.insert_many(session, rows)), True


def get(session: Session, batch_id: str) -> BatchOut:
    batch = session.get(Batch, batch_id)
    if batch is None:
        raise NotFound(f"batch {batch_id} not found", loc=["path", "batch_id"])
    q = (
        select(Experiment.status, func.count())
        .where(Experiment.batch_id == batch_id)
        .group_by(Experiment.status)
    )
    counts: dict[str, int] = {status: n for status, n in session.execute(q)}
    done = sum(n for status, n in counts.items() if status in FINAL_STATUSES)
    return BatchOut(
        batch_id=batch.id,
        name=batch.name,
        size=batch.size,
        ids=_ids(session, batch_id),
        counts=counts,
        status="finished" if done == batch.size else "running",
        created_at=as_utc(batch.created_at),
    )

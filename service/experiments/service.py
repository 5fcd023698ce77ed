"""What the experiments API does, as plain functions over a session (the route commits)."""

from __future__ import annotations

import base64
import hashlib
import json

from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session

from service.datasets import service as datasets
from service.dispatch import service as dispatch
from service.experiments.models import Experiment
from service.experiments.repository import ExperimentRepository
from service.experiments.schemas import (
    DecisionList,
    EpochOut,
    ExperimentOut,
    ExperimentPage,
    MetricsPage,
)
from service.experiments.spec import ExperimentSpec, check_spec, derived_sizes
from service.kit.errors import Conflict, InvalidInput, NotFound


def queue_for(spec: ExperimentSpec) -> str:
    """`auto` runs on whichever worker is free; an explicit device goes to workers that have it."""
    if spec.device == "auto":
        return "auto"
    return "cpu" if spec.device == "cpu" else "gpu"


def spec_hash(spec: ExperimentSpec) -> str:
    canonical = json.dumps(spec.model_dump(mode="json"), sort_keys=True, separators=(",", ":"))
    return hashlib.sha256(canonical.encode()).hexdigest()


def validate(session: Session, spec: ExperimentSpec, loc: list[str | int]) -> Experiment:
    """Check a parsed spec against torch and its dataset; return the unsaved row."""
    info = datasets.resolve(session, spec.dataset, [*loc, "dataset"])
    errors = check_spec(spec, info)
    if errors:
        for e in errors:
            e["loc"] = [*loc, *e["loc"]]
        raise InvalidInput.of(errors)
    sizes, steps = derived_sizes(spec, info)
    return Experiment(
        name=spec.name,
        spec=spec.model_dump(mode="json"),
        status="queued",
        queue=queue_for(spec),
        split_sizes=sizes,
        steps_per_epoch=steps,
    )


def create(
    session: Session, spec: ExperimentSpec, idempotency_key: str | None = None
) -> tuple[Experiment, bool]:
    """Insert the run and its outbox message. Returns (experiment, created); a repeated
    Idempotency-Key returns the first experiment with created=False."""
    repo = ExperimentRepository(session)
    digest = spec_hash(spec)
    if idempotency_key:
        existing = repo.by_idempotency_key(idempotency_key)
        if existing is not None:
            return _replay(existing, digest), False
    experiment = validate(session, spec, ["body"])
    experiment.idempotency_key = idempotency_key
    experiment.request_hash = digest
    try:
        repo.add(experiment, spec.tags)
    except IntegrityError:
        # A concurrent request with the same key won the insert: answer as its replay. (No
        # SAVEPOINT: pysqlite's default transaction handling makes them unreliable on SQLite;
        # this request's unit of work holds nothing else, so a full rollback loses nothing.)
        session.rollback()
        existing = repo.by_idempotency_key(idempotency_key or "")
        if existing is None:
            raise
        return _replay(existing, digest), False
    dispatch.enqueue(session, experiment.id, experiment.queue, dispatch.RUN_TASK)
    return experiment, True


def _replay(existing: Experiment, digest: str) -> Experiment:
    if existing.request_hash != digest:
        raise Conflict(
            "this Idempotency-Key was used with a different spec", loc=["header", "Idempotency-Key"]
        )
    return existing


def get(session: Session, experiment_id: int) -> Experiment:
    experiment = ExperimentRepository(session).get(experiment_id)
    if experiment is None:
        raise NotFound(f"experiment {experiment_id} not found", loc=["path", "experiment_id"])
    return experiment


def out(session: Session, experiment: Experiment) -> ExperimentOut:
    tags = ExperimentRepository(session).tags_of([experiment.id])[experiment.id]
    return ExperimentOut.of(experiment, tags)


def encode_cursor(last_id: int) -> str:
    return base64.urlsafe_b64encode(json.dumps({"before": last_id}).encode()).decode()


def decode_cursor(cursor: str) -> int:
    try:
        before = json.loads(base64.urlsafe_b64decode(cursor.encode()))["before"]
        if not isinstance(before, int):
            raise ValueError
        return before
    except (ValueError, KeyError, TypeError):
        raise InvalidInput(
            "malformed cursor; pass back `next_cursor` as given", loc=["query", "cursor"]
        ) from None


def list_page(
    session: Session,
    *,
    statuses: list[str],
    batch_id: str | None,
    tag: str | None,
    cursor: str | None,
    limit: int,
) -> ExperimentPage:
    repo = ExperimentRepository(session)
    tag_filter: tuple[str, str | None] | None = None
    if tag:
        key, sep, value = tag.partition(":")
        tag_filter = (key, value if sep else None)
    rows = repo.search(
        statuses=statuses,
        batch_id=batch_id,
        tag=tag_filter,
        before_id=decode_cursor(cursor) if cursor else None,
        limit=limit + 1,
    )
    more = len(rows) > limit
    rows = rows[:limit]
    tags = repo.tags_of([r.id for r in rows])
    return ExperimentPage(
        items=[ExperimentOut.of(r, tags[r.id]) for r in rows],
        next_cursor=encode_cursor(rows[-1].id) if more else None,
    )


def metrics(session: Session, experiment_id: int, after_epoch: int, limit: int) -> MetricsPage:
    experiment = get(session, experiment_id)
    rows = ExperimentRepository(session).epochs(experiment_id, after_epoch, limit)
    return MetricsPage(
        experiment_id=experiment_id,
        status=experiment.status,
        epochs=[EpochOut.of(r) for r in rows],
        next_after_epoch=rows[-1].epoch if rows else after_epoch,
    )


def decisions(session: Session, experiment_id: int) -> DecisionList:
    experiment = get(session, experiment_id)
    return DecisionList.of(experiment, ExperimentRepository(session).decisions(experiment_id))


def cancel(session: Session, experiment_id: int) -> Experiment:
    experiment = get(session, experiment_id)
    ExperimentRepository(session).cancel(experiment_id)
    session.flush()
    session.refresh(experiment)
    return experiment

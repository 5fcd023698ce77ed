"""What the LR range test API does, as plain functions over a session (the route commits)."""

from __future__ import annotations

from sqlalchemy.orm import Session

from service.dispatch import service as dispatch
from service.experiments import service as experiments
from service.experiments.models import Experiment
from service.experiments.repository import ExperimentRepository
from service.kit.errors import NotFound
from service.lr_range.repository import RangeRepository
from service.lr_range.schemas import RangeTestOut, RangeTestPage, RangeTestRequest, RangeTestSummary

KIND = "lr_range_test"


def create(session: Session, body: RangeTestRequest, created_by: str | None = None) -> Experiment:
    """Insert the test as an experiments row of its own kind, with its outbox message, exactly as
    a training run: the same claim, lease, cancel and reaper then serve it."""
    experiment = experiments.validate(session, body.spec, ["body", "spec"])
    experiment.kind = KIND
    experiment.range_test = body.params().model_dump()
    experiment.created_by = created_by
    ExperimentRepository(session).add(experiment, {})
    dispatch.enqueue(session, experiment.id, experiment.queue, dispatch.RUN_TASK)
    return experiment


def get(session: Session, test_id: int) -> Experiment:
    experiment = ExperimentRepository(session).get(test_id)
    if experiment is None or experiment.kind != KIND:
        raise NotFound(f"LR range test {test_id} not found", loc=["path", "test_id"])
    return experiment


def out(session: Session, experiment: Experiment, from_step: int = 0) -> RangeTestOut:
    repo = RangeRepository(session)
    points = repo.points(experiment.id, from_step)
    steps_run = repo.steps_run(experiment.id) if from_step else len(points)
    return RangeTestOut.of(experiment, points, steps_run, from_step)


def list_page(
    session: Session, *, statuses: list[str], cursor: str | None, limit: int
) -> RangeTestPage:
    """Newest first, keyset-paged as `GET /v1/experiments` is (the same cursor format)."""
    rows = ExperimentRepository(session).search(
        statuses=statuses,
        before_id=experiments.decode_cursor(cursor) if cursor else None,
        limit=limit + 1,
        kind=KIND,
    )
    more = len(rows) > limit
    rows = rows[:limit]
    steps_run = RangeRepository(session).steps_run_of([r.id for r in rows])
    return RangeTestPage(
        items=[RangeTestSummary.of(r, steps_run[r.id]) for r in rows],
        next_cursor=experiments.encode_cursor(rows[-1].id) if more else None,
    )


def cancel(session: Session, test_id: int) -> Experiment:
    experiment = get(session, test_id)
    ExperimentRepository(session).cancel(test_id)
    session.flush()
    session.refresh(experiment)
    return experiment

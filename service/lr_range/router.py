from __future__ import annotations

from typing import Annotated, Any

from fastapi import APIRouter, Query, status
from sqlalchemy.orm import Session

from service.kit.auth import CallerDep
from service.kit.dbint import DB_INT_MAX
from service.kit.deps import in_session
from service.kit.params import RowId
from service.lr_range import service
from service.lr_range.schemas import RangeTestOut, RangeTestPage, RangeTestRequest
from service.training.status import RangeTestStatus

router = APIRouter(prefix="/v1/lr-range-tests", tags=["lr-range-tests"])

ERRORS: dict[int | str, dict[str, Any]] = {404: {"description": "No such LR range test"}}


@router.post(
    "",
    status_code=status.HTTP_201_CREATED,
    response_model=RangeTestOut,
    responses={422: {"description": "Invalid input; `loc` is the field path"}},
)
async def create_range_test(body: RangeTestRequest, caller: CallerDep) -> RangeTestOut:
    """Queue Leslie Smith's LR range test on the spec's model and data."""

    def create(session: Session) -> RangeTestOut:
        experiment = service.create(session, body, caller.name)
        session.flush()
        return service.out(session, experiment)

    return await in_session(create)


@router.get(
    "",
    response_model=RangeTestPage,
    responses={422: {"description": "Invalid query; `loc` is the parameter's path"}},
)
async def list_range_tests(
    status_: Annotated[
        list[RangeTestStatus] | None,
        Query(alias="status", description="Only tests in these statuses; repeat for several"),
    ] = None,
    cursor: Annotated[
        str | None,
        Query(max_length=200, description="`next_cursor` of the page before, as given"),
    ] = None,
    limit: Annotated[int, Query(ge=1, le=500)] = 50,
) -> RangeTestPage:
    """The range tests, newest first, with their suggestions (points: `GET /{test_id}`)."""
    statuses: list[str] = list(status_ or [])
    return await in_session(
        lambda s: service.list_page(s, statuses=statuses, cursor=cursor, limit=limit)
    )


@router.get("/{test_id}", response_model=RangeTestOut, responses=ERRORS)
async def get_range_test(
    test_id: RowId,
    from_step: Annotated[
        int, Query(ge=0, le=DB_INT_MAX, description="Only points with step >= this")
    ] = 0,
) -> RangeTestOut:
    """The test, its points so far and, once finished, the suggested LR and its rule."""
    return await in_session(lambda s: service.out(s, service.get(s, test_id), from_step))


@router.post("/{test_id}/cancel", response_model=RangeTestOut, responses=ERRORS)
async def cancel_range_test(test_id: RowId) -> RangeTestOut:
    """Queued: cancelled at once. Running: stops at the next batch; its points stay."""
    return await in_session(lambda s: service.out(s, service.cancel(s, test_id)))

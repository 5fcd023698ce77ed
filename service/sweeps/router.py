from __future__ import annotations

from typing import Annotated, Any

from fastapi import APIRouter, Query, status

from service.kit.auth import CallerDep
from service.kit.deps import SessionDep
from service.kit.params import RowId
from service.sweeps import service
from service.sweeps.schemas import SweepCreated, SweepDecisionOut, SweepIn, SweepOut, SweepPage

router = APIRouter(prefix="/v1/sweeps", tags=["sweeps"])

NOT_FOUND: dict[int | str, dict[str, Any]] = {404: {"description": "No such sweep"}}


@router.post(
    "",
    status_code=status.HTTP_201_CREATED,
    response_model=SweepCreated,
    responses={422: {"description": "Invalid sweep; `loc` names the field or trial's cause"}},
)
def create_sweep(request: SweepIn, session: SessionDep, caller: CallerDep) -> SweepCreated:
    """Expand `base` over `parameters` (grid or seeded random) or scan base_lr by decades and
    then inside the best one (lr_coarse_to_fine); every run is an ordinary experiment tagged
    `sweep=<id>`. All trials valid or none."""
    return service.create(session, request, caller.name)


@router.get("", response_model=SweepPage)
def list_sweeps(session: SessionDep, limit: Annotated[int, Query(ge=1, le=500)] = 50) -> SweepPage:
    """The newest sweeps first: strategy, pruner, status, runs per status, the swept fields,
    the metric that ranks them and the best run so far among those that finished well."""
    return service.list_page(session, limit)


@router.get("/{sweep_id}", response_model=SweepOut, responses=NOT_FOUND)
def get_sweep(sweep_id: RowId, session: SessionDep) -> SweepOut:
    """Status, stage, every run with its swept values and score, and the leaderboard."""
    return service.get(session, sweep_id)


@router.post("/{sweep_id}/cancel", response_model=SweepOut, responses=NOT_FOUND)
def cancel_sweep(sweep_id: RowId, session: SessionDep) -> SweepOut:
    """Cancel the runs not yet ended; no further stage starts."""
    return service.cancel(session, sweep_id)


@router.get("/{sweep_id}/decisions", response_model=list[SweepDecisionOut], responses=NOT_FOUND)
def sweep_decisions(sweep_id: RowId, session: SessionDep) -> list[SweepDecisionOut]:
    """The pruner's decisions in the order taken, each with the value, cutoff and count it
    compared and its reason in a sentence."""
    return service.decisions(session, sweep_id)

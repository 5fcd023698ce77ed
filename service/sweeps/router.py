from __future__ import annotations

from typing import Annotated, Any

from fastapi import APIRouter, Query, status

from service.kit.auth import CallerDep
from service.kit.deps import in_session
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
async def create_sweep(request: SweepIn, caller: CallerDep) -> SweepCreated:
    """Expand `base` over `parameters` (grid or seeded random) or scan base_lr by decades and
    then inside the best one (lr_coarse_to_fine); every run is an ordinary experiment tagged
    `sweep=<id>`. All trials valid or none."""
    return await in_session(lambda s: service.create(s, request, caller.name))


@router.get("", response_model=SweepPage)
async def list_sweeps(limit: Annotated[int, Query(ge=1, le=500)] = 50) -> SweepPage:
    """The newest sweeps first: strategy, pruner, status, runs per status, the swept fields,
    the metric that ranks them and the best run so far among those that finished well."""
    return await in_session(lambda s: service.list_page(s, limit))


@router.get("/{sweep_id}", response_model=SweepOut, responses=NOT_FOUND)
async def get_sweep(sweep_id: RowId) -> SweepOut:
    """Status, stage, every run with its swept values and score, and the leaderboard."""
    return await in_session(lambda s: service.get(s, sweep_id))


@router.post("/{sweep_id}/cancel", response_model=SweepOut, responses=NOT_FOUND)
async def cancel_sweep(sweep_id: RowId) -> SweepOut:
    """Cancel the runs not yet ended; no further stage starts."""
    return await in_session(lambda s: service.cancel(s, sweep_id))


@router.get("/{sweep_id}/decisions", response_model=list[SweepDecisionOut], responses=NOT_FOUND)
async def sweep_decisions(sweep_id: RowId) -> list[SweepDecisionOut]:
    """The pruner's decisions in the order taken, each with the value, cutoff and count it
    compared and its reason in a sentence."""
    return await in_session(lambda s: service.decisions(s, sweep_id))

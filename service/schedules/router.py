from __future__ import annotations

from fastapi import APIRouter

from service.schedules import service
from service.schedules.schemas import PreviewOut, PreviewRequest

router = APIRouter(prefix="/v1/schedules", tags=["schedules"])


@router.post(
    "/preview",
    response_model=PreviewOut,
    responses={422: {"description": "Invalid input; `loc` is the field path"}},
)
def preview_schedule(body: PreviewRequest) -> PreviewOut:
    """The LR per epoch of a schedule without training; with `monitor_values`, the
    ReduceLROnPlateau reductions and early stop a run would take over them."""
    return service.preview(body)

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Header, Response, status

from service.batches import service
from service.batches.schemas import BatchCreated, BatchIn, BatchOut
from service.experiments.spec_errors import batch_errors_beyond_schema
from service.kit.after_schema import after_schema
from service.kit.auth import CallerDep
from service.kit.deps import in_session

router = APIRouter(prefix="/v1/batches", tags=["batches"])


@router.post(
    "",
    status_code=status.HTTP_201_CREATED,
    response_model=BatchCreated,
    responses={
        409: {"description": "Idempotency-Key reused with another batch"},
        422: {"description": "Some spec is invalid; `loc` names its index and field"},
    },
)
@after_schema(batch_errors_beyond_schema)
async def create_batch(
    request: BatchIn,
    response: Response,
    caller: CallerDep,
    idempotency_key: Annotated[str | None, Header(max_length=200)] = None,
) -> BatchCreated:
    """Queue many experiments at once: all valid or none. Every error of every spec is
    reported (the schema's and torch's, the dataset's, the plugins' together; at most 50),
    each `loc` naming the spec's index (`["body", "experiments", 3, "base_lr"]`)."""
    created, new = await in_session(
        lambda s: service.create(s, request, idempotency_key, caller.name)
    )
    if not new:
        response.headers["Idempotent-Replayed"] = "true"
    return created


@router.get("/{batch_id}", response_model=BatchOut, responses={404: {"description": "No batch"}})
async def get_batch(batch_id: str) -> BatchOut:
    """The batch's experiments and how many are in each status."""
    return await in_session(lambda s: service.get(s, batch_id))

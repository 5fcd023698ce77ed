"""GET /v1/workers: the registry (what each worker offers, what it runs, when it was last seen)."""

from __future__ import annotations

from fastapi import APIRouter

from service.kit.deps import in_session
from service.workers import service
from service.workers.schemas import WorkerList

router = APIRouter(prefix="/v1/workers", tags=["workers"])


@router.get("", response_model=WorkerList)
async def list_workers() -> WorkerList:
    """Every registered worker: host, pid, queues, devices, plugins (with their params, defaults
    and package versions), current run, and whether it is alive, lost or stopped."""
    return await in_session(service.list_workers)

"""GET /v1/experiments/{id}/events and GET /v1/events: Server-Sent Events (docs/events.md)."""

from __future__ import annotations

from typing import Annotated, Any

from anyio import to_thread
from fastapi import APIRouter, Header, Query, Request
from fastapi.responses import StreamingResponse

from service.events import service, sse
from service.events.listener import GroupKey, Listener
from service.events.stream import group_events, run_events
from service.kit.auth import revocation_check
from service.kit.dbint import DB_INT_MAX, fits_db_int
from service.kit.errors import InvalidInput, NotFound
from service.kit.params import RowId, RowIdQuery

router = APIRouter(tags=["events"])

# Proxies must pass each event on as it comes (nginx buffers unless told not to).
HEADERS = {"Cache-Control": "no-cache", "X-Accel-Buffering": "no"}


def _stream(description: str) -> dict[int | str, dict[str, Any]]:
    return {
        200: {"description": description,
              "content": {sse.MEDIA_TYPE: {"schema": {"type": "string"}}}},
        404: {"description": "No such experiment, sweep or batch"},
        422: {"description": "Invalid input"},
    }  # fmt: skip


def _listener(request: Request) -> Listener:
    listener: Listener = request.app.state.events
    return listener


@router.get(
    "/v1/experiments/{experiment_id}/events",
    response_class=StreamingResponse,
    responses=_stream(
        "`epoch` (id: the epoch; data: the row as /metrics gives it), its `decision`s (as "
        "/decisions gives them), `status` (data: {experiment_id, status, epochs_run, epochs, "
        "attempt, best_epoch, best_value, stop_reason, error, cancel_requested}); the stream "
        "ends after the final status. A comment line every GLIDEPATH_EVENTS_KEEPALIVE_S."
    ),
)
async def experiment_events(
    request: Request,
    experiment_id: RowId,
    after_epoch: Annotated[
        int | None,
        Query(ge=0, le=DB_INT_MAX, description="Start after this epoch (Last-Event-ID wins)"),
    ] = None,
    last_event_id: Annotated[
        str | None,
        Header(
            max_length=40,
            pattern=r"^[0-9]{1,10}$",
            description="The last epoch received: resume after it",
        ),
    ] = None,
) -> StreamingResponse:
    """The run's events: the stored ones (replay), then each as it is committed. Epochs that a
    run resumed from an earlier checkpoint rewrites are sent again, with their ids."""
    cursor = after_epoch or 0
    if last_event_id is not None and last_event_id.strip():
        given = last_event_id.strip()
        if not given.isdigit() or not fits_db_int(int(given)):
            raise InvalidInput(
                f"Last-Event-ID must be an epoch number (0 to {DB_INT_MAX}); got {given!r}",
                loc=["header", "Last-Event-ID"],
            )
        cursor = int(given)
    listener = _listener(request)
    # Followed already: it exists (deleted since, its stream just ends). Spares the crowd of a
    # popular run a read each.
    if not listener.following(experiment_id) and not await to_thread.run_sync(
        service.run_exists, experiment_id
    ):
        raise NotFound(f"experiment {experiment_id} not found", loc=["path", "experiment_id"])
    body = run_events(listener, experiment_id, cursor, revocation_check(request))
    return StreamingResponse(body, media_type=sse.MEDIA_TYPE, headers=HEADERS)


@router.get(
    "/v1/events",
    response_class=StreamingResponse,
    responses=_stream(
        "A `status` event per run (data as a run's stream gives it), then one each time a "
        "run's status or progress (epochs_run, best) changes; `end` (data: {runs, counts}) once "
        "every run of the batch, or of the sweep once it has ended, is final (a group whose runs "
        "were all deleted ends too). Without a filter: "
        "the training runs not final, and each one submitted later; it never ends."
    ),
)
async def events(
    request: Request,
    sweep_id: RowIdQuery = None,
    batch_id: Annotated[str | None, Query(max_length=40)] = None,
) -> StreamingResponse:
    """Status and progress of many runs (the list pages): a sweep's, a batch's, or all."""
    key: GroupKey
    if sweep_id is not None and batch_id is not None:
        raise InvalidInput("give sweep_id or batch_id, not both", loc=["query", "batch_id"])
    if sweep_id is not None:
        key, loc = ("sweep", sweep_id), "sweep_id"
    elif batch_id is not None:
        key, loc = ("batch", batch_id), "batch_id"
    else:
        key, loc = ("all", None), ""
    if not await to_thread.run_sync(service.group_exists, *key):
        raise NotFound(f"{key[0]} {key[1]} not found", loc=["query", loc])
    body = group_events(_listener(request), key, revocation_check(request))
    return StreamingResponse(body, media_type=sse.MEDIA_TYPE, headers=HEADERS)

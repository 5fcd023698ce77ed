from __future__ import annotations

from typing import Annotated, Any

from fastapi import APIRouter, Header, Query, Request, Response, status
from pydantic_core import to_json
from sqlalchemy.orm import Session

from service.experiments import downloads, export, lr_trace, service
from service.experiments.listing import DEFAULT_SORT, ListSort
from service.experiments.polls import PollCache
from service.experiments.schemas import (
    CompareOut,
    DecisionList,
    ExperimentOut,
    ExperimentPage,
    LRTrace,
    MetricsPage,
)
from service.experiments.spec_errors import errors_beyond_schema
from service.kit.after_schema import after_schema
from service.kit.auth import CallerDep
from service.kit.db import read_scope
from service.kit.dbint import DB_INT_MAX, fits_db_int
from service.kit.deps import in_session
from service.kit.errors import InvalidInput
from service.kit.params import RowId, RowIdQuery, segment_beside
from service.training.spec import ExperimentSpec
from service.training.status import ExperimentStatus

router = APIRouter(prefix="/v1/experiments", tags=["experiments"])
# One experiment's path: its id is any segment but `compare`, so a method only the id serves
# (DELETE) is a 405 at /compare rather than a 422 that "compare" is no id.
ONE = "/{experiment_id:" + segment_beside("compare") + "}"

ERRORS: dict[int | str, dict[str, Any]] = {
    404: {"description": "No such experiment"},
    422: {"description": "Invalid input"},
}


@router.post(
    "",
    status_code=status.HTTP_201_CREATED,
    response_model=ExperimentOut,
    responses={
        409: {"description": "Idempotency-Key reused with another spec"},
        422: {"description": "Invalid spec: every mistake, each at its field path"},
    },
)
@after_schema(errors_beyond_schema)
async def create_experiment(
    spec: ExperimentSpec,
    response: Response,
    caller: CallerDep,
    idempotency_key: Annotated[str | None, Header(max_length=200)] = None,
) -> ExperimentOut:
    """Queue one experiment. A repeated `Idempotency-Key` returns the first one unchanged."""

    def create(session: Session) -> tuple[ExperimentOut, bool]:
        experiment, created = service.create(session, spec, idempotency_key, caller.name)
        if created:
            return service.out_created(experiment, spec.tags), True
        return service.out(session, experiment), False

    out, created = await in_session(create)
    if not created:
        response.headers["Idempotent-Replayed"] = "true"
    return out


@router.get("", response_model=ExperimentPage)
async def list_experiments(
    status_: Annotated[
        list[str] | None, Query(alias="status", description="Repeat or comma-separate")
    ] = None,
    batch_id: str | None = None,
    sweep_id: RowIdQuery = None,
    tag: Annotated[str | None, Query(description="`key` or `key:value`")] = None,
    q: Annotated[
        str | None,
        Query(max_length=200, description="Only runs whose name contains this, ignoring case"),
    ] = None,
    sort: Annotated[
        ListSort,
        Query(
            description="`-` for descending. created: creation order (the id's); best: the "
            "run's best value of its own `best.metric`; base_lr: the spec's; names ignore "
            "case; statuses sort by name. Runs without the value (no best yet) come last "
            "either way, ties by id. `next_cursor` pages the same order; a cursor of another "
            "sort is a 422"
        ),
    ] = DEFAULT_SORT,
    cursor: Annotated[
        str | None, Query(max_length=2000, description="`next_cursor` of the page before")
    ] = None,
    limit: Annotated[int, Query(ge=1, le=500)] = 50,
) -> ExperimentPage:
    """Training runs (range tests are at /v1/lr-range-tests), newest first unless `sort` says
    otherwise, filtered by status, batch, sweep, tag and name."""
    statuses = [s for v in status_ or [] for s in v.split(",") if s]
    for s in statuses:
        if s not in {v.value for v in ExperimentStatus}:
            raise InvalidInput(
                f"unknown status {s!r}; allowed: {', '.join(ExperimentStatus)}",
                loc=["query", "status"],
            )
    return await in_session(
        lambda s: service.list_page(s, statuses=statuses, batch_id=batch_id, sweep_id=sweep_id,
                                    tag=tag, cursor=cursor, limit=limit, q=q, sort=sort)
    )  # fmt: skip


MAX_COMPARE = 50
COMPARE_IDS = "^ *[0-9]{1,10} *(, *[0-9]{1,10} *)*$"


@router.get("/compare", response_model=CompareOut, responses=ERRORS)
async def compare_experiments(
    ids: Annotated[
        list[str],
        Query(
            description="Comma-separated or repeated: `ids=1,2,3`",
            # Documented, not enforced here: the handler names the offending part itself.
            json_schema_extra={"items": {"type": "string", "pattern": COMPARE_IDS}},
        ),
    ],
) -> CompareOut:
    """Aligned per-epoch series (LR and metrics) of several experiments, with their decisions."""
    parsed: list[int] = []
    for part in (p.strip() for v in ids for p in v.split(",")):
        if not part.isdigit():
            raise InvalidInput(
                f"ids are run ids, positive whole numbers; got {part!r}", loc=["query", "ids"]
            )
        if not fits_db_int(int(part)):
            raise InvalidInput(f"id {part} is out of range (at most {DB_INT_MAX})",
                               loc=["query", "ids"])  # fmt: skip
        if int(part) not in parsed:
            parsed.append(int(part))
    if not 1 <= len(parsed) <= MAX_COMPARE:
        raise InvalidInput(f"give 1 to {MAX_COMPARE} ids", loc=["query", "ids"])
    return await in_session(lambda s: service.compare(s, parsed))


@router.get(ONE, response_model=ExperimentOut, responses=ERRORS)
async def get_experiment(request: Request, experiment_id: RowId) -> Response:
    """What scripts poll to wait for a run (`glidepath submit --wait`, the Python client): from
    this process's cache while the run has not changed (polls.py), else one hop to the thread
    pool for the whole read, the model dumped once rather than validated again against
    `response_model` (which still documents it). Through a sync route, its session dependency
    and no cache, a poll cost the API ~8 ms of CPU: polled every 10 ms, most of a core taken
    from the training it watches on a small machine."""

    def read() -> bytes:
        with read_scope() as session:
            return service.detail_json(session, experiment_id)

    polls: PollCache = request.app.state.polls
    return Response(await polls.detail(experiment_id, read), media_type="application/json")


@router.get(
    "/{experiment_id}/metrics",
    response_model=MetricsPage,
    responses=ERRORS,
)
async def get_metrics(
    request: Request,
    experiment_id: RowId,
    after_epoch: Annotated[
        int, Query(ge=0, le=DB_INT_MAX, description="Rows with epoch > this; 0 = all")
    ] = 0,
    limit: Annotated[int, Query(ge=1, le=10_000)] = 1000,
) -> Response:
    """The polling hot path (every open dashboard, every `watch`): cut from this process's
    cache of the run's last rows while the run has not changed (polls.py), else one hop to the
    thread pool for the whole read; serialized once rather than built as models and validated
    again against `response_model` (which still documents it)."""
    polls: PollCache = request.app.state.polls
    body = await polls.page(experiment_id, after_epoch, limit)
    return Response(body, media_type="application/json")


@router.get(
    "/{experiment_id}/metrics.csv",
    response_class=Response,
    responses={
        200: {
            "description": "Every stored epoch as CSV (a header row, then one row per epoch in "
            "order: epoch, lr, lr_min, lr_max, train_loss, val_loss, val_accuracy or val_mae, "
            "duration_s, decision, and skipped_steps for fp16 runs; an empty cell is null), as "
            "an attachment `experiment-<id>-metrics.csv`",
            "content": {export.MEDIA_TYPE: {"schema": {"type": "string"}}},
        },
        **ERRORS,
    },
)
async def export_metrics_csv(experiment_id: RowId) -> Response:
    """Download the run's metrics as CSV; for JSON, GET its metrics page
    (`/v1/experiments/{id}/metrics?limit=10000`, then `after_epoch` for more)."""
    body = await in_session(lambda s: export.metrics_csv(s, experiment_id))
    disposition = f'attachment; filename="{export.filename(experiment_id)}"'
    return Response(body, media_type=export.MEDIA_TYPE,
                    headers={"Content-Disposition": disposition})  # fmt: skip


@router.get(
    "/{experiment_id}/lr",
    response_model=LRTrace,
    responses={
        **ERRORS,
        409: {"description": "Per step: a range test, a run started before steps were kept, "
              "or one whose steps cannot be computed (no steps_per_epoch yet)"},
    },
)  # fmt: skip
async def get_lr(
    experiment_id: RowId,
    resolution: Annotated[
        lr_trace.Resolution,
        Query(description="epoch: one point per stored epoch (lr, lr_min, lr_max); step: one "
              "per optimizer step so far"),
    ] = "epoch",
    max_points: Annotated[
        int | None,
        Query(ge=1, le=lr_trace.MAX_POINTS,
              description="Downsample to at most this many points: the first and last, and "
              "each bucket's minimum and maximum LR"),
    ] = None,
) -> Response:  # fmt: skip
    """The run's LR per epoch or per optimizer step: recorded, or (per step, for schedules that
    do not depend on data) computed by the worker's schedule code."""
    body = await in_session(lambda s: to_json(lr_trace.trace(s, experiment_id, resolution,
                                                             max_points)))  # fmt: skip
    return Response(body, media_type="application/json")


@router.get("/{experiment_id}/decisions", response_model=DecisionList, responses=ERRORS)
async def get_decisions(experiment_id: RowId) -> DecisionList:
    """Every LR reduction and the stop, with the numbers and a sentence that explain it."""
    return await in_session(lambda s: service.decisions(s, experiment_id))


@router.post("/{experiment_id}/cancel", response_model=ExperimentOut, responses=ERRORS)
async def cancel_experiment(experiment_id: RowId) -> ExperimentOut:
    """Queued: cancelled at once. Running: stops at the next batch boundary."""
    return await in_session(lambda s: service.out(s, service.cancel(s, experiment_id)))


MODEL_ANSWERS: dict[int | str, dict[str, Any]] = {
        200: {
            "description": "The final model (safetensors: tensors only, with the spec, status, "
            "epochs_run and test_metrics in its metadata); `ETag` is its sha256, verified "
            "before the first byte is sent",
            "content": {downloads.MEDIA_TYPE: {"schema": {"type": "string", "format": "binary"}}},
        },
        304: {"description": "`If-None-Match` names this model's sha256"},
        404: {"description": "No such experiment"},
        409: {"description": "No model: not ended yet, ended without one (diverged, failed, "
              "cancelled while queued), an LR range test (which keeps none), or the stored one "
              "is missing or corrupt"},
        503: {"description": "The artifact store is unavailable; see Retry-After"},
}  # fmt: skip
IfNoneMatch = Annotated[str | None, Header(max_length=1000)]


@router.get("/{experiment_id}/model", response_class=Response, responses=MODEL_ANSWERS)
async def download_model(experiment_id: RowId, if_none_match: IfNoneMatch = None) -> Response:
    """Download the run's final model as `experiment-<id>.safetensors`."""
    return await in_session(lambda s: downloads.response(s, experiment_id, if_none_match))


@router.head("/{experiment_id}/model", response_class=Response,
             responses={k: v for k, v in MODEL_ANSWERS.items() if k != 503})  # fmt: skip
async def model_headers(experiment_id: RowId, if_none_match: IfNoneMatch = None) -> Response:
    """The model download's headers without its bytes: `Content-Length`, `ETag` (its
    sha256) and the file name, from the model's record (the store is not read)."""
    return await in_session(lambda s: downloads.head(s, experiment_id, if_none_match))


@router.delete(
    ONE,
    status_code=status.HTTP_204_NO_CONTENT,
    response_class=Response,
    responses={
        404: {"description": "No such experiment"},
        409: {"description": "The run is queued or running: cancel it first"},
        503: {"description": "The artifact store is unavailable; nothing was deleted"},
    },
)
async def delete_experiment(experiment_id: RowId) -> Response:
    """Delete an ended run: its model and checkpoints in the artifact store, then its rows
    (epochs, decisions, tags, attempts). A run of a sweep may be deleted; the sweep no longer
    lists it."""
    await in_session(lambda s: service.delete(s, experiment_id))
    return Response(status_code=status.HTTP_204_NO_CONTENT)

"""What the experiments API does, as plain functions over a session (the route commits)."""

from __future__ import annotations

import base64
import hashlib
import json
import math
from typing import Any

from sqlalchemy import Row
from sqlalchemy.orm import Session

from service.artifacts import service as artifacts
from service.artifacts.repository import ArtifactRepository
from service.artifacts.store import StoreUnavailable
from service.datasets import builtin
from service.datasets import service as datasets
from service.dispatch import service as dispatch
from service.experiments import listing
from service.experiments.listing import DEFAULT_SORT, ListSort
from service.experiments.models import Experiment
from service.experiments.repository import PAGE_COLUMNS, ExperimentRepository
from service.experiments.schemas import (
    CompareOut,
    DecisionList,
    DecisionOut,
    EpochOut,
    ExperimentOut,
    ExperimentPage,
    MetricsPage,
    SeriesOut,
    unset_keys,
)
from service.kit.conflicts import insert_or_winner
from service.kit.dbint import fits_db_int
from service.kit.errors import (
    MAX_ERRORS,
    Conflict,
    ErrorItem,
    InvalidInput,
    NotFound,
    Unavailable,
    item,
)
from service.training.checks import check_spec, derived_sizes
from service.training.datasets import DatasetInfo
from service.training.spec import DatasetRef, ExperimentSpec
from service.training.status import FINAL, ExperimentStatus
from service.workers import service as workers
from service.workers.queues import capability_queue


def queue_for(spec: ExperimentSpec, plugin_dataset: bool = False) -> str:
    """`auto` runs on whichever worker is free; an explicit device goes to workers that have it;
    a run that needs a plugin goes to the workers that offer it (workers/queues.py)."""
    base = "auto" if spec.device == "auto" else "cpu" if spec.device == "cpu" else "gpu"
    return capability_queue(
        base, spec.model.type if spec.model.is_plugin else None,
        spec.dataset_name if plugin_dataset else None,
    )  # fmt: skip


def dataset_info(
    session: Session, ref: DatasetRef, loc: list[str | int]
) -> tuple[DatasetInfo | None, list[ErrorItem]]:
    """What the checks know of the spec's dataset: a built-in's or an upload's description, or
    None for a plugin dataset a worker offers (its size and task are known only once a worker
    has built it); and what is wrong with the reference. Names resolve in that order: built-in,
    upload, plugin; with params, a name means a plugin (as the worker loads it)."""
    info = datasets.describe(session, ref.type)
    if info is not None and not ref.params:
        return info, []
    # Built-ins and uploads take no params. A plugin may share an upload's name (never a
    # built-in's: workers leave such a plugin out), and then params pick the plugin.
    if info is not None and (
        ref.type in builtin.NAMES or ref.type not in workers.offer(session).datasets
    ):
        kind = "built-in" if ref.type in builtin.NAMES else "uploaded"
        msg = (
            f"{kind} dataset {ref.type!r} takes no params; give its name alone "
            "(params are for datasets that workers' plugins offer)"
        )
        # Its description still serves the checks of the rest of the spec (split, model).
        return info, [item([*loc, "params"], msg, "unexpected_params")]
    known = [*builtin.NAMES, *(d.name for d in datasets.uploaded(session))]
    return None, workers.check_dataset(session, ref.type, ref.params, loc, known)


def spec_hash(spec: ExperimentSpec) -> str:
    canonical = json.dumps(spec.model_dump(mode="json"), sort_keys=True, separators=(",", ":"))
    return hashlib.sha256(canonical.encode()).hexdigest()


TAG_SEPARATOR = ":"  # of `GET /v1/experiments?tag=key:value` (list_page)


def tag_errors(tags: dict[str, str]) -> list[ErrorItem]:
    """A tag key with the filter's separator could never be filtered by value (the filter splits
    at the first one). Checked when a spec is submitted, not by the spec's schema: a spec stored
    or queued with such a key still validates when a worker or a sweep's next stage reads it."""
    return [
        item(
            ["tags", key],
            f"tag key {key!r} contains {TAG_SEPARATOR!r}: the list filter "
            f"tag=key{TAG_SEPARATOR}value splits at the first {TAG_SEPARATOR!r}, so runs could "
            "never be filtered by this tag's value; use another character in the key",
            "invalid_tag",
        )
        for key in tags
        if TAG_SEPARATOR in key
    ]


def validate(
    session: Session, spec: ExperimentSpec, loc: list[str | int], *, submitted: bool = True
) -> Experiment:
    """Check a parsed spec against torch and its dataset; return the unsaved row. `submitted`:
    False for a spec accepted before (a sweep's stage 2, built from its stored request), which
    the rules for new submissions alone (`tag_errors`) do not refuse now."""
    info, errors = dataset_info(session, spec.dataset, ["dataset"])
    errors += check_spec(spec, info) + workers.check_model(session, spec.model, ["model"])
    if submitted:
        errors += tag_errors(spec.tags)
    if errors:
        for e in errors:
            e["loc"] = [*loc, *e["loc"]]
        raise InvalidInput.of(errors)
    # A plugin dataset's sizes are the worker's to write once it has built the data.
    sizes, steps = derived_sizes(spec, info) if info is not None else (None, None)
    return Experiment(
        name=spec.name,
        spec=spec.model_dump(mode="json"),
        status=ExperimentStatus.QUEUED,
        queue=queue_for(spec, plugin_dataset=info is None),
        split_sizes=sizes,
        steps_per_epoch=steps,
    )


def validate_many(
    session: Session, specs: list[ExperimentSpec], loc: list[str | int]
) -> list[Experiment]:
    """`validate` for many specs at once: every error of every spec is reported (its `loc`
    names the index) up to MAX_ERRORS, and nothing is returned unless all are valid."""
    rows: list[Experiment] = []
    errors = []
    for i, spec in enumerate(specs):
        try:
            rows.append(validate(session, spec, [*loc, i]))
        except InvalidInput as exc:
            errors.extend(exc.items)
            if len(errors) >= MAX_ERRORS:
                break  # the batch is refused either way: the rest need not be checked
    if errors:
        raise InvalidInput.of(errors[:MAX_ERRORS])
    return rows


def insert_many(session: Session, rows: list[Experiment]) -> list[int]:
    """Insert validated rows with their tags and outbox messages in the caller's transaction
    (one multi-row INSERT per table; the messages are sent when it commits)."""
    ExperimentRepository(session).add_many(rows)
    for row in rows:
        dispatch.enqueue(session, row.id, row.queue, dispatch.RUN_TASK)
    return [row.id for row in rows]


def create(
    session: Session,
    spec: ExperimentSpec,
    idempotency_key: str | None = None,
    created_by: str | None = None,
) -> tuple[Experiment, bool]:
    """Insert the run and its outbox message. Returns (experiment, created); a repeated
    Idempotency-Key returns the first experiment with created=False. `created_by`: the caller's
    token name."""
    repo = ExperimentRepository(session)
    # The spec's hash is only ever compared with a replay of its Idempotency-Key.
    digest = spec_hash(spec) if idempotency_key else None
    if idempotency_key:
        existing = repo.by_idempotency_key(idempotency_key)
        if existing is not None:
            return _replay(existing, digest), False
    experiment = validate(session, spec, ["body"])
    experiment.idempotency_key = idempotency_key
    experiment.request_hash = digest
    experiment.created_by = created_by
    # A concurrent request with the same key may have won the insert: answer as its replay.
    saved, inserted = insert_or_winner(
        session,
        lambda: repo.add(experiment, spec.tags),
        lambda: repo.by_idempotency_key(idempotency_key) if idempotency_key else None,
    )
    if not inserted:
        return _replay(saved, digest), False
    dispatch.enqueue(session, experiment.id, experiment.queue, dispatch.RUN_TASK)
    return experiment, True


def _replay(existing: Experiment, digest: str | None) -> Experiment:
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


PATH_ID: list[str | int] = ["path", "experiment_id"]


def out_created(experiment: Experiment, tags: dict[str, str]) -> ExperimentOut:
    """A run this request inserted: it has the tags it was given and no attempt or model yet,
    so nothing is read back (three queries of a POST's seven on PostgreSQL)."""
    return ExperimentOut.of(experiment, dict(tags), [], None)


def out(session: Session, experiment: Experiment | Row[Any]) -> ExperimentOut:
    """The run as the API shows it. A run never claimed has no attempts, and one not ended has
    no model (its row is written with the final status): those reads are skipped, one or two of
    four queries in the read that a poll of a live run makes after each of its writes."""
    repo = ExperimentRepository(session)
    i = experiment.id
    ended = experiment.status in FINAL
    model = ArtifactRepository(session).models_of([i]).get(i) if ended else None
    attempts = repo.attempts_of([i])[i] if experiment.attempt > 0 else []
    return ExperimentOut.of(experiment, repo.tags_of([i])[i], attempts, model)


def detail_json(session: Session, experiment_id: int) -> bytes:
    """`GET /v1/experiments/{id}` as sent: what scripts poll to wait for a run, read anew after
    each of its changes. The row is read as plain Core, not loaded as an ORM object (`out`)."""
    row = ExperimentRepository(session).row(experiment_id)
    if row is None:
        raise NotFound(f"experiment {experiment_id} not found", loc=PATH_ID)
    return out(session, row).model_dump_json().encode()


def encode_cursor(last_id: int) -> str:
    return base64.urlsafe_b64encode(json.dumps({"before": last_id}).encode()).decode()


def decode_cursor(cursor: str) -> int:
    try:
        before = json.loads(base64.urlsafe_b64decode(cursor.encode()))["before"]
        if not isinstance(before, int) or not fits_db_int(before):
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
    sweep_id: int | None = None,
    tag: str | None,
    cursor: str | None,
    limit: int,
    q: str | None = None,
    sort: ListSort = DEFAULT_SORT,
) -> ExperimentPage:
    """A page of runs in `sort`'s order (`listing`); `q` keeps the names that contain it,
    ignoring case."""
    repo = ExperimentRepository(session)
    tag_filter: tuple[str, str | None] | None = None
    if tag:
        key, sep, value = tag.partition(TAG_SEPARATOR)
        tag_filter = (key, value if sep else None)
    keyed = repo.search_sorted(
        statuses=statuses,
        batch_id=batch_id,
        sweep_id=sweep_id,
        tag=tag_filter,
        sort=sort,
        after=listing.decode(cursor, sort) if cursor else None,
        limit=limit + 1,
        name_contains=q or None,
    )
    more = len(keyed) > limit
    keyed = keyed[:limit]
    rows = [e for e, _ in keyed]
    # One query per table for the whole page, never one per run.
    ids = [r.id for r in rows]
    tags, attempts = repo.tags_of(ids), repo.attempts_of(ids)
    models = ArtifactRepository(session).models_of(ids)
    return ExperimentPage(
        items=[ExperimentOut.of(r, tags[r.id], attempts[r.id], models.get(r.id)) for r in rows],
        next_cursor=listing.encode(sort, keyed[-1][1]) if more else None,
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


_PAGE_KEYS = tuple(column.key for column in PAGE_COLUMNS)


def metrics_json(session: Session, experiment_id: int, after_epoch: int, limit: int) -> bytes:
    """`metrics(...)` as the JSON `MetricsPage` makes of it, for the polling hot path: the
    status and the page's columns read as tuples by one prepared statement, each row dumped once
    (no ORM object, no model per row: a page of 100 rows costs a fifth of what it did)."""
    status, rows = ExperimentRepository(session).poll(experiment_id, after_epoch, limit)
    if status is None:
        raise NotFound(f"experiment {experiment_id} not found", loc=PATH_ID)
    next_after = rows[-1][0] if rows else after_epoch
    return page_json(experiment_id, status, [row_json(r) for r in rows], next_after)


def row_json(values: tuple[Any, ...]) -> bytes:
    """One epoch row of a metrics page (`PAGE_COLUMNS` values) as `EpochOut` dumps it: the
    optional keys left out when null, non-finite numbers null."""
    row = dict(zip(_PAGE_KEYS, values, strict=True))
    for key in unset_keys(row):
        del row[key]
    for key, value in row.items():
        if type(value) is float and not math.isfinite(value):
            row[key] = None
    return json.dumps(row, separators=(",", ":")).encode()


def page_json(experiment_id: int, status: str, rows: list[bytes], next_after_epoch: int) -> bytes:
    """A `MetricsPage` from rows already dumped (`row_json`): the bytes `json.dumps` would make of
    the whole page, so a page cut from cached rows is the page read from the database."""
    return b'{"experiment_id":%d,"status":%s,"epochs":[%s],"next_after_epoch":%d}' % (
        experiment_id, json.dumps(status).encode(), b",".join(rows), next_after_epoch,
    )  # fmt: skip


def decisions(session: Session, experiment_id: int) -> DecisionList:
    experiment = get(session, experiment_id)
    return DecisionList.of(experiment, ExperimentRepository(session).decisions(experiment_id))


def cancel(session: Session, experiment_id: int) -> Experiment:
    experiment = get(session, experiment_id)
    artifacts.drop_checkpoints(session, ExperimentRepository(session).cancel(experiment_id))
    session.flush()
    session.refresh(experiment)
    return experiment


def delete(session: Session, experiment_id: int) -> None:
    """Delete an ended run: its objects in the artifact store (model, kept checkpoints) first,
    then its rows. A queued or running run is a 409 (cancel it first); a run of a sweep may be
    deleted (the sweep's leaderboard no longer lists it). An unreachable store is a 503 with
    nothing deleted from the database, so the DELETE can simply be repeated."""
    experiment = get(session, experiment_id)
    if experiment.status not in FINAL:
        raise Conflict(
            f"experiment {experiment_id} is {experiment.status}: cancel it first "
            f"(POST /v1/experiments/{experiment_id}/cancel, or `glidepath cancel "
            f"{experiment_id}`) and delete it once it has ended",
            loc=PATH_ID,
        )
    repo = ArtifactRepository(session)
    store = artifacts.store()
    try:
        for row in repo.of_run(experiment_id):
            store.delete(row.key)  # a missing object is fine: deleting it is what we want
    except (StoreUnavailable, OSError) as exc:
        raise Unavailable(
            f"the artifact store is unavailable; experiment {experiment_id} is kept, retry the "
            f"DELETE shortly: {exc}",
            loc=PATH_ID,
            headers={"Retry-After": "5"},
        ) from exc
    repo.forget_run(experiment_id)
    if not ExperimentRepository(session).delete_ended(experiment_id):
        # Deleted by a concurrent request since we read it.
        raise NotFound(f"experiment {experiment_id} not found", loc=PATH_ID)


def compare(session: Session, ids: list[int]) -> CompareOut:
    """Several runs' per-epoch series on one epoch axis, in the order asked for."""
    repo = ExperimentRepository(session)
    runs = {e.id: e for e in repo.get_many(ids)}
    missing = [i for i in ids if i not in runs]
    if missing:
        raise NotFound(
            f"experiments not found: {', '.join(map(str, missing))}", loc=["query", "ids"]
        )
    rows = repo.epochs_of(ids)
    events = repo.decisions_of(ids)
    tags = repo.tags_of(ids)
    n = max((r.epoch for r in rows), default=0)
    # One pass over the rows (not one per run): each row fills its own run's columns.
    values: dict[int, dict[str, list[float | None]]] = {
        i: {
            k: [None] * n
            for k in ("lr", "train_loss", "val_loss", "val_accuracy", "val_mae", "duration_s")
        }
        for i in ids
    }
    for r in rows:
        for key, column in values[r.experiment_id].items():
            column[r.epoch - 1] = getattr(r, key)
    series = []
    for i in ids:
        series.append(
            SeriesOut(
                experiment_id=i,
                name=runs[i].name,
                status=runs[i].status,
                spec=runs[i].spec,
                tags=tags[i],
                steps_per_epoch=runs[i].steps_per_epoch,
                decisions=[DecisionOut.model_validate(d) for d in events if d.experiment_id == i],
                **values[i],
            )
        )
    return CompareOut(epochs=list(range(1, n + 1)), series=series)

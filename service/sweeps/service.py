"""Sweeps: expand a base spec over the searched fields into ordinary experiments, launch the
finer stage of an lr_coarse_to_fine sweep when its coarse stage has finished, rank the runs.

`advance` is called after every run of a sweep ends (by the worker's task) and by the relay's
periodic tick (runs ended by the reaper or by a cancel), so a sweep moves on whoever ends its
last run; a conditional UPDATE on `sweeps.stage` makes launching stage 2 happen exactly once.
"""

from __future__ import annotations

import logging
import math
from collections.abc import Mapping
from typing import Any

from pydantic import ValidationError
from sqlalchemy import func, select, update
from sqlalchemy.orm import Session

from service.datasets import service as datasets
from service.experiments import service as experiments
from service.experiments.models import EpochRow, Experiment
from service.experiments.repository import ExperimentRepository
from service.kit.db import session_scope
from service.kit.errors import ErrorItem, InvalidInput, NotFound, item
from service.kit.time import as_utc, utcnow
from service.sweeps import expand
from service.sweeps.models import Sweep
from service.sweeps.schemas import (
    MAX_TRIALS,
    DistributionIn,
    LeaderboardEntry,
    SweepCreated,
    SweepIn,
    SweepOut,
    SweepPage,
    SweepRun,
    SweepSummary,
)
from service.training.spec import ExperimentSpec, metrics_for
from service.training.status import FINAL as FINAL_STATUSES

log = logging.getLogger(__name__)

MAX_ERRORS = 50
Trial = dict[str, Any]  # dotted path -> value


def _mode(request: SweepIn) -> str:
    return request.mode or ("max" if request.metric == "val_accuracy" else "min")


def _choices(request: SweepIn) -> dict[str, list[Any] | DistributionIn]:
    """Each parameter's values: a non-empty list, or a distribution (`{distribution, low,
    high}`)."""
    out: dict[str, list[Any] | DistributionIn] = {}
    for path, value in request.parameters.items():
        loc: list[str | int] = ["body", "parameters", path]
        if isinstance(value, list):
            if not 1 <= len(value) <= MAX_TRIALS:
                raise InvalidInput(f"give 1 to {MAX_TRIALS} values", loc=loc)
            out[path] = value
        elif isinstance(value, dict):
            try:
                out[path] = DistributionIn.model_validate(value)
            except ValidationError as exc:
                raise InvalidInput.of(
                    [item([*loc, *e["loc"]], e["msg"], e["type"]) for e in exc.errors()]
                ) from None
        else:
            raise InvalidInput(
                "a list of values or {distribution: uniform|log_uniform|int_uniform, low, high}",
                loc=loc,
            )
    return out


def _trials(request: SweepIn) -> list[Trial]:
    """Stage 1's overrides, or a 422 naming the offending field."""
    body: list[str | int] = ["body"]
    parameters = _choices(request)
    for path, choice in parameters.items():
        if path.split(".")[0] not in ExperimentSpec.model_fields or path.split(".")[0] == "tags":
            allowed = ", ".join(sorted(set(ExperimentSpec.model_fields) - {"tags"}))
            raise InvalidInput(
                f"{path!r} is not a spec field; it must start with one of: {allowed}",
                loc=[*body, "parameters", path],
            )
        if request.strategy == "grid" and isinstance(choice, DistributionIn):
            raise InvalidInput(
                "grid takes a list of values; distributions are for strategy random",
                loc=[*body, "parameters", path],
            )
    if request.strategy != "random" and request.trials is not None:
        raise InvalidInput("trials is for strategy random", loc=[*body, "trials"])
    if request.strategy == "lr_coarse_to_fine":
        if request.parameters:
            raise InvalidInput(
                "lr_coarse_to_fine scans base_lr itself and takes no parameters",
                loc=[*body, "parameters"],
            )
        if request.min_lr >= request.max_lr:
            raise InvalidInput("max_lr must be greater than min_lr", loc=[*body, "max_lr"])
        lrs = expand.decades(request.min_lr, request.max_lr)
        if len(lrs) > 30:
            raise InvalidInput("at most 30 decades", loc=[*body, "min_lr"])
        return [{"base_lr": lr} for lr in lrs]
    if not request.parameters:
        raise InvalidInput(f"{request.strategy} needs parameters", loc=[*body, "parameters"])
    if request.strategy == "grid":
        lists = [v for v in parameters.values() if isinstance(v, list)]
        size = math.prod([len(v) for v in lists])
        if size > MAX_TRIALS:
            raise InvalidInput(
                f"the grid has {size} combinations; at most {MAX_TRIALS}",
                loc=[*body, "parameters"],
            )
        return expand.grid(lists_of(parameters))
    if request.trials is None:
        raise InvalidInput("random needs trials (how many draws)", loc=[*body, "trials"])
    choices: dict[str, expand.Choice] = {
        path: expand.Distribution(c.distribution, c.low, c.high)
        if isinstance(c, DistributionIn)
        else c
        for path, c in parameters.items()
    }
    return expand.random_trials(choices, request.trials, request.seed)


def lists_of(parameters: dict[str, list[Any] | DistributionIn]) -> dict[str, list[Any]]:
    return {p: v for p, v in parameters.items() if isinstance(v, list)}


def _where(path: str, strategy: str) -> list[str | int]:
    if strategy == "lr_coarse_to_fine":
        return ["body", "min_lr"]  # base_lr comes from the min_lr..max_lr scan
    return ["body", "parameters", path]


def _remap(errors: list[ErrorItem], trial: Trial, i: int, strategy: str) -> list[ErrorItem]:
    """Point an error in a trial's spec at what caused it: a swept field or the base spec."""
    out = []
    for e in errors:
        dotted = ".".join(str(x) for x in e["loc"])
        cause = next(
            (
                p
                for p in trial
                if dotted == p or dotted.startswith(p + ".") or p.startswith(dotted + ".")
            ),
            None,
        )
        if cause is None:
            # The base's field, but maybe only wrong with this trial's values (Adam given the
            # base's SGD momentum): say which trial met it.
            shown = ", ".join(f"{p}={v!r}" for p, v in trial.items())
            msg = f"{e['msg']} (first met in trial {i}: {shown})"
            out.append(item(["body", "base", *e["loc"]], msg, e["type"]))
        else:
            msg = f"trial {i} with {cause}={trial[cause]!r}: {e['msg']}"
            out.append(item(_where(cause, strategy), msg, e["type"]))
    return out


def _run_name(prefix: str, trial: Trial) -> str:
    def show(v: Any) -> str:
        return f"{v:g}" if isinstance(v, float) else str(v)

    return f"{prefix} {' '.join(f'{p}={show(v)}' for p, v in trial.items())}"[:200]


def _build(session: Session, request: SweepIn, trials: list[Trial], stage: int) -> list[Experiment]:
    """Validate every trial's spec; all or none, with every error pointed at its cause."""
    prefix = request.name or str(request.base.get("name") or "sweep")
    rows: list[Experiment] = []
    errors: list[ErrorItem] = []
    for i, trial in enumerate(trials):
        raw: dict[str, Any] = dict(request.base)
        for path, value in trial.items():
            try:
                raw = expand.set_path(raw, path, value)
            except ValueError as exc:
                raise InvalidInput(str(exc), loc=_where(path, request.strategy)) from None
        raw["name"] = _run_name(prefix, trial)
        try:
            spec = ExperimentSpec.model_validate(raw)
            rows.append(experiments.validate(session, spec, []))
        except ValidationError as exc:
            found = [item(list(e["loc"]), e["msg"], e["type"]) for e in exc.errors()]
            errors += _remap(found, trial, i, request.strategy)
        except InvalidInput as exc:
            errors += _remap(exc.items, trial, i, request.strategy)
        if len(errors) >= MAX_ERRORS:
            break
    if errors:
        unique: dict[tuple[Any, ...], ErrorItem] = {}
        for e in errors:  # a base error repeats in every trial: report it once
            unique.setdefault((tuple(e["loc"]), e["msg"].split(" (first met in trial")[0]), e)
        raise InvalidInput.of(list(unique.values())[:MAX_ERRORS])
    for row in rows:
        row.sweep_stage = stage
    return rows


def _insert(
    session: Session, sweep: Sweep, rows: list[Experiment], stage_tag: str | None
) -> list[int]:
    for row in rows:
        row.sweep_id = sweep.id
        tags = {**row.spec.get("tags", {}), "sweep": str(sweep.id)}
        if stage_tag:
            tags["sweep_stage"] = stage_tag
        row.spec = {**row.spec, "tags": tags}
    return experiments.insert_many(session, rows)


def create(session: Session, request: SweepIn) -> SweepCreated:
    trials = _trials(request)
    rows = _build(session, request, trials, stage=1)
    info = datasets.resolve(session, rows[0].spec["dataset"], ["body", "base", "dataset"])
    allowed = metrics_for(info.task)
    if request.metric not in allowed:
        raise InvalidInput(
            f"{request.metric!r} is not recorded for {info.task}; allowed: {', '.join(allowed)}",
            loc=["body", "metric"],
        )
    sweep = Sweep(
        name=request.name,
        strategy=request.strategy,
        request=request.model_dump(mode="json"),
        metric=request.metric,
        mode=_mode(request),
    )
    session.add(sweep)
    session.flush()
    stage_tag = "coarse" if request.strategy == "lr_coarse_to_fine" else None
    return SweepCreated(sweep_id=sweep.id, ids=_insert(session, sweep, rows, stage_tag))


# -- reading and ranking -------------------------------------------------------------------------


def _get(session: Session, sweep_id: int) -> Sweep:
    sweep = session.get(Sweep, sweep_id)
    if sweep is None:
        raise NotFound(f"sweep {sweep_id} not found", loc=["path", "sweep_id"])
    return sweep


def _runs(session: Session, sweep_id: int) -> list[Experiment]:
    q = select(Experiment).where(Experiment.sweep_id == sweep_id).order_by(Experiment.id)
    return list(session.scalars(q))


def _scores(session: Session, ids: list[int], metric: str, mode: str) -> dict[int, float]:
    """Each run's best value of `metric` over its stored epochs."""
    column = getattr(EpochRow, metric)
    best = func.min(column) if mode == "min" else func.max(column)
    q = (
        select(EpochRow.experiment_id, best)
        .where(EpochRow.experiment_id.in_(ids), column.is_not(None))
        .group_by(EpochRow.experiment_id)
    )
    return {i: float(v) for i, v in session.execute(q) if v is not None}


def _get_path(spec: Mapping[str, Any], path: str) -> Any:
    node: Any = spec
    for key in path.split("."):
        if not isinstance(node, Mapping) or key not in node:
            return None
        node = node[key]
    return node


def _paths(sweep: Sweep) -> list[str]:
    if sweep.strategy == "lr_coarse_to_fine":
        return ["base_lr"]
    return list(sweep.request.get("parameters", {}))


def _rule(sweep: Sweep) -> str:
    order = "lowest" if sweep.mode == "min" else "highest"
    rule = (
        f"Runs rank by their best {sweep.metric} over their epochs, {order} first; runs still "
        "going rank after those that finished (succeeded or early_stopped), and runs that "
        "diverged, failed or were cancelled rank last."
    )
    if sweep.strategy == "lr_coarse_to_fine":
        points = sweep.request.get("fine_points", 4)
        rule += (
            f" Stage 1 runs one base_lr per decade; when all have ended, stage 2 runs {points} "
            "base_lr values log-spaced inside the decade between the best coarse LR and its "
            "better-ranked neighbour (half a decade each side if neither neighbour finished well)."
        )
    return rule


def _counts(runs: list[Experiment]) -> dict[str, int]:
    counts: dict[str, int] = {}
    for r in runs:
        counts[r.status] = counts.get(r.status, 0) + 1
    return counts


def get(session: Session, sweep_id: int) -> SweepOut:
    sweep = _get(session, sweep_id)
    runs = _runs(session, sweep_id)
    scores = _scores(session, [r.id for r in runs], sweep.metric, sweep.mode)
    paths = _paths(sweep)
    entries = [
        SweepRun(
            experiment_id=r.id,
            name=r.name,
            status=r.status,
            stage=r.sweep_stage or 1,
            params={p: _get_path(r.spec, p) for p in paths},
            score=scores.get(r.id),
            epochs_run=r.epochs_run,
            epochs=int(r.spec.get("epochs", 0)),
        )
        for r in runs
    ]
    ranked = sorted(
        (e for e in entries if e.score is not None),
        key=lambda e: (*expand.rank_key(e.status, e.score, sweep.mode), e.experiment_id),
    )
    board = [LeaderboardEntry(rank=i + 1, **e.model_dump()) for i, e in enumerate(ranked)]
    top = board[0] if board and board[0].status in expand.FINISHED_WELL else None
    return SweepOut(
        id=sweep.id,
        name=sweep.name,
        strategy=sweep.strategy,
        status=sweep.status,
        stage=sweep.stage,
        metric=sweep.metric,
        mode=sweep.mode,
        rule=_rule(sweep),
        note=sweep.note,
        counts=_counts(runs),
        experiments=entries,
        leaderboard=board,
        best=top,
        request=sweep.request,
        created_at=as_utc(sweep.created_at),
        finished_at=as_utc(sweep.finished_at),
    )


def list_page(session: Session, limit: int) -> SweepPage:
    sweeps = list(session.scalars(select(Sweep).order_by(Sweep.id.desc()).limit(limit)))
    counts: dict[int, dict[str, int]] = {s.id: {} for s in sweeps}
    q = (
        select(Experiment.sweep_id, Experiment.status, func.count())
        .where(Experiment.sweep_id.in_(list(counts)))
        .group_by(Experiment.sweep_id, Experiment.status)
    )
    for sid, status, n in session.execute(q):
        if sid is not None:
            counts[sid][status] = n
    return SweepPage(
        items=[
            SweepSummary(
                id=s.id,
                name=s.name,
                strategy=s.strategy,
                status=s.status,
                stage=s.stage,
                counts=counts[s.id],
                created_at=as_utc(s.created_at),
            )
            for s in sweeps
        ]
    )


def cancel(session: Session, sweep_id: int) -> SweepOut:
    """Cancel every run not yet ended; no further stage is launched."""
    sweep = _get(session, sweep_id)
    session.execute(
        update(Sweep)
        .where(Sweep.id == sweep_id, Sweep.status == "running")
        .values(status="cancelled", finished_at=utcnow(), note="cancelled")
    )
    repo = ExperimentRepository(session)
    for run in _runs(session, sweep_id):
        if run.status not in FINAL_STATUSES:
            repo.cancel(run.id)
    session.flush()
    session.refresh(sweep)
    return get(session, sweep_id)


# -- moving on -----------------------------------------------------------------------------------


def advance(session: Session, sweep_id: int) -> bool:
    """If every run of the sweep has ended: launch lr_coarse_to_fine's stage 2, or mark the
    sweep finished. Safe to call any number of times from any process."""
    sweep = session.get(Sweep, sweep_id)
    if sweep is None or sweep.status != "running":
        return False
    runs = _runs(session, sweep_id)
    if any(r.status not in FINAL_STATUSES for r in runs):
        return False
    if sweep.strategy == "lr_coarse_to_fine" and sweep.stage == 1:
        _launch_fine(session, sweep, runs)
    else:
        _end(session, sweep, sweep.note)
    return True


def _launch_fine(session: Session, sweep: Sweep, coarse: list[Experiment]) -> None:
    scores = _scores(session, [r.id for r in coarse], sweep.metric, sweep.mode)
    by_lr = {
        float(r.spec["base_lr"]): scores.get(r.id) if r.status in expand.FINISHED_WELL else None
        for r in coarse
    }
    request = SweepIn.model_validate(sweep.request)
    try:
        best, low, high = expand.fine_range(by_lr, sweep.mode)
    except ValueError:
        note = "no coarse run finished well, so there is no decade to refine; sweep ends"
        _end(session, sweep, note)
        return
    lrs = expand.log_interior(low, high, request.fine_points)
    note = (
        f"best coarse base_lr {best:g} ({sweep.metric} {scores.get(_id_of(coarse, best), 0):.4g});"
        f" stage 2 scans {', '.join(f'{lr:g}' for lr in lrs)} between {low:g} and {high:g}"
    )
    won = session.execute(
        update(Sweep)
        .where(Sweep.id == sweep.id, Sweep.stage == 1, Sweep.status == "running")
        .values(stage=2, note=note)
    )
    if won.rowcount != 1:  # type: ignore[attr-defined]
        return  # another process launched it
    try:
        rows = _build(session, request, [{"base_lr": lr} for lr in lrs], stage=2)
    except InvalidInput as exc:  # e.g. an uploaded dataset deleted since stage 1
        _end(session, sweep, f"stage 2 could not start: {exc}")
        return
    _insert(session, sweep, rows, "fine")
    log.info("sweep %s: %s", sweep.id, note)


def _id_of(runs: list[Experiment], lr: float) -> int:
    return next(r.id for r in runs if float(r.spec["base_lr"]) == lr)


def _end(session: Session, sweep: Sweep, note: str | None) -> None:
    session.execute(
        update(Sweep)
        .where(Sweep.id == sweep.id, Sweep.status == "running")
        .values(status="finished", finished_at=utcnow(), note=note)
    )


def advance_for(experiment_id: int) -> bool:
    """After a run ended: move its sweep on, if it belongs to one."""
    with session_scope() as session:
        sweep_id = session.scalar(select(Experiment.sweep_id).where(Experiment.id == experiment_id))
        return sweep_id is not None and advance(session, sweep_id)


def advance_running(limit: int = 100) -> int:
    """The relay's safety net: runs can also end by the reaper or by a cancel. Returns how many
    sweeps moved on."""
    with session_scope() as session:
        ids = list(session.scalars(select(Sweep.id).where(Sweep.status == "running").limit(limit)))
    moved = 0
    for sweep_id in ids:
        with session_scope() as session:
            moved += advance(session, sweep_id)
    return moved

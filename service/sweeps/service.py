"""Sweeps: expand a base spec over the searched fields into ordinary experiments, launch the
finer stage of an lr_coarse_to_fine sweep when its coarse stage has finished, rank the runs.

`advance` is called after every run of a sweep ends (by the worker's task) and by the relay's
periodic tick (runs ended by the reaper or by a cancel), so a sweep moves on whoever ends its
last run; a conditional UPDATE on `sweeps.stage` makes launching stage 2 happen exactly once.
It also decides a pruner's synchronous rungs that are complete (sweeps/pruning.py).
Requests become trials and rows in `trials`; the detail and its ranking are `leaderboard`'s.
"""

from __future__ import annotations

from sqlalchemy.orm import Session

from service.artifacts import service as artifacts
from service.experiments import service as experiments
from service.experiments.models import Experiment
from service.experiments.repository import ExperimentRepository
from service.kit.db import session_scope
from service.kit.errors import InvalidInput, NotFound, item
from service.kit.logging import get_logger
from service.kit.time import as_utc
from service.sweeps import expand, leaderboard, pruning, trials
from service.sweeps.models import Sweep, SweepStatus
from service.sweeps.repository import PruningRepository, SweepRepository
from service.sweeps.schemas import SweepCreated, SweepDecisionOut, SweepIn, SweepOut, SweepPage
from service.training.spec import METRICS_ANY, ExperimentSpec, metrics_for, stored_epochs
from service.training.status import LIVE, ExperimentStatus

log = get_logger(__name__)


def _insert(
    session: Session, sweep: Sweep, rows: list[Experiment], stage_tag: str | None
) -> list[int]:
    for row in rows:
        row.sweep_id = sweep.id
        row.created_by = sweep.created_by  # stage 2 too, launched by whichever process
        tags = {**row.spec.get("tags", {}), "sweep": str(sweep.id)}
        if stage_tag:
            tags["sweep_stage"] = stage_tag
        row.spec = {**row.spec, "tags": tags}
    ids = experiments.insert_many(session, rows)
    pruning.draw_brackets(session, sweep, rows)
    return ids


def create(session: Session, request: SweepIn, created_by: str | None = None) -> SweepCreated:
    rows = trials.build(session, request, trials.first_stage(request), stage=1)
    dataset = ExperimentSpec.model_validate(rows[0].spec).dataset  # the first trial's
    info, _ = experiments.dataset_info(session, dataset, ["body", "base", "dataset"])
    task = info.task if info is not None else "any task"  # a plugin dataset's: either
    allowed = metrics_for(info.task) if info is not None else METRICS_ANY
    if request.metric not in allowed:
        raise InvalidInput(
            f"{request.metric!r} is not recorded for {task}; allowed: {', '.join(allowed)}",
            loc=["body", "metric"],
        )
    if request.pruner is not None:
        _check_pruner(request, rows, allowed, task)
    sweep = SweepRepository(session).add(
        Sweep(
            name=request.name,
            strategy=request.strategy,
            request=request.model_dump(mode="json"),
            metric=request.metric,
            mode=trials.mode(request),
            created_by=created_by,
        )
    )
    stage_tag = "coarse" if request.strategy == "lr_coarse_to_fine" else None
    return SweepCreated(sweep_id=sweep.id, ids=_insert(session, sweep, rows, stage_tag))


# The parameters each rule takes (CONTRACT.md), besides type, metric and mode: a parameter its
# rule has no use for is refused at submit rather than silently ignored (`min_runs` on ASHA
# reads as a guard that is not there). Stored requests carry every default and are not checked.
PRUNER_PARAMS: dict[str, tuple[str, ...]] = {
    "successive_halving": ("min_epochs", "reduction_factor"),
    "asha": ("min_epochs", "reduction_factor"),
    "median": ("min_epochs", "min_runs"),
    "hyperband": ("min_epochs", "reduction_factor", "seed"),
}


def _check_pruner(request: SweepIn, rows: list[Experiment], allowed: tuple[str, ...], task: str
                  ) -> None:  # fmt: skip
    assert request.pruner is not None
    loc: list[str | int] = ["body", "pruner"]
    takes = PRUNER_PARAMS[request.pruner.type]
    extra = sorted(request.pruner.model_fields_set - {"type", "metric", "mode", *takes})
    if extra:  # each one at its field, in one 422
        raise InvalidInput.of([
            item([*loc, name], f"{name} does not apply to the {request.pruner.type} pruner, "
                 f"which takes {' and '.join(takes)}", InvalidInput.type_)
            for name in extra
        ])  # fmt: skip
    metric = request.pruner.metric or request.metric
    if metric not in allowed:
        raise InvalidInput(f"{metric!r} is not recorded for {task}; allowed: {', '.join(allowed)}",
                           loc=[*loc, "metric"])  # fmt: skip
    longest = max(stored_epochs(r.spec) for r in rows)
    if request.pruner.min_epochs >= longest:
        raise InvalidInput(
            f"min_epochs {request.pruner.min_epochs} leaves no epoch to prune at: the longest "
            f"run has {longest} epochs, and a rung must come before a run's last epoch",
            loc=[*loc, "min_epochs"],
        )


# -- reading -------------------------------------------------------------------------------------


def _get(session: Session, sweep_id: int) -> Sweep:
    sweep = SweepRepository(session).get(sweep_id)
    if sweep is None:
        raise NotFound(f"sweep {sweep_id} not found", loc=["path", "sweep_id"])
    return sweep


def _scores(session: Session, sweep: Sweep, runs: list[Experiment]) -> dict[int, float]:
    """Each run's best value of the sweep's metric over its stored epochs."""
    ids = [r.id for r in runs]
    return ExperimentRepository(session).best_values(ids, sweep.metric, sweep.mode)


def get(session: Session, sweep_id: int) -> SweepOut:
    sweep = _get(session, sweep_id)
    runs = ExperimentRepository(session).in_sweep(sweep_id)
    out = leaderboard.detail(sweep, runs, _scores(session, sweep, runs))
    rule = pruning.Rule.of(sweep)
    if rule is not None:
        rungs = PruningRepository(session).rungs(sweep_id)
        out.pruning = leaderboard.pruning_summary(rule, runs, rungs)
    return out


def decisions(session: Session, sweep_id: int) -> list[SweepDecisionOut]:
    """The pruner's decisions in the order taken."""
    _get(session, sweep_id)
    out = []
    for d in PruningRepository(session).decisions(sweep_id):
        item = SweepDecisionOut.model_validate(d, from_attributes=True)
        item.created_at = as_utc(d.created_at) or item.created_at  # SQLite: naive UTC
        out.append(item)
    return out


def list_page(session: Session, limit: int) -> SweepPage:
    repo = SweepRepository(session)
    sweeps = repo.newest(limit)
    counts = ExperimentRepository(session).sweep_status_counts([s.id for s in sweeps])
    best = repo.best_runs(sweeps)
    return SweepPage(items=[leaderboard.summary(s, counts[s.id], best.get(s.id)) for s in sweeps])


def cancel(session: Session, sweep_id: int) -> SweepOut:
    """Cancel every run not yet ended; no further stage is launched."""
    sweep = _get(session, sweep_id)
    SweepRepository(session).cancel(sweep_id)
    repo = ExperimentRepository(session)
    waited = repo.cancel_many([run.id for run in repo.members_of(sweep_id) if run.status in LIVE])
    artifacts.drop_checkpoints(session, waited)
    session.flush()
    session.refresh(sweep)
    return get(session, sweep_id)


# -- moving on -----------------------------------------------------------------------------------


def advance(session: Session, sweep_id: int, group: tuple[int, int] | None = None) -> bool:
    """If every run of the sweep has ended: launch lr_coarse_to_fine's stage 2, or mark the
    sweep finished. `group`: the (stage, stored bracket) of the run that ended, if known. Safe
    to call any number of times from any process."""
    sweep = SweepRepository(session).get(sweep_id)
    if sweep is None or sweep.status != SweepStatus.RUNNING:
        return False
    if sweep.request.get("pruner"):  # a run that ended may complete a rung of its group
        pruning.complete_rungs(session, sweep.id, pruning.Rule.of(sweep), group)
    repo = ExperimentRepository(session)
    if repo.any_in_sweep(sweep_id, LIVE):  # a count: this runs after every run of the sweep
        return False
    runs = repo.in_sweep(sweep_id)
    if sweep.strategy == "lr_coarse_to_fine" and sweep.stage == 1:
        _launch_fine(session, sweep, runs)
    else:
        SweepRepository(session).finish(sweep.id, sweep.note)
    return True


def _launch_fine(session: Session, sweep: Sweep, coarse: list[Experiment]) -> None:
    repo = SweepRepository(session)
    scores = _scores(session, sweep, coarse)
    by_lr = {
        float(r.spec["base_lr"]): scores.get(r.id) if r.status in expand.FINISHED_WELL else None
        for r in coarse
    }
    request = SweepIn.model_validate(sweep.request)
    rule = pruning.Rule.of(sweep)
    stops = {} if rule is None else {
        d.experiment_id: (d.epoch, d.value)
        for d in PruningRepository(session).decisions(sweep.id)
        if d.decision == "stop" and d.stage == 1
    }  # fmt: skip
    pruned = {float(r.spec["base_lr"]): stops[r.id] for r in coarse
              if r.status == ExperimentStatus.PRUNED and r.id in stops}  # fmt: skip
    try:
        best, low, high = expand.fine_range(by_lr, sweep.mode, pruned,
                                            rule.mode if rule else sweep.mode)  # fmt: skip
    except ValueError:
        repo.finish(
            sweep.id, "no coarse run finished well, so there is no decade to refine; sweep ends"
        )
        return
    lrs = expand.log_interior(low, high, request.fine_points)
    note = (
        f"best coarse base_lr {best:g} ({sweep.metric} {scores.get(_id_of(coarse, best), 0):.4g});"
        f" stage 2 scans {', '.join(f'{lr:g}' for lr in lrs)} between {low:g} and {high:g}"
    )
    if not repo.start_stage_two(sweep.id, note):
        return  # another process launched it
    try:
        rows = trials.build(session, request, [{"base_lr": lr} for lr in lrs], stage=2)
    except InvalidInput as exc:  # e.g. an uploaded dataset deleted since stage 1
        repo.finish(sweep.id, f"stage 2 could not start: {exc}")
        return
    _insert(session, sweep, rows, "fine")
    log.info("sweep_moved_on", sweep_id=sweep.id, note=note)


def _id_of(runs: list[Experiment], lr: float) -> int:
    return next(r.id for r in runs if float(r.spec["base_lr"]) == lr)


def advance_for(experiment_id: int) -> bool:
    """After a run ended: move its sweep on, if it belongs to one."""
    with session_scope() as session:
        place = ExperimentRepository(session).place_in_sweep(experiment_id)
        if place is None:
            return False
        sweep_id, stage, bracket = place
        return advance(session, sweep_id, None if bracket is None else (stage, bracket))


def advance_running(limit: int = 100) -> int:
    """The relay's safety net: runs can also end by the reaper or by a cancel. Returns how many
    sweeps moved on."""
    with session_scope() as session:
        ids = SweepRepository(session).running_ids(limit)
    moved = 0
    for sweep_id in ids:
        with session_scope() as session:
            moved += advance(session, sweep_id)
    return moved

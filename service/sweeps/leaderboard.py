"""What a sweep's detail shows: each run with its swept values and score, the ranking, the rule
that ranks, and the counts per status. Pure: the rows and scores are read by the caller."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from service.experiments.models import Experiment
from service.kit.time import as_utc
from service.sweeps import expand
from service.sweeps.models import Sweep, SweepRung
from service.sweeps.pruning import Rule
from service.sweeps.schemas import (
    LeaderboardEntry,
    PruningOut,
    RungOut,
    SweepBest,
    SweepOut,
    SweepRun,
    SweepSummary,
)
from service.training.spec import stored_epochs
from service.training.status import ExperimentStatus


def _get_path(spec: Mapping[str, Any], path: str) -> Any:
    node: Any = spec
    for key in path.split("."):
        if isinstance(node, list) and key.isdigit() and int(key) < len(node):
            node = node[int(key)]  # an element of a composition's `schedulers`
        elif isinstance(node, Mapping) and key in node:
            node = node[key]
        else:
            return None
    return node


def paths(sweep: Sweep) -> list[str]:
    """The swept fields."""
    if sweep.strategy == "lr_coarse_to_fine":
        return ["base_lr"]
    return list(sweep.request.get("parameters", {}))


def rule(sweep: Sweep) -> str:
    order = "lowest" if sweep.mode == "min" else "highest"
    text = (
        f"Runs rank by their best {sweep.metric} over their epochs, {order} first; runs still "
        "going rank after those that finished (succeeded or early_stopped), and runs that were "
        "pruned, "
        "diverged, failed or were cancelled rank last."
    )
    if sweep.strategy == "lr_coarse_to_fine":
        points = sweep.request.get("fine_points", 4)
        text += (
            f" Stage 1 runs one base_lr per decade; when all have ended, stage 2 runs {points} "
            "base_lr values log-spaced inside the decade between the best coarse LR and its "
            "better-ranked neighbour (with a pruner, a neighbour pruned later ranks above one "
            "pruned earlier, and at the same epoch the better value there; half a decade each "
            "side if neither neighbour finished well or was pruned)."
        )
    return text


def counts(runs: list[Experiment]) -> dict[str, int]:
    out: dict[str, int] = {}
    for r in runs:
        out[r.status] = out.get(r.status, 0) + 1
    return out


def detail(sweep: Sweep, runs: list[Experiment], scores: dict[int, float]) -> SweepOut:
    """`scores`: each run's best value of the sweep's metric (runs without one are unranked)."""
    swept = paths(sweep)
    entries = [
        SweepRun(
            experiment_id=r.id,
            name=r.name,
            status=r.status,
            stage=r.sweep_stage or 1,
            params={p: _get_path(r.spec, p) for p in swept},
            score=scores.get(r.id),
            epochs_run=r.epochs_run,
            epochs=stored_epochs(r.spec),
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
        rule=rule(sweep),
        note=sweep.note,
        counts=counts(runs),
        experiments=entries,
        leaderboard=board,
        best=top,
        request=sweep.request,
        created_by=sweep.created_by,
        created_at=as_utc(sweep.created_at),
        finished_at=as_utc(sweep.finished_at),
    )


def summary(sweep: Sweep, counts: dict[str, int], best: tuple[int, float] | None) -> SweepSummary:
    """A line of the sweeps list; `counts`: its runs per status; `best`: its top run and score
    among those that finished well."""
    pruner = sweep.request.get("pruner")
    return SweepSummary(
        id=sweep.id,
        name=sweep.name,
        strategy=sweep.strategy,
        status=sweep.status,
        stage=sweep.stage,
        metric=sweep.metric,
        mode=sweep.mode,
        parameters=paths(sweep),
        pruner=pruner.get("type") if isinstance(pruner, dict) else None,
        best=SweepBest(experiment_id=best[0], score=best[1]) if best else None,
        counts=counts,
        created_by=sweep.created_by,
        created_at=as_utc(sweep.created_at),
    )


def pruning_summary(rule: Rule, runs: list[Experiment], rungs: list[SweepRung]) -> PruningOut:
    """What the pruner did: its rule, the rungs decided, the runs it stopped and the epochs that
    saved against the same runs trained to their end."""
    unpruned = sum(stored_epochs(r.spec) for r in runs)
    run = sum(r.epochs_run for r in runs)
    pruned = [r for r in runs if r.status == ExperimentStatus.PRUNED]
    saved = sum(stored_epochs(r.spec) - r.epochs_run for r in pruned)
    return PruningOut(
        type=rule.type, metric=rule.metric, mode=rule.mode, rule=rule.describe(),
        rungs=[RungOut(stage=g.stage, bracket=g.bracket, epoch=g.epoch, reached=g.reached,
                       continued=g.continued, decided_at=as_utc(g.decided_at)) for g in rungs],
        pruned=len(pruned), epochs_run=run, epochs_unpruned=unpruned, epochs_saved=saved,
    )  # fmt: skip

"""Checks of a spec's `scheduler` at submit: names, kwargs, lambdas, compositions (CONTRACT.md
"Schedules"), then the schedule built and walked as a run would, so values torch takes at
construction but fails on mid-run are a 422 too. Every error's `loc` starts at `scheduler`, an
element of a composition's at `scheduler.schedulers.<i>`."""

from __future__ import annotations

import itertools
from typing import Any

from service.training import catalog
from service.training.errors import ErrorItem, allowed, item, kwargs_errors
from service.training.lr_lambda import LambdaError, check_factors, compile_lambda
from service.training.schedule import LAMBDA_SCHEDULERS, ScheduleError, check_walk
from service.training.spec import ExperimentSpec, SchedulerSpec

Loc = list[str | int]


def check_scheduler(
    spec: ExperimentSpec, task: str, metrics: tuple[str, ...], steps: int
) -> list[ErrorItem]:
    sched = spec.scheduler
    if sched is None:
        return []
    loc: Loc = ["scheduler"]
    if sched.type == catalog.CONSTANT:
        if sched.params or sched.schedulers:
            where = "params" if sched.params else "schedulers"
            return [item([*loc, where], f"the constant schedule takes no {where}", "invalid")]
        return []
    interval = sched.effective_interval
    per_epoch = steps if interval == "step" else 1
    warm = (spec.warmup.epochs if spec.warmup else 0) * per_epoch
    total = spec.epochs * per_epoch - warm  # scheduler steps after the warmup
    errors = _check_one(sched, loc, task, metrics, total, interval)
    if not errors and sched.is_composite:
        errors += _check_composition(sched, task, metrics, total, interval)
    if errors:
        return errors
    # Let the engine build it exactly as a run would and walk the schedule, so values torch
    # accepts at construction but fails on mid-run (T_max=0, ...) are caught here.
    try:
        check_walk(spec, steps)
    except ScheduleError as exc:
        errors.append(item([*loc, *exc.loc], str(exc), "invalid_params"))
    return errors


def _check_one(
    sched: SchedulerSpec, loc: Loc, task: str, metrics: tuple[str, ...], span: int, interval: str
) -> list[ErrorItem]:
    """One scheduler's own fields; `span`: the scheduler steps it runs for."""
    if sched.type not in catalog.SCHEDULERS:
        choices = (*catalog.SCHEDULERS, catalog.CONSTANT)
        return [
            item(
                [*loc, "type"],
                f"unknown scheduler {sched.type!r}; allowed: {allowed(choices)}",
                "unknown_scheduler",
            )
        ]
    if sched.schedulers is not None and not sched.is_composite:
        return [
            item(
                [*loc, "schedulers"],
                f"{sched.type} composes no schedulers; "
                f"`schedulers` is for {' and '.join(sorted(catalog.COMPOSITES))}",
                "invalid",
            )
        ]
    if sched.is_composite and not sched.schedulers:
        return [
            item(
                [*loc, "schedulers"],
                f"{sched.type} needs `schedulers`: the list of schedulers it composes",
                "missing",
            )
        ]
    kwargs = catalog.scheduler_kwargs(sched.type)
    errors = kwargs_errors(
        [*loc, "params"], "scheduler", sched.type, sched.params, kwargs, catalog.reserved_reason
    )
    for key in catalog.required_scheduler_kwargs(sched.type):
        if key not in sched.params:
            errors.append(
                item([*loc, "params", key], f"{sched.type} requires {key!r}", "missing_param")
            )
    if sched.type == "ReduceLROnPlateau":
        if interval == "step":
            errors.append(
                item(
                    [*loc, "interval"],
                    "ReduceLROnPlateau decides once per epoch, "
                    "after validation; interval must be 'epoch'",
                    "invalid",
                )
            )
        if sched.monitor not in metrics:
            errors.append(
                item(
                    [*loc, "monitor"],
                    f"{sched.monitor!r} is not recorded for {task}; allowed: {allowed(metrics)}",
                    "unknown_metric",
                )
            )
    if not errors and sched.type in LAMBDA_SCHEDULERS:
        errors += _check_lambda(sched, loc, interval, span)
    return errors


def _check_composition(
    sched: SchedulerSpec, task: str, metrics: tuple[str, ...], total: int, interval: str
) -> list[ErrorItem]:
    """The elements of a SequentialLR or ChainedScheduler, each checked over the scheduler steps
    it runs for; a SequentialLR's milestones."""
    elements = sched.schedulers or []
    unit = "step" if interval == "step" else "epoch"
    errors: list[ErrorItem] = []
    if sched.type == "SequentialLR":
        errors += _check_milestones(sched.params.get("milestones"), len(elements), total, unit)
    if errors:
        return errors
    milestones = sched.params.get("milestones", []) if sched.type == "SequentialLR" else []
    starts, ends = [0, *milestones], [*milestones, total]
    for i, element in enumerate(elements):
        loc: Loc = ["scheduler", "schedulers", i]
        if element.is_composite:
            errors.append(
                item(
                    [*loc, "type"],
                    f"a {sched.type} cannot hold a {element.type} "
                    "(torch cannot nest them); list the schedulers in one "
                    "composition",
                    "invalid",
                )
            )
            continue
        if element.type == catalog.CONSTANT:
            errors.append(
                item(
                    [*loc, "type"],
                    "'none' is no scheduler; hold the LR with "
                    'ConstantLR {"factor": 1.0, "total_iters": 0}',
                    "invalid",
                )
            )
            continue
        if element.interval is not None and element.interval != interval:
            errors.append(
                item(
                    [*loc, "interval"],
                    f"elements take their interval from the "
                    f"{sched.type} ({interval!r}); set it there",
                    "invalid",
                )
            )
        plateau_last = sched.type == "SequentialLR" and i == len(elements) - 1
        if element.type == "ReduceLROnPlateau" and not plateau_last:
            errors.append(
                item(
                    [*loc, "type"],
                    "ReduceLROnPlateau can only be the last scheduler of a SequentialLR",
                    "invalid",
                )
            )
            continue
        span = ends[i] - starts[i] if sched.type == "SequentialLR" else total
        errors += _check_one(element, loc, task, metrics, span, interval)
    return errors


def _check_milestones(milestones: Any, n: int, total: int, unit: str) -> list[ErrorItem]:
    """len(schedulers) - 1 strictly increasing counters, each element getting at least one."""
    loc: Loc = ["scheduler", "params", "milestones"]
    if not isinstance(milestones, list) or not all(
        isinstance(m, int) and not isinstance(m, bool) for m in milestones
    ):
        return [item(loc, f"milestones must be a list of integers ({unit}s)", "invalid")]
    if len(milestones) != n - 1:
        return [
            item(
                loc,
                f"{n} schedulers need {n - 1} milestones (where each after the first "
                f"starts); got {len(milestones)}",
                "invalid",
            )
        ]
    if milestones and milestones[0] < 1:
        return [item(loc, "milestones must be ≥ 1: the first scheduler runs from 0", "invalid")]
    if not all(a < b for a, b in itertools.pairwise(milestones)):
        return [item(loc, "milestones must be strictly increasing", "invalid")]
    if milestones and milestones[-1] >= total:
        return [
            item(
                loc,
                f"milestone {milestones[-1]} is not inside the run: it has {total} "
                f"{unit}s after the warmup, so the last scheduler would never run",
                "invalid",
            )
        ]
    return []


def check_lambda_grammar(sched: SchedulerSpec | None) -> list[ErrorItem]:
    """Whether each `lr_lambda` of the scheduler (its elements' too) is an expression within the
    grammar. That is the scheduler's question alone, so it is answered where `check_scheduler`
    cannot run, its other checks reading fields that are wrong (epochs, the split, the warmup):
    every mistake of a spec in one 422."""
    if sched is None:
        return []
    variable = "step" if sched.effective_interval == "step" else "epoch"
    parts: list[tuple[Loc, SchedulerSpec]] = [(["scheduler"], sched)]
    parts += [(["scheduler", "schedulers", i], e) for i, e in enumerate(sched.schedulers or [])]
    errors: list[ErrorItem] = []
    for loc, part in parts:
        if part.type not in LAMBDA_SCHEDULERS:
            continue
        expression = part.params.get("lr_lambda")
        if not isinstance(expression, str):
            continue  # missing or not a string: `check_scheduler` says so with the rest
        try:
            compile_lambda(expression, variable)
        except LambdaError as exc:
            errors.append(_grammar_error([*loc, "params", "lr_lambda"], exc))
    return errors


def _grammar_error(loc: Loc, exc: LambdaError) -> ErrorItem:
    return item(loc, f"lr_lambda: {exc}", "invalid_expression")


def _check_lambda(sched: SchedulerSpec, loc: Loc, interval: str, span: int) -> list[ErrorItem]:
    """`lr_lambda` within the grammar, and a usable factor at every counter it is given."""
    loc = [*loc, "params", "lr_lambda"]
    expression = sched.params.get("lr_lambda")
    if not isinstance(expression, str):
        return [item(loc, 'lr_lambda is an expression string, e.g. "0.95 ** epoch"', "invalid")]
    variable = "step" if interval == "step" else "epoch"
    try:
        bad = check_factors(expression, variable, span, sched.type == "MultiplicativeLR")
    except LambdaError as exc:
        return [_grammar_error(loc, exc)]
    if bad is not None:
        at, why = bad
        return [item(loc, f"lr_lambda at {variable} {at}: {why}", "invalid_factor")]
    return []

"""A sweep request turned into trials (each a dict of dotted spec path to value) and then into
validated, unsaved experiments rows, with every error pointed at the field or trial that caused
it. The pure expansions (grid, random draws, decades) are `expand`'s."""

from __future__ import annotations

import math
from typing import Any

from pydantic import ValidationError
from sqlalchemy.orm import Session

from service.experiments import service as experiments
from service.experiments.models import Experiment
from service.kit.errors import MAX_ERRORS, ErrorItem, InvalidInput, item
from service.sweeps import expand
from service.sweeps.schemas import MAX_TRIALS, DistributionIn, SweepIn
from service.training.spec import ExperimentSpec, mode_for

Trial = dict[str, Any]  # dotted path -> value


def mode(request: SweepIn) -> str:
    return request.mode or mode_for(request.metric)


def choices(request: SweepIn) -> dict[str, list[Any] | DistributionIn]:
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


def first_stage(request: SweepIn) -> list[Trial]:
    """Stage 1's overrides, or a 422 naming the offending field."""
    body: list[str | int] = ["body"]
    parameters = choices(request)
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
        # Counted before any is made: min_lr·10^k past 1e308 is infinite.
        if expand.decade_count(request.min_lr, request.max_lr) > 30:
            raise InvalidInput("at most 30 decades", loc=[*body, "min_lr"])
        return [{"base_lr": lr} for lr in expand.decades(request.min_lr, request.max_lr)]
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
    draws: dict[str, expand.Choice] = {
        path: expand.Distribution(c.distribution, c.low, c.high)
        if isinstance(c, DistributionIn)
        else c
        for path, c in parameters.items()
    }
    return expand.random_trials(draws, request.trials, request.seed)


def lists_of(parameters: dict[str, list[Any] | DistributionIn]) -> dict[str, list[Any]]:
    return {p: v for p, v in parameters.items() if isinstance(v, list)}


def where(path: str, strategy: str) -> list[str | int]:
    if strategy == "lr_coarse_to_fine":
        return ["body", "min_lr"]  # base_lr comes from the min_lr..max_lr scan
    return ["body", "parameters", path]


def remap(errors: list[ErrorItem], trial: Trial, i: int, strategy: str) -> list[ErrorItem]:
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
            out.append(item(where(cause, strategy), msg, e["type"]))
    return out


def run_name(prefix: str, trial: Trial) -> str:
    def show(v: Any) -> str:
        return f"{v:g}" if isinstance(v, float) else str(v)

    return f"{prefix} {' '.join(f'{p}={show(v)}' for p, v in trial.items())}"[:200]


def build(session: Session, request: SweepIn, trials: list[Trial], stage: int) -> list[Experiment]:
    """Validate every trial's spec; all or none, with every error pointed at its cause. Stage 2
    is built from the request stored with stage 1: it is not checked as a new submission
    (`experiments.validate`'s `submitted`)."""
    prefix = request.name or str(request.base.get("name") or "sweep")
    rows: list[Experiment] = []
    errors: list[ErrorItem] = []
    for i, trial in enumerate(trials):
        raw: dict[str, Any] = dict(request.base)
        for path, value in trial.items():
            try:
                raw = expand.set_path(raw, path, value)
            except ValueError as exc:
                raise InvalidInput(str(exc), loc=where(path, request.strategy)) from None
        raw["name"] = run_name(prefix, trial)
        try:
            spec = ExperimentSpec.model_validate(raw)
            rows.append(experiments.validate(session, spec, [], submitted=stage == 1))
        except ValidationError as exc:
            found = [item(list(e["loc"]), e["msg"], e["type"]) for e in exc.errors()]
            errors += remap(found, trial, i, request.strategy)
        except InvalidInput as exc:
            errors += remap(exc.items, trial, i, request.strategy)
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

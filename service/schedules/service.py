"""The schedule preview as a plain function: the worker's own schedule walk and decisions
(`service.training.schedule.walk`, `service.training.decisions`), without training or a database."""

from __future__ import annotations

import math

import numpy as np

from service.experiments.lr_trace import minmax_indices
from service.kit.errors import ErrorItem, InvalidInput, item
from service.schedules.schemas import PreviewDecision, PreviewOut, PreviewRequest, PreviewStep
from service.training import per_step
from service.training.checks import check_schedule
from service.training.schedule import ScheduleError, monitored, walk
from service.training.spec import DatasetRef, ExperimentSpec


def _spec(req: PreviewRequest) -> ExperimentSpec:
    # The dataset only sizes the split, which the preview replaces with `steps_per_epoch`.
    return ExperimentSpec(
        dataset=DatasetRef(type="digits"),
        solver=req.solver,
        base_lr=req.base_lr,
        scheduler=req.scheduler,
        warmup=req.warmup,
        early_stopping=req.early_stopping,
        epochs=req.epochs,
    )


def _check(req: PreviewRequest, spec: ExperimentSpec) -> list[ErrorItem]:
    errors = check_schedule(spec, req.steps_per_epoch)
    sched, es = spec.plateau, spec.early_stopping
    one_series = req.monitor_values is not None and spec.plateau is not None
    if one_series and sched and es and sched.monitor != es.monitor:
        errors.append(
            item(
                ["early_stopping", "monitor"],
                f"monitor_values is one series, read by both ReduceLROnPlateau "
                f"(monitor {sched.monitor!r}) and early stopping (monitor {es.monitor!r}): "
                "give both the same monitor",
                "monitor_mismatch",
            )
        )
    for e in errors:
        e["loc"] = ["body", *e["loc"]]
    return errors


def _scheduler_error(spec: ExperimentSpec, loc: list[str | int], msg: str) -> InvalidInput:
    where = ["scheduler", *loc] if spec.scheduler is not None else []
    return InvalidInput.of([item(["body", *where], msg, "invalid_params")])


def _notes(
    req: PreviewRequest, spec: ExperimentSpec, epochs_run: int, stop: str | None
) -> list[str]:
    notes = []
    values = req.monitor_values
    if values is None:
        if spec.plateau is not None:
            notes.append(
                "ReduceLROnPlateau reduces the LR only on metric values: without monitor_values "
                "the LR stays where the warmup leaves it (base_lr)"
            )
        if spec.early_stopping is not None:
            notes.append("early_stopping is ignored without monitor_values: every epoch is run")
        return notes
    notes.append(f"monitor_values are read as {monitored(spec)}")
    if not spec.plateau is not None and spec.early_stopping is None:
        notes.append(
            "neither ReduceLROnPlateau nor early_stopping reads monitor_values: only a non-finite "
            "value changes the outcome (the run diverges)"
        )
    if stop is not None and epochs_run < len(values):
        notes.append(
            f"the run stops at epoch {epochs_run}: the last {len(values) - epochs_run} "
            "monitor_values are not used"
        )
    elif stop is None and len(values) < spec.epochs:
        notes.append(
            f"{len(values)} monitor_values for {spec.epochs} epochs: the preview ends after "
            f"epoch {len(values)}"
        )
    return notes


def preview(req: PreviewRequest) -> PreviewOut:
    """The LR of each epoch a run with this schedule would record and, given `monitor_values`,
    the plateau reductions and the stop it would take: the same code path as the worker."""
    spec = _spec(req)
    errors = _check(req, spec)
    if errors:
        raise InvalidInput.of(errors)
    # null means a non-finite value: the metric could not be computed (JSON has no NaN).
    values = None
    if req.monitor_values is not None:
        values = [math.nan if v is None else v for v in req.monitor_values]
    lrs: list[float] = []
    out: list[PreviewDecision] = []
    stop, reason = None, None
    try:
        for e in walk(spec, req.steps_per_epoch, values):
            if not math.isfinite(e.lr):
                raise _scheduler_error(
                    spec, ["params"], f"the learning rate becomes {e.lr} at epoch {e.epoch}"
                )
            lrs.append(e.lr)
            if e.decision is None:
                continue
            for ev in e.decision.events:
                if ev.new_lr is not None and not math.isfinite(ev.new_lr):
                    raise _scheduler_error(
                        spec,
                        ["params"],
                        f"ReduceLROnPlateau sets the learning rate to {ev.new_lr} "
                        f"after epoch {e.epoch}",
                    )
                out.append(
                    PreviewDecision(
                        epoch=e.epoch,
                        kind=ev.kind,
                        monitor=ev.monitor,
                        old_lr=ev.old_lr,
                        new_lr=ev.new_lr,
                        reason=ev.reason,
                    )
                )
            if e.decision.stop:
                stop, reason = e.decision.stop, e.decision.events[-1].reason
    except ScheduleError as exc:
        raise _scheduler_error(spec, exc.loc, str(exc)) from exc
    except Exception as exc:  # what torch raises on values the checks let by is an input error
        name = spec.scheduler.type if spec.scheduler else "the schedule"
        epoch = len(lrs) + 1
        raise _scheduler_error(spec, ["params"], f"{name} fails at epoch {epoch}: {exc}") from exc
    steps, total = None, None
    if req.resolution == "step":
        steps, total = _steps(req, spec, len(lrs), out)
    return PreviewOut(
        lr=lrs,
        steps=steps,
        total_steps=total,
        epochs_run=len(lrs),
        decisions=out,
        stop=stop,
        stop_reason=reason,
        notes=_notes(req, spec, len(lrs), stop),
    )


def _steps(
    req: PreviewRequest, spec: ExperimentSpec, epochs_run: int, decisions: list[PreviewDecision]
) -> tuple[list[PreviewStep], int]:
    """The LR at every optimizer step of the epochs run, downsampled to `max_points`: the
    worker's own per-step walk (`per_step.walk_steps`, as GET /v1/experiments/{id}/lr computes
    a run's), with each plateau reduction set after its epoch as the worker sets it."""
    lr_after = {d.epoch: d.new_lr for d in decisions if d.new_lr is not None}
    values = np.frombuffer(
        per_step.walk_steps(spec, req.steps_per_epoch, epochs_run, lr_after), dtype=np.float64
    )
    keep = minmax_indices(values, req.max_points).tolist()
    spe = req.steps_per_epoch
    points = [PreviewStep(step=i, epoch=i // spe + 1, lr=float(values[i])) for i in keep]
    return points, len(values)

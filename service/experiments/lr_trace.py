"""GET /v1/experiments/{id}/lr: a run's LR per epoch (as its rows store it) or per optimizer
step, downsampled on request.

Per step, a run whose LR depends on data or the optimizer (`per_step.recorded`) reads the LRs
its worker stored with each epoch row. Every other run's are computed from its spec: with a
per-epoch schedule (none, constant, the per-epoch schedulers, ReduceLROnPlateau) every step of
an epoch has the epoch's recorded LR, plateau reductions included; with a per-step schedule the
worker's own schedule code is walked (`per_step.walk_steps`). Either way only the epochs
stored so far are covered.

Downsampling (`max_points`) is min/max per bucket: the first and last points are kept, the
points between them cut into (max_points - 2) // 2 buckets of consecutive points, and of each
bucket the point with the smallest and the one with the largest LR (the first such point, in
step order). It is the MinMax aggregation of plotting libraries (M4, Jugel et al. 2014,
without each bucket's first and last point): deterministic, at most `max_points` points, and
every peak and trough a line through all points would show (OneCycleLR's maximum, a warmup's
start, a restart) survives at its own step."""

from __future__ import annotations

import array
import functools
import json
from collections.abc import Mapping, Sequence
from typing import Any, Literal

import numpy as np
from pydantic import ValidationError
from sqlalchemy.orm import Session

from service.experiments import service
from service.experiments.repository import ExperimentRepository
from service.kit.errors import Conflict
from service.training import per_step
from service.training.schedule import ScheduleError
from service.training.spec import ExperimentSpec

Resolution = Literal["epoch", "step"]
MAX_POINTS = 1_000_000


def minmax_indices(values: np.ndarray[Any, Any], max_points: int) -> np.ndarray[Any, Any]:
    """The positions kept when `values` are downsampled to at most `max_points` (module doc):
    sorted, the first and last included (one point when max_points is 1)."""
    n = len(values)
    if n <= max_points:
        return np.arange(n)
    if max_points == 1:
        return np.zeros(1, dtype=np.int64)
    buckets = (max_points - 2) // 2
    if buckets == 0:
        return np.array([0, n - 1])
    inner = values[1 : n - 1]  # n - 2 >= max_points - 1 > buckets points: no bucket is empty
    starts = np.arange(buckets, dtype=np.int64) * (n - 2) // buckets
    bucket = np.repeat(np.arange(buckets), np.diff(np.append(starts, n - 2)))
    kept = [np.array([0, n - 1])]
    for extreme in (np.minimum.reduceat(inner, starts), np.maximum.reduceat(inner, starts)):
        hits = np.flatnonzero(inner == extreme[bucket])  # ascending: a bucket's first hit first
        _, first = np.unique(bucket[hits], return_index=True)
        kept.append(hits[first] + 1)
    return np.unique(np.concatenate(kept))


def trace(
    session: Session, experiment_id: int, resolution: Resolution, max_points: int | None
) -> dict[str, Any]:
    """The body of GET …/lr (`schemas.LRTrace`'s shape) with plain values: a million points as
    dicts serialize in about a second (`pydantic_core.to_json`), as models they take several."""
    experiment = service.get(session, experiment_id)
    if experiment.kind != "train":
        raise Conflict(
            f"experiment {experiment_id} is an LR range test: its per-step LR is at "
            f"GET /v1/lr-range-tests/{experiment_id}",
            loc=service.PATH_ID,
        )
    repo = ExperimentRepository(session)
    steps_per_epoch = experiment.steps_per_epoch
    head: dict[str, Any] = {
        "experiment_id": experiment_id,
        "status": str(experiment.status),
        "resolution": resolution,
    }
    if resolution == "epoch":
        rows = repo.lr_rows(experiment_id)
        keep = _keep(np.array([r.lr for r in rows], dtype=np.float64), max_points).tolist()
        points = [{"epoch": rows[i].epoch, "lr": rows[i].lr, "lr_min": rows[i].lr_min,
                   "lr_max": rows[i].lr_max} for i in keep]  # fmt: skip
        return {**head, "source": "recorded", "steps_per_epoch": steps_per_epoch,
                "total_points": len(rows), "downsampled": len(keep) < len(rows),
                "points": points}  # fmt: skip

    spec = _spec(experiment_id, experiment.spec)
    recorded = per_step.recorded(spec)
    rows = repo.lr_rows(experiment_id, steps=recorded)
    if recorded:
        values, epochs = _recorded(experiment_id, rows)
    elif not rows:
        values, epochs = np.zeros(0), np.zeros(0, dtype=np.int64)
    elif steps_per_epoch is None:
        raise Conflict(
            f"experiment {experiment_id} has no steps_per_epoch, so its steps cannot be "
            "computed; its per-epoch LR is at ?resolution=epoch",
            loc=service.PATH_ID,
        )
    else:
        reductions = repo.lr_reductions(experiment_id) if per_step.per_step_scheduler(spec) else {}
        values, epochs = _computed(experiment_id, spec, steps_per_epoch, rows, reductions)
    keep = _keep(values, max_points)
    columns = zip(keep.tolist(), epochs[keep].tolist(), values[keep].tolist(), strict=True)
    return {**head, "source": "recorded" if recorded else "computed",
            "steps_per_epoch": steps_per_epoch, "total_points": len(values),
            "downsampled": len(keep) < len(values),
            "points": [{"step": i, "epoch": e, "lr": lr} for i, e, lr in columns]}  # fmt: skip


def _keep(values: np.ndarray[Any, Any], max_points: int | None) -> np.ndarray[Any, Any]:
    if max_points is None:
        return np.arange(len(values))
    return minmax_indices(values, max_points)


def _spec(experiment_id: int, stored: dict[str, Any]) -> ExperimentSpec:
    try:
        return ExperimentSpec.model_validate(stored)
    except ValidationError as exc:  # a spec stored by a release that read it otherwise
        raise Conflict(
            f"experiment {experiment_id}'s stored spec no longer validates, so its steps cannot "
            f"be computed ({exc.error_count()} errors); its per-epoch LR is at ?resolution=epoch",
            loc=service.PATH_ID,
        ) from None


def _recorded(
    experiment_id: int, rows: Sequence[Any]
) -> tuple[np.ndarray[Any, Any], np.ndarray[Any, Any]]:
    missing = [r.epoch for r in rows if r.step_lrs is None]
    if missing:
        raise Conflict(
            f"experiment {experiment_id} stored no per-step LR for epoch {missing[0]}"
            f"{f' and {len(missing) - 1} more' if len(missing) > 1 else ''} (recorded before "
            "Glidepath kept them); its per-epoch LR, with lr_min and lr_max where stored, is at "
            "?resolution=epoch",
            loc=service.PATH_ID,
        )
    parts = [np.frombuffer(per_step.unpack(r.step_lrs), dtype=np.float64) for r in rows]
    values = np.concatenate(parts) if parts else np.zeros(0)
    epochs = np.repeat([r.epoch for r in rows], [len(p) for p in parts])
    return values, epochs


def _computed(
    experiment_id: int, spec: ExperimentSpec, steps_per_epoch: int, rows: Sequence[Any],
    reductions: Mapping[int, float],
) -> tuple[np.ndarray[Any, Any], np.ndarray[Any, Any]]:  # fmt: skip
    epochs = np.repeat([r.epoch for r in rows], steps_per_epoch)
    if not per_step.per_step_scheduler(spec):
        return np.repeat([r.lr for r in rows], steps_per_epoch).astype(np.float64), epochs
    try:
        walked = _walk(_walk_key(spec, steps_per_epoch, rows[-1].epoch, reductions))
    except (ScheduleError, ValueError) as exc:
        raise Conflict(
            f"experiment {experiment_id}'s schedule cannot be walked again: {exc}",
            loc=service.PATH_ID,
        ) from None
    every = np.frombuffer(walked, dtype=np.float64).reshape(-1, steps_per_epoch)
    return every[[r.epoch - 1 for r in rows]].reshape(-1), epochs


def _walk_key(
    spec: ExperimentSpec, steps_per_epoch: int, epochs: int, reductions: Mapping[int, float]
) -> str:
    return json.dumps([spec.model_dump(mode="json"), steps_per_epoch, epochs,
                       sorted(reductions.items())], sort_keys=True)  # fmt: skip


@functools.lru_cache(maxsize=16)
def _walk(key: str) -> array.array[float]:
    """`per_step.walk_steps`, remembered for the last runs asked about (a dashboard's polls)."""
    spec_json, steps_per_epoch, epochs, reductions = json.loads(key)
    spec = ExperimentSpec.model_validate(spec_json)
    return per_step.walk_steps(spec, steps_per_epoch, epochs, dict(reductions))

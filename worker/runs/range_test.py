"""An LR range test on this worker: the engine's ramp (`worker.engine.range_test`) with its
points written in fenced transactions and the suggestion stored with the run."""

from __future__ import annotations

import threading
from functools import partial
from typing import Any

from service.experiments.repository import ExperimentRepository
from service.kit.db import session_scope
from service.kit.logging import get_logger
from service.lr_range.repository import RangeRepository
from service.training.range_spec import RangeParams
from service.training.spec import ExperimentSpec
from service.training.status import ExperimentStatus
from worker.engine import range_test
from worker.engine.data import to_device
from worker.engine.model import pick_device
from worker.runs import plugins
from worker.runs.budget import data_budget
from worker.runs.datasets import check_fits, load_arrays
from worker.runs.finish import LEASE_LOST, Outcome, finish_run
from worker.runs.retry import with_db_retry

log = get_logger(__name__)


def _start(experiment_id: int, attempt: int, **facts: Any) -> bool:
    """Fenced: record the device (and plugins) and drop an earlier attempt's points (the test
    starts over)."""
    with session_scope() as session:
        if not ExperimentRepository(session).fence(experiment_id, attempt, **facts):
            return False
        RangeRepository(session).clear(experiment_id)
        return True


def _write(experiment_id: int, attempt: int, rows: list[dict[str, Any]]) -> bool:
    with session_scope() as session:
        if not ExperimentRepository(session).fence(experiment_id, attempt):
            return False
        RangeRepository(session).write(rows)
        return True


def range_test_run(
    experiment_id: int, attempt: int, spec: ExperimentSpec, params: dict[str, Any],
    stop: threading.Event,
) -> Outcome:  # fmt: skip
    p = RangeParams.model_validate(params)
    device = pick_device(spec.device)
    arrays, info, dataset_plugin = load_arrays(spec.dataset)
    check_fits(spec, info, dataset_plugin)
    data = to_device(spec, arrays, info, device, data_budget(device))
    facts = {"device": str(device), "plugins": plugins.pinned(spec, dataset_plugin)}
    if not with_db_retry(
        partial(_start, experiment_id, attempt, **facts), f"range test {experiment_id} start"
    ):
        return Outcome(experiment_id, LEASE_LOST)

    def write(rows: list[dict[str, Any]]) -> bool:
        return with_db_retry(
            partial(_write, experiment_id, attempt, rows), f"range test {experiment_id} points"
        )

    out = range_test.run(
        experiment_id, spec, p, data, device, stop, write, plugins.model_plugin(spec)
    )
    if out.result is None:
        return Outcome(experiment_id, LEASE_LOST, out.steps_run)
    log.info("range_test_done", stopped=out.stopped, steps_run=out.steps_run,
             suggested_lr=out.result["suggested_lr"])  # fmt: skip
    ended = finish_run(experiment_id, attempt, ExperimentStatus.SUCCEEDED,
                       stop_reason=out.stopped, range_result=out.result)  # fmt: skip
    if not ended:
        return Outcome(experiment_id, LEASE_LOST, out.steps_run)
    return Outcome(experiment_id, ExperimentStatus.SUCCEEDED, out.steps_run)

"""One run on this worker, end to end: claim it, hold its lease, run it (training or an LR range
test), and turn how it stopped into its final status or a hand-back. A plain function: the
Celery task only calls it."""

from __future__ import annotations

import traceback
from typing import Any

from service import housekeeping
from service.config import settings
from service.experiments.repository import Claimed, ExperimentRepository
from service.kit.db import session_scope
from service.kit.logging import bound, get_logger
from service.training.spec import ExperimentSpec
from service.training.status import ExperimentStatus
from worker.engine.loop import Cancelled
from worker.runs import registry
from worker.runs.finish import HANDED_BACK, LEASE_LOST, NOT_CLAIMED, Outcome, finish_run, hand_back
from worker.runs.lease import Lease
from worker.runs.range_test import range_test_run
from worker.runs.retry import with_db_retry
from worker.runs.training import train_run

log = get_logger(__name__)


def run_experiment(experiment_id: int, owner: str | None = None,
                   finish_behind: bool = False) -> Outcome:  # fmt: skip
    """`finish_behind`: a run that needs nothing once it has ended may be finished by the epoch
    writer while this returns (runs/finish.py `finish_run_behind`; the Celery task's choice: its
    worker takes its next run meanwhile). False: it returns once the final status is stored."""
    owner = owner or registry.worker_id()

    def claim() -> Claimed | None:
        with session_scope() as session:
            repo = ExperimentRepository(session)
            found = repo.claim_run(experiment_id, owner, settings.lease_seconds, takeover=False)
            # Not queued: if its last worker was lost, the reaper's rules first (cancel, fail
            # after GLIDEPATH_MAX_ATTEMPTS losses, or requeue), not a takeover that skips them;
            # then a requeued run is claimed. One transaction; a queued run pays one statement.
            if found is None and housekeeping.reap_in(session, only=experiment_id):
                found = repo.claim_run(experiment_id, owner, settings.lease_seconds,
                                       takeover=False)  # fmt: skip
            return found

    # Retried as the run's other transactions are: a connection the database dropped since its
    # last use (the pool pings only idle ones) would otherwise fail the task, and the run would
    # wait for its message to be sent again.
    claimed = with_db_retry(claim, f"experiment {experiment_id} claim")
    if claimed is None or claimed.spec is None:
        log.info("not_claimed", experiment_id=experiment_id, reason="held elsewhere or ended")
        return Outcome(experiment_id, NOT_CLAIMED)
    attempt, spec_json, kind = claimed.attempt, claimed.spec, claimed.kind
    range_params, in_sweep = claimed.range_test, claimed.sweep_id is not None
    # Every event of this run, here and in the modules it calls, carries these three fields.
    with bound(experiment_id=experiment_id, attempt=attempt, worker=owner):
        log.info("claimed", kind=kind)
        registry.holding(experiment_id)
        try:
            outcome = _run_claimed(experiment_id, attempt, kind, spec_json, range_params,
                                   in_sweep, finish_behind)  # fmt: skip
        finally:
            registry.holding(None)
        outcome.in_sweep = in_sweep
        if outcome.status == LEASE_LOST:  # the other endings log themselves (finish, hand_back)
            log.info("lease_lost", epochs_run=outcome.epochs_run)
        return outcome


def _run_claimed(
    experiment_id: int, attempt: int, kind: str | None, spec_json: dict[str, Any],
    range_params: dict[str, Any] | None, in_sweep: bool = True, finish_behind: bool = False,
) -> Outcome:  # fmt: skip
    lease = Lease(experiment_id, attempt, settings.lease_seconds)
    lease.start()
    try:
        spec = ExperimentSpec.model_validate(spec_json)
        if kind == "lr_range_test":
            # Same claim, lease, cancel and failure handling as training; a different loop.
            return range_test_run(experiment_id, attempt, spec, range_params or {}, lease.stop)
        return train_run(experiment_id, attempt, spec, lease.stop, in_sweep, finish_behind)
    except Cancelled:
        if lease.lost:
            return Outcome(experiment_id, LEASE_LOST)
        if lease.shutdown and not lease.cancelled:
            hand_back(experiment_id, attempt)
            return Outcome(experiment_id, HANDED_BACK)
        finish_run(experiment_id, attempt, ExperimentStatus.CANCELLED,
                   stop_reason="cancelled while running")  # fmt: skip
        return Outcome(experiment_id, ExperimentStatus.CANCELLED)
    except Exception as exc:
        log.exception("run_failed")
        detail = "".join(traceback.format_exception_only(type(exc), exc)).strip()
        finish_run(experiment_id, attempt, ExperimentStatus.FAILED, error=detail[:2000])
        return Outcome(experiment_id, ExperimentStatus.FAILED)
    finally:
        lease.close()

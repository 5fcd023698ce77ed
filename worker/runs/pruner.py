"""A sweep's pruner on the worker: after each epoch is written, what the pruner says about it
(service/sweeps/pruning.py decides and stores; this turns it into the program's Decision), and
the pause at a synchronous rung."""

from __future__ import annotations

from dataclasses import replace

from service.kit.db import session_scope
from service.kit.logging import get_logger
from service.sweeps import pruning
from service.training.decisions import Decision, Event
from service.training.status import ExperimentStatus

log = get_logger(__name__)


def _ends(decision: Decision, status: ExperimentStatus, p: pruning.RunPruner,
          value: float | None, cutoff: float | None, reason: str) -> Decision:  # fmt: skip
    event = Event(str(status), p.rule.metric, value, cutoff, None, None, None, reason)
    return replace(decision, stop=str(status), events=[*decision.events, event])


def after_epoch(p: pruning.RunPruner, epoch: int, decision: Decision) -> Decision:
    """`decision` as the pruner leaves it: unchanged, ending `pruned`, or pausing `waiting` at
    a synchronous rung not yet decided for this run. Called after an epoch the pruner asks at
    (`RunPruner.asks_at`), once that epoch is stored."""
    done: pruning.Taken | None
    if p.rule.synchronous:
        done = p.taken.get(epoch)  # read when the attempt began: no transaction at each rung
        if done is None:  # its group decides once every live run is here or has ended
            reason = (f"reached rung {p.rung_of(epoch)} (epoch {epoch}): waits until every live "
                      "run of its group has reached it or ended")  # fmt: skip
            return _ends(decision, ExperimentStatus.WAITING, p, None, None, reason)
    else:
        with session_scope() as session:
            stored = pruning.decide_async(session, p, epoch)
            done = None if stored is None else pruning.Taken.of(stored)
    if done is None or done.decision == "continue":
        return decision
    return _ends(decision, ExperimentStatus.PRUNED, p, done.value, done.cutoff, done.reason)


def pause(experiment_id: int, attempt: int, p: pruning.RunPruner, epoch: int) -> str | None:
    """Hand the run back as `waiting` (its checkpoint at `epoch` is uploaded by now), then decide
    the rung if this run completed it. Its status then: `waiting`, or `cancelled` when a cancel
    flagged it on its way to the rung; None when the attempt no longer holds the run."""
    with session_scope() as session:
        status = pruning.wait_at_rung(session, experiment_id, attempt, epoch)
    if status is None:
        return None
    log.info(status, epoch=epoch, rung=p.rung_of(epoch))
    with session_scope() as session:
        # The rule as the attempt read it; only this run's group can have completed a rung.
        pruning.complete_rungs(session, p.sweep_id, p.rule, (p.stage, p.bracket))
    return status

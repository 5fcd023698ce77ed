"""A sweep's pruner over the database: which rule applies to a run, the decisions at its rungs
(the rules themselves are service/training/pruning.py, pure; the queries are the repositories':
`PruningRepository` for the decisions and rungs, `ExperimentRepository` for the runs and their
values), and the synchronous rung that is decided exactly once, by whoever sees it complete.

- ASHA and median: the run's worker asks right after writing the epoch (`decide_async`); ASHA's
  "values recorded at this rung so far" are the decisions stored at the rung before it, read and
  extended under a lock on the sweep's row, so the stored order is the order taken.
- Successive halving and hyperband: a run that writes a rung epoch goes `waiting` (its checkpoint
  at that epoch written, its worker freed: `wait_at_rung`); `complete_rungs` decides a rung once
  every live run of its group (stage and bracket) has reached it or ended. Inserting the rung's
  row decides it: one INSERT … ON CONFLICT DO NOTHING, so of the processes that see it complete
  (the last run's worker, housekeeping after a crash) exactly one writes its decisions,
  re-queues the best runs (they resume from their checkpoints) and prunes the rest.

A decision is stored once per (run, epoch): a resumed run that reaches the epoch again gets the
stored one. Decisions depend only on stored values, so a crash changes none of them. A stop is
also stored as the run's own decision (kind `pruned`, `_record_stops`), so the run's
/decisions, compare and events list it beside its plateau and early-stopping decisions.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

from sqlalchemy.orm import Session

from service.artifacts import service as artifacts
from service.dispatch import service as dispatch
from service.experiments.models import Experiment
from service.experiments.repository import ExperimentRepository, Member
from service.kit.logging import get_logger
from service.kit.notify import announce
from service.kit.time import utcnow
from service.sweeps.models import Sweep, SweepDecision
from service.sweeps.repository import PruningRepository, SweepRepository
from service.training import pruning
from service.training.spec import mode_for, stored_epochs
from service.training.status import FINAL, ExperimentStatus

log = get_logger(__name__)


@dataclass(frozen=True)
class Rule:
    """A sweep's pruner with its defaults filled in."""

    type: str
    metric: str
    mode: str
    min_epochs: int
    eta: int
    min_runs: int
    seed: int

    @classmethod
    def of(cls, sweep: Sweep) -> Rule | None:
        p = sweep.request.get("pruner")
        if not p:
            return None
        metric = p.get("metric") or sweep.metric
        mode = p.get("mode") or (sweep.mode if metric == sweep.metric else mode_for(metric))
        return cls(p["type"], metric, mode, int(p.get("min_epochs", 1)),
                   int(p.get("reduction_factor", 3)), int(p.get("min_runs", 5)),
                   int(p.get("seed", 0)))  # fmt: skip

    @property
    def synchronous(self) -> bool:
        return self.type in pruning.SYNCHRONOUS

    def brackets(self, epochs: int) -> int:
        return (
            pruning.brackets(self.min_epochs, self.eta, epochs) if self.type == "hyperband" else 1
        )

    def rungs(self, epochs: int, bracket: int) -> list[int]:
        if self.type == "median":
            return []
        return pruning.rungs(self.min_epochs, self.eta, epochs, bracket)

    def describe(self) -> str:
        """The rule in words, as the sweep's detail states it."""
        r, eta, m = self.min_epochs, self.eta, self.metric
        best = "lowest" if self.mode == "min" else "highest"
        if self.type == "median":
            return (f"median: after each epoch from {r} on, a run stops if its best {m} is "
                    f"worse than the median of the other runs' best up to that epoch, over at "
                    f"least {self.min_runs} runs that reached it ({best} is best)")  # fmt: skip
        rungs = f"rungs at epochs {r}·{eta}^k below each run's epochs"
        keep = f"the best max(1, ⌊n/{eta}⌋) of the n by {m} ({best} first, ties to the lower id)"
        if self.type == "asha":
            return (f"asha: {rungs}; a run reaching a rung continues iff it is among {keep} "
                    "recorded at that rung so far, itself included; no run waits")  # fmt: skip
        text = (f"successive halving: {rungs}; a run waits at each rung until every live run "
                f"of its group has reached it or ended, then {keep} continue")  # fmt: skip
        if self.type == "hyperband":
            text = (f"hyperband: brackets b = 0.. of {text}, bracket b's first rung at "
                    f"{r}·{eta}^b; the trial with index i among its stage's runs (by id, as "
                    f"created) goes to the bracket drawn by "
                    f"random.Random(f'{self.seed}:{{i}}').choices over the brackets weighted "
                    "⌈(s_max+1)/(s+1)·η^s⌉, s = s_max − b")  # fmt: skip
        return text


@dataclass(frozen=True)
class Taken:
    """A decision stored about a run at a rung, as the run's worker acts on it."""

    decision: str  # "continue" | "stop"
    value: float | None
    cutoff: float | None
    reason: str

    @classmethod
    def of(cls, d: SweepDecision) -> Taken:
        return cls(d.decision, d.value, d.cutoff, d.reason)


@dataclass(frozen=True)
class RunPruner:
    """The pruner as it applies to one run. `taken`: the decisions stored about the run at its
    synchronous rungs when its attempt began, by epoch. No other can be taken while the attempt
    lasts: a rung is decided about the runs waiting at it, and a run waits only once its
    attempt has ended; so the worker reads them once, not at each rung (where a run resumed
    from a checkpoint before a decided rung is told that decision again)."""

    rule: Rule
    sweep_id: int
    experiment_id: int
    stage: int
    bracket: int
    rungs: tuple[int, ...]
    taken: dict[int, Taken] = field(default_factory=dict, hash=False)

    def rung_of(self, epoch: int) -> int | None:
        return self.rungs.index(epoch) if epoch in self.rungs else None

    def asks_at(self, epoch: int) -> bool:
        """Whether the rule has anything to decide after `epoch`: a rung's epoch, or (median)
        any epoch from min_epochs on."""
        if self.rule.type == "median":
            return epoch >= self.rule.min_epochs
        return epoch in self.rungs


def brackets_of(rule: Rule, runs: list[Member]) -> dict[int, int]:
    """Each run's bracket: the stored one, else its index among its stage's runs (by id) drawn
    into a bracket."""
    out: dict[int, int] = {}
    by_stage: dict[int, list[Member]] = {}
    for run in sorted(runs, key=lambda r: r.id):
        by_stage.setdefault(run.sweep_stage or 1, []).append(run)
    for stage_runs in by_stage.values():
        for i, run in enumerate(stage_runs):
            if run.bracket is not None:
                out[run.id] = run.bracket
                continue
            count = rule.brackets(run.epochs)
            out[run.id] = pruning.bracket_of(i, rule.seed, count, rule.eta) if count > 1 else 0
    return out


def store_brackets(session: Session, rule: Rule | None, runs: list[Member]) -> dict[int, int]:
    """Hyperband: each run's bracket (`brackets_of`), stored where it was not. A stage's runs get
    theirs as they are created (`draw_brackets`), so that deleting an ended run moves no other
    run's index, hence bracket; runs of sweeps created before brackets were stored get theirs the
    first time the pruner asks. Other rules: none."""
    if rule is None or rule.type != "hyperband":
        return {}
    brackets = brackets_of(rule, runs)
    ExperimentRepository(session).set_brackets(
        {r.id: brackets[r.id] for r in runs if r.bracket is None}
    )
    return brackets


def draw_brackets(session: Session, sweep: Sweep, rows: Sequence[Experiment]) -> None:
    """A stage's runs just inserted: a hyperband sweep's get their brackets (`store_brackets`)."""
    members = [Member(r.id, r.status, 0, r.sweep_stage, stored_epochs(r.spec), None) for r in rows]
    store_brackets(session, Rule.of(sweep), members)


def for_run(session: Session, experiment_id: int, fresh: bool = False) -> RunPruner | None:
    """The pruner of the run's sweep, or None (no sweep, no pruner). `fresh`: the run's first
    attempt, about which nothing can have been decided (no read of `taken`)."""
    runs = ExperimentRepository(session)
    run = runs.get(experiment_id)
    if run is None or run.sweep_id is None:
        return None
    sweep = SweepRepository(session).get(run.sweep_id)
    rule = Rule.of(sweep) if sweep is not None else None
    if rule is None:
        return None
    bracket = run.sweep_bracket or 0
    if rule.type == "hyperband" and run.sweep_bracket is None:  # a sweep from before they were
        bracket = store_brackets(session, rule, runs.members_of(run.sweep_id))[run.id]
    taken = {}
    if rule.synchronous and not fresh:
        taken = {d.epoch: Taken.of(d) for d in PruningRepository(session).taken_about(run.id)}
    return RunPruner(rule, run.sweep_id, run.id, run.sweep_stage or 1, bracket,
                     tuple(rule.rungs(stored_epochs(run.spec), bracket)), taken)  # fmt: skip


def _decision_row(p: RunPruner, v: pruning.Verdict) -> dict[str, Any]:
    return {"sweep_id": p.sweep_id, "experiment_id": v.experiment_id, "stage": p.stage,
            "bracket": p.bracket, "epoch": v.epoch, "rung": v.rung, "value": v.value,
            "cutoff": v.cutoff, "compared": v.compared, "decision": v.decision,
            "reason": v.reason, "created_at": utcnow()}  # fmt: skip


def _record_stops(session: Session, metric: str,
                  stops: Sequence[tuple[int, int, float | None, str]]) -> None:  # fmt: skip
    """The pruner's stops (run, epoch, value, reason) as the runs' own decisions. Upserted: a
    run that lost its lease after its stop was stored resumes from a checkpoint (its decisions
    after it cut) and is told the same stop again."""
    now = utcnow()
    ExperimentRepository(session).record_decisions([
        {"experiment_id": i, "epoch": epoch, "kind": ExperimentStatus.PRUNED.value,
         "monitor": metric, "value": value, "best": None, "best_epoch": None, "old_lr": None,
         "new_lr": None, "reason": reason, "created_at": now}
        for i, epoch, value, reason in stops
    ])  # fmt: skip


def _told(session: Session, p: RunPruner, stored: SweepDecision) -> SweepDecision:
    if stored.decision == "stop":
        stop = (stored.experiment_id, stored.epoch, stored.value, stored.reason)
        _record_stops(session, p.rule.metric, [stop])
    return stored


def decide_async(session: Session, p: RunPruner, epoch: int) -> SweepDecision | None:
    """ASHA at a rung, median after each epoch from min_epochs: the decision about the epoch
    just written (the stored one if it was taken before). Median's `continue` is not stored:
    only what changes a run is, with its inputs."""
    rule, decided = p.rule, PruningRepository(session)
    if rule.type == "asha":
        rung = p.rung_of(epoch)
        if rung is None:
            return None
        decided.lock_sweep(p.sweep_id)
        if (done := decided.decision(p.experiment_id, epoch)) is not None:
            return _told(session, p, done)
        before = decided.recorded_at(p.sweep_id, p.stage, epoch, rung)
        values = ExperimentRepository(session).values_at([p.experiment_id], epoch, rule.metric)
        verdict = pruning.asha(p.experiment_id, values.get(p.experiment_id), before, rule.eta,
                               rule.mode, rule.metric, epoch, rung)  # fmt: skip
        return _told(session, p, decided.add(_decision_row(p, verdict)))
    if rule.type == "median" and epoch >= rule.min_epochs:
        if (done := decided.decision(p.experiment_id, epoch)) is not None:
            return _told(session, p, done)
        bests = ExperimentRepository(session).bests_up_to(
            p.sweep_id, p.stage, epoch, rule.metric, rule.mode
        )
        own = bests.pop(p.experiment_id, None)
        others = [v for v in bests.values() if v is not None]
        found = pruning.median(p.experiment_id, own, others, rule.min_runs, rule.mode,
                               rule.metric, epoch)  # fmt: skip
        if found is not None and found.stop:
            return _told(session, p, decided.add(_decision_row(p, found)))
    return None


def wait_at_rung(session: Session, experiment_id: int, attempt: int, epoch: int) -> str | None:
    """The run's worker lets it go at a rung: `waiting`, its lease cleared, or `cancelled` if a
    cancel (its own, its sweep's) flagged it before the worker saw it. None when this attempt
    no longer holds it."""
    repo = ExperimentRepository(session)
    if not repo.fence_and_end(experiment_id, attempt, "waiting", status=ExperimentStatus.WAITING,
                              lease_owner=None, lease_expires_at=None,
                              epochs_run=epoch):  # fmt: skip
        return None
    if repo.cancel_waiting(experiment_id):
        return ExperimentStatus.CANCELLED
    return ExperimentStatus.WAITING


def complete_rungs(session: Session, sweep_id: int, rule: Rule | None,
                   group: tuple[int, int] | None = None) -> int:  # fmt: skip
    """Decide every synchronous rung of the sweep that is complete and not yet decided; how
    many were. `rule`: the sweep's (`Rule.of`). `group`: the (stage, stored bracket) of the run
    that paused or ended, the only group whose rungs can then complete (hyperband: a count of
    its runs going, then its runs read, where the whole sweep may be 1,000). Safe to call any
    number of times, from any process."""
    if rule is None or not rule.synchronous:
        return 0
    repo = ExperimentRepository(session)
    going = (ExperimentStatus.QUEUED, ExperimentStatus.RUNNING)
    if rule.type == "successive_halving" and repo.any_in_sweep(sweep_id, going):
        # One group per stage, and stages never overlap: a run still queued or training means
        # no rung is complete. Checked with a count, so each of 1,000 pauses is one cheap read.
        return 0
    if rule.type == "hyperband" and group is not None:
        if repo.any_in_sweep(sweep_id, going, group):
            return 0
        return _decide(session, sweep_id, rule, {group: repo.members_of(sweep_id, group)})
    if rule.type == "hyperband":
        counts = repo.group_counts(sweep_id, going)
        if all(bracket is not None for _, bracket, _, _ in counts):  # else: drawn, stored below
            # Housekeeping knows no run: the groups with a run waiting and none going, each
            # read alone (the whole sweep was read every 2 s for each sweep running).
            ready = [(stage, bracket) for stage, bracket, n_going, n_waiting in counts
                     if bracket is not None and n_waiting and not n_going]  # fmt: skip
            groups: dict[tuple[int, int], list[Member]] = {
                g: repo.members_of(sweep_id, g) for g in ready
            }
            return _decide(session, sweep_id, rule, groups)
    runs = repo.members_of(sweep_id)
    brackets = store_brackets(session, rule, runs)
    groups = {}
    for run in runs:
        groups.setdefault((run.sweep_stage or 1, brackets.get(run.id, 0)), []).append(run)
    return _decide(session, sweep_id, rule, groups)


def _decide(session: Session, sweep_id: int, rule: Rule,
            groups: dict[tuple[int, int], list[Member]]) -> int:  # fmt: skip
    """Each rung a run of these groups waits at, decided if complete; how many were."""
    decided = 0
    for (stage, bracket), members in groups.items():
        waiting = {r.epochs_run for r in members if r.status == ExperimentStatus.WAITING}
        for epoch in sorted(waiting):
            decided += _complete(session, sweep_id, rule, stage, bracket, epoch, members)
    return decided


def _complete(session: Session, sweep_id: int, rule: Rule, stage: int, bracket: int, epoch: int,
              group: list[Member]) -> int:  # fmt: skip
    reached = [r for r in group if r.status == ExperimentStatus.WAITING and r.epochs_run == epoch]
    at_rung = {r.id for r in reached}
    live = [r for r in group if r.status not in FINAL and r.id not in at_rung]
    if not reached or live:
        return 0  # a live run has yet to reach the rung or end
    row = {"sweep_id": sweep_id, "stage": stage, "bracket": bracket, "epoch": epoch,
           "reached": len(reached), "continued": max(1, len(reached) // rule.eta),
           "decided_at": utcnow()}  # fmt: skip
    decided = PruningRepository(session)
    if not decided.decide_rung(row):
        return 0  # decided by another process
    rung = rule.rungs(reached[0].epochs, bracket).index(epoch)
    runs = ExperimentRepository(session)
    stored_at = runs.values_at([r.id for r in reached], epoch, rule.metric)  # the whole rung
    values = [(r.id, stored_at.get(r.id)) for r in reached]
    verdicts = pruning.successive_halving(values, rule.eta, rule.mode, rule.metric, epoch, rung)
    p = RunPruner(rule, sweep_id, 0, stage, bracket, ())
    # Three statements however many runs reached the rung (1,000 at most): the decisions, the
    # pruned runs with their reasons, the promoted ones (a run cancelled meanwhile stays so).
    decided.add_many([_decision_row(p, v) for v in verdicts])
    stopped = {v.experiment_id: v.reason for v in verdicts if v.stop}
    pruned = runs.prune_waiting(stopped)
    stops = [(v.experiment_id, epoch, v.value, v.reason) for v in verdicts
             if v.experiment_id in pruned]  # fmt: skip
    _record_stops(session, rule.metric, stops)
    artifacts.drop_checkpoints(session, list(stopped))  # a pruned run keeps no checkpoint
    for exp_id, queue in runs.requeue_waiting([v.experiment_id for v in verdicts if not v.stop]):
        dispatch.enqueue(session, exp_id, queue, dispatch.RUN_TASK)
    announce(session, [v.experiment_id for v in verdicts])
    log.info("rung_decided", sweep_id=sweep_id, stage=stage, bracket=bracket, epoch=epoch,
             reached=len(reached), continued=row["continued"])  # fmt: skip
    return 1

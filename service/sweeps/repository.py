"""Every query on `sweeps` and on its pruner's tables (`sweep_decisions`, `sweep_rungs`). A
sweep's runs are experiments rows: `ExperimentRepository` reads and moves them (the runs of a
sweep, their counts per status, their best scores, the pruned and promoted at a rung); the
sweeps list's best run of each sweep is read here, in one query per metric."""

from __future__ import annotations

import math
from collections import defaultdict
from collections.abc import Sequence
from typing import Any

from sqlalchemy import func, insert, select, update
from sqlalchemy.orm import Session

from service.experiments.models import EpochRow, Experiment
from service.kit.notify import announce
from service.kit.time import utcnow
from service.kit.upsert import insert_new
from service.sweeps.models import Sweep, SweepDecision, SweepRung, SweepStatus
from service.training.status import OK


class SweepRepository:
    def __init__(self, session: Session) -> None:
        self.session = session

    def get(self, sweep_id: int) -> Sweep | None:
        return self.session.get(Sweep, sweep_id)

    def newest(self, limit: int) -> list[Sweep]:
        return list(self.session.scalars(select(Sweep).order_by(Sweep.id.desc()).limit(limit)))

    def running_ids(self, limit: int) -> list[int]:
        q = select(Sweep.id).where(Sweep.status == SweepStatus.RUNNING).limit(limit)
        return list(self.session.scalars(q))

    def add(self, sweep: Sweep) -> Sweep:
        self.session.add(sweep)
        self.session.flush()
        return sweep

    def cancel(self, sweep_id: int) -> None:
        """A running sweep ends as cancelled; one already ended keeps its status."""
        self.session.execute(
            update(Sweep)
            .where(Sweep.id == sweep_id, Sweep.status == SweepStatus.RUNNING)
            .values(status=SweepStatus.CANCELLED, finished_at=utcnow(), note="cancelled")
        )
        announce(self.session, sweep_id=sweep_id)

    def start_stage_two(self, sweep_id: int, note: str) -> bool:
        """Move a running sweep from stage 1 to 2. A conditional UPDATE: when two processes see
        stage 1 end at once, exactly one gets True and launches the stage."""
        won = self.session.execute(
            update(Sweep)
            .where(Sweep.id == sweep_id, Sweep.stage == 1, Sweep.status == SweepStatus.RUNNING)
            .values(stage=2, note=note)
        )
        return won.rowcount == 1  # type: ignore[attr-defined]

    def finish(self, sweep_id: int, note: str | None) -> None:
        self.session.execute(
            update(Sweep)
            .where(Sweep.id == sweep_id, Sweep.status == SweepStatus.RUNNING)
            .values(status=SweepStatus.FINISHED, finished_at=utcnow(), note=note)
        )
        announce(self.session, sweep_id=sweep_id)

    def best_runs(self, sweeps: Sequence[Sweep]) -> dict[int, tuple[int, float]]:
        """Each sweep's best run among those that finished well, by its metric and mode, ties to
        the lower id: sweep id → (experiment id, its best value). The detail's `best` says the
        same from every run's history; a list page cannot read every history, so the database
        ranks the epoch rows (one query per metric and mode among `sweeps`, each returning one
        row per sweep). Non-finite values rank nowhere, as on the leaderboard."""
        groups: dict[tuple[str, str], list[int]] = defaultdict(list)
        for sweep in sweeps:
            groups[(sweep.metric, sweep.mode)].append(sweep.id)
        out: dict[int, tuple[int, float]] = {}
        for (metric, mode), ids in groups.items():
            column = getattr(EpochRow, metric)
            order = (column.asc() if mode == "min" else column.desc(), EpochRow.experiment_id)
            ranked = (
                select(
                    Experiment.sweep_id.label("sweep_id"),
                    EpochRow.experiment_id.label("experiment_id"),
                    column.label("value"),
                    func.row_number()
                    .over(partition_by=Experiment.sweep_id, order_by=order)
                    .label("place"),
                )
                .join(Experiment, Experiment.id == EpochRow.experiment_id)
                .where(
                    Experiment.sweep_id.in_(ids),
                    Experiment.status.in_(list(OK)),
                    # PostgreSQL's NaN sorts above every number and inf is a float: keep both out.
                    column > -math.inf,
                    column < math.inf,
                )
                .subquery()
            )
            q = select(ranked.c.sweep_id, ranked.c.experiment_id, ranked.c.value).where(
                ranked.c.place == 1
            )
            for sweep_id, experiment_id, value in self.session.execute(q):
                out[int(sweep_id)] = (int(experiment_id), float(value))
        return out


class PruningRepository:
    """A sweep pruner's decisions, one per (run, epoch), and its decided rungs."""

    def __init__(self, session: Session) -> None:
        self.session = session

    def decision(self, experiment_id: int, epoch: int) -> SweepDecision | None:
        """The decision taken about the run's `epoch`, if one was."""
        return self.session.scalar(
            select(SweepDecision).where(
                SweepDecision.experiment_id == experiment_id, SweepDecision.epoch == epoch
            )
        )

    def taken_about(self, experiment_id: int) -> list[SweepDecision]:
        """Every decision about the run, at any epoch."""
        q = select(SweepDecision).where(SweepDecision.experiment_id == experiment_id)
        return list(self.session.scalars(q))

    def add(self, row: dict[str, Any]) -> SweepDecision:
        decision = SweepDecision(**row)
        self.session.add(decision)
        self.session.flush()
        return decision

    def add_many(self, rows: list[dict[str, Any]]) -> None:
        self.session.execute(insert(SweepDecision), rows)

    def lock_sweep(self, sweep_id: int) -> None:
        """Serialise the sweep's asynchronous decisions: a row lock on PostgreSQL, the write lock
        on SQLite, held to the end of the transaction."""
        self.session.execute(update(Sweep).where(Sweep.id == sweep_id).values(stage=Sweep.stage))

    def recorded_at(
        self, sweep_id: int, stage: int, epoch: int, rung: int
    ) -> list[tuple[int, float | None]]:
        """The values decided at a rung so far, in the order taken: (experiment id, value)."""
        q = (
            select(SweepDecision.experiment_id, SweepDecision.value)
            .where(SweepDecision.sweep_id == sweep_id, SweepDecision.stage == stage,
                   SweepDecision.epoch == epoch, SweepDecision.rung == rung)
            .order_by(SweepDecision.id)
        )  # fmt: skip
        return [(int(i), v) for i, v in self.session.execute(q)]

    def decide_rung(self, row: dict[str, Any]) -> bool:
        """Insert the rung's row: True for the one call, of any process, that decides it."""
        return insert_new(self.session, SweepRung.__table__, row)  # type: ignore[arg-type]

    def decisions(self, sweep_id: int) -> list[SweepDecision]:
        q = select(SweepDecision).where(SweepDecision.sweep_id == sweep_id)
        return list(self.session.scalars(q.order_by(SweepDecision.id)))

    def rungs(self, sweep_id: int) -> list[SweepRung]:
        q = select(SweepRung).where(SweepRung.sweep_id == sweep_id)
        return list(self.session.scalars(
            q.order_by(SweepRung.stage, SweepRung.bracket, SweepRung.epoch)
        ))  # fmt: skip

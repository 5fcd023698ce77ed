"""Every query on `artifacts`."""

from __future__ import annotations

import functools
from collections.abc import Sequence
from typing import Any

from sqlalchemy import Row, Select, bindparam, delete, select
from sqlalchemy.orm import Session

from service.artifacts.models import Artifact
from service.kit.time import utcnow
from service.kit.upsert import upsert


def artifact_row(
    kind: str, key: str, sha256: str, size: int, experiment_id: int | None = None,
    epoch: int | None = None, attempt: int | None = None,
) -> dict[str, Any]:  # fmt: skip
    """An artifacts row as `ArtifactRepository.record` takes it, made now."""
    return {"key": key, "kind": kind, "sha256": sha256, "size": size,
            "experiment_id": experiment_id, "epoch": epoch, "attempt": attempt,
            "created_at": utcnow()}  # fmt: skip


@functools.cache
def _models_statement() -> Select[Any]:
    """`models_of`' read, built once and run as Core (a polled run's detail makes it once the
    run has ended): oldest first, so that the newest row of a run is the one kept."""
    a = Artifact.__table__
    return (
        select(a.c.experiment_id, a.c.size, a.c.sha256)
        .where(a.c.experiment_id.in_(bindparam("p_ids", expanding=True)), a.c.kind == "model")
        .order_by(a.c.id)
    )


class ArtifactRepository:
    def __init__(self, session: Session) -> None:
        self.session = session

    def record(self, row: dict[str, Any]) -> None:
        """Insert, or replace the row of the same key (a rewritten model, a re-uploaded name):
        one INSERT … ON CONFLICT (key) DO UPDATE, a single round trip (it is in the transaction
        that finishes every run)."""
        upsert(self.session, Artifact.__table__, [row], ["key"])  # type: ignore[arg-type]

    def by_key(self, key: str) -> Artifact | None:
        return self.session.scalars(select(Artifact).where(Artifact.key == key)).first()

    def checkpoints(self, experiment_id: int, max_epoch: int | None = None) -> list[Artifact]:
        """A run's checkpoints, newest epoch first (at most `max_epoch`)."""
        q = select(Artifact).where(Artifact.experiment_id == experiment_id,
                                   Artifact.kind == "checkpoint")  # fmt: skip
        if max_epoch is not None:
            q = q.where(Artifact.epoch <= max_epoch)
        return list(self.session.scalars(q.order_by(Artifact.epoch.desc(), Artifact.id.desc())))

    def of_run(self, experiment_id: int, kind: str | None = None) -> list[Artifact]:
        q = select(Artifact).where(Artifact.experiment_id == experiment_id)
        if kind is not None:
            q = q.where(Artifact.kind == kind)
        return list(self.session.scalars(q.order_by(Artifact.id)))

    def forget(self, keys: list[str]) -> None:
        if keys:
            self.session.execute(delete(Artifact).where(Artifact.key.in_(keys)))

    def models_of(self, experiment_ids: Sequence[int]) -> dict[int, Row[Any]]:
        """The model row (size, sha256) of each run that has one, as plain Core: one query for
        a whole page of runs, or for one."""
        if not experiment_ids:
            return {}
        params = {"p_ids": list(experiment_ids)}
        rows = self.session.connection().execute(_models_statement(), params)
        return {row.experiment_id: row for row in rows}

    def forget_checkpoints(self, experiment_ids: Sequence[int]) -> list[str]:
        """Delete the checkpoint rows of these runs (one statement); their keys."""
        if not experiment_ids:
            return []
        return list(self.session.scalars(
            delete(Artifact).where(Artifact.experiment_id.in_(list(experiment_ids)),
                                   Artifact.kind == "checkpoint").returning(Artifact.key)
        ))  # fmt: skip

    def forget_run(self, experiment_id: int) -> None:
        """Every row of a run's artifacts (its model and checkpoints)."""
        self.session.execute(delete(Artifact).where(Artifact.experiment_id == experiment_id))

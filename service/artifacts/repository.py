"""Every query on `artifacts`."""

from __future__ import annotations

from sqlalchemy import delete, select
from sqlalchemy.orm import Session

from service.artifacts.models import Artifact


class ArtifactRepository:
    def __init__(self, session: Session) -> None:
        self.session = session

    def record(self, artifact: Artifact) -> Artifact:
        """Insert, or replace the row of the same key (a rewritten model, a re-uploaded name)."""
        self.session.execute(delete(Artifact).where(Artifact.key == artifact.key))
        self.session.add(artifact)
        self.session.flush()
        return artifact

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

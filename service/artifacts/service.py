"""Artifacts as the API and the workers use them: the store the settings name, and the record
(key, sha256, size) each artifact has in the database."""

from __future__ import annotations

from sqlalchemy.orm import Session

from service.artifacts.repository import ArtifactRepository
from service.artifacts.store import Store, store_for
from service.config import settings
from service.kit.time import utcnow


def store() -> Store:
    return store_for(settings.effective_artifact_url)


def checkpoint_key(experiment_id: int, epoch: int) -> str:
    return f"checkpoints/{experiment_id}/epoch-{epoch:06d}.pt"


def model_key(experiment_id: int) -> str:
    return f"models/{experiment_id}.safetensors"


def dataset_key(name: str) -> str:
    return f"datasets/{name}.npz"


def record(
    session: Session, kind: str, key: str, sha256: str, size: int,
    experiment_id: int | None = None, epoch: int | None = None, attempt: int | None = None,
) -> None:  # fmt: skip
    ArtifactRepository(session).record({
        "key": key, "kind": kind, "sha256": sha256, "size": size, "experiment_id": experiment_id,
        "epoch": epoch, "attempt": attempt, "created_at": utcnow(),
    })  # fmt: skip


def sha256_of(session: Session, key: str) -> str | None:
    row = ArtifactRepository(session).by_key(key)
    return row.sha256 if row is not None else None

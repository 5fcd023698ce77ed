"""Artifacts as the API and the workers use them: the store the settings name, and the record
(key, sha256, size) each artifact has in the database."""

from __future__ import annotations

from collections.abc import Sequence
from functools import partial

from sqlalchemy import event
from sqlalchemy.orm import Session

from service.artifacts.repository import ArtifactRepository, artifact_row
from service.artifacts.store import Store, store_for
from service.config import settings
from service.kit import behind
from service.kit.logging import get_logger

log = get_logger(__name__)
_DOOMED = "glidepath_doomed_checkpoints"  # Session.info: keys to delete once it commits
_deleter = behind.Lane("checkpoint-deleter")


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
    row = artifact_row(kind, key, sha256, size, experiment_id, epoch, attempt)
    ArtifactRepository(session).record(row)


def sha256_of(session: Session, key: str) -> str | None:
    row = ArtifactRepository(session).by_key(key)
    return row.sha256 if row is not None else None


def drop_checkpoints(session: Session, experiment_ids: Sequence[int]) -> None:
    """The checkpoints of runs ended while paused at a rung (pruned, cancelled): no rung will
    resume them, and an ended run keeps only its final model (unless KEEP_CHECKPOINTS), as the
    worker's `discard_checkpoints` does for runs that end training. Their rows go in this
    transaction; their objects once it commits, so a transaction that rolls back leaves every
    run its checkpoints. The objects are deleted behind the commit (`wait_deleted`): the worker
    that decided a rung takes its next run, and a cancel answers, without waiting on a delete
    per checkpoint (~10 ms for a rung's six pruned runs on local disk, a round trip each on S3).
    A failed delete, or a process that dies first, leaves the object behind (no row points at
    it), as the worker's does."""
    if settings.keep_checkpoints or not experiment_ids:
        return
    keys = ArtifactRepository(session).forget_checkpoints(experiment_ids)
    if keys:
        session.info.setdefault(_DOOMED, []).extend(keys)


@event.listens_for(Session, "after_commit")
def _delete_dropped(session: Session) -> None:
    keys = session.info.pop(_DOOMED, None)
    if keys:
        _deleter.put(partial(_delete, store(), keys))


def _delete(where: Store, keys: list[str]) -> None:
    try:
        where.delete_many(keys)
    except Exception:  # the commit stands; the objects are only space
        log.warning("checkpoint_delete_failed", keys=len(keys), exc_info=True)


def wait_deleted(timeout_s: float = 10.0) -> bool:
    """Wait until the checkpoints this process dropped so far are deleted (or failed to be);
    False on timeout."""
    return _deleter.wait(timeout_s)


@event.listens_for(Session, "after_rollback")
def _keep_dropped(session: Session) -> None:
    session.info.pop(_DOOMED, None)

"""A run's artifacts in the store (service/artifacts): checkpoints uploaded in the background
and recorded once they are complete, the newest good one found again on resume, the final model
as safetensors. Store calls are retried with backoff, as database writes are (retry.py)."""

from __future__ import annotations

import contextlib
import hashlib
import threading
from collections import OrderedDict
from collections.abc import Callable
from dataclasses import dataclass
from functools import partial
from typing import Any, TypeVar

from sqlalchemy.orm import Session

from service.artifacts import service as artifacts
from service.artifacts.repository import ArtifactRepository, artifact_row
from service.artifacts.store import ArtifactError, StoreUnavailable
from service.config import settings
from service.experiments.repository import ExperimentRepository
from service.kit.db import session_scope
from service.kit.logging import get_logger
from worker.engine import checkpoint
from worker.runs.retry import with_db_retry, with_retry

log = get_logger(__name__)
T = TypeVar("T")


def with_store_retry(fn: Callable[[], T], what: str, budget_s: float = 120.0) -> T:
    """Run `fn` again while the store is unavailable (writes are whole objects: idempotent)."""
    return with_retry(
        fn, what, lambda exc: isinstance(exc, StoreUnavailable), "store_unavailable", budget_s
    )


class _Written:
    """The checkpoints this process stored most recently (up to CACHE_BYTES in all, newest
    kept): a run paused at a rung and resumed on the same worker reads its checkpoint from
    memory instead of the store. What is read is checked against the recorded sha256 all the
    same, so a stale entry is only a miss."""

    CACHE_BYTES = 64 * 1024 * 1024

    def __init__(self) -> None:
        self._items: OrderedDict[str, bytes] = OrderedDict()
        self._lock = threading.Lock()

    def put(self, key: str, data: bytes) -> None:
        with self._lock:
            self._items.pop(key, None)
            if len(data) > self.CACHE_BYTES:
                return
            self._items[key] = data
            while sum(map(len, self._items.values())) > self.CACHE_BYTES:
                self._items.popitem(last=False)

    def get(self, key: str, sha256: str) -> bytes | None:
        with self._lock:
            data = self._items.get(key)
        if data is None or hashlib.sha256(data).hexdigest() != sha256:
            return None
        return data

    def drop(self, key: str) -> None:
        with self._lock:
            self._items.pop(key, None)

    def clear(self) -> None:
        with self._lock:
            self._items.clear()


written = _Written()


class Checkpoints(threading.Thread):
    """Uploads a run's checkpoints one at a time while training goes on. A checkpoint counts only
    once its upload finished and its row is written (fenced by the attempt), so a crash resumes
    from the last complete one. A newer checkpoint waiting replaces an older one waiting.
    Retention: the newest and the best (the decision state's best epoch) are kept.

    The thread starts with the first checkpoint submitted: most short runs take none, and a
    thread's start and join cost ~5 ms of such a run on a busy two-core machine (py-spy)."""

    def __init__(self, experiment_id: int, attempt: int) -> None:
        super().__init__(name=f"checkpoints-{experiment_id}", daemon=True)
        self.experiment_id, self.attempt = experiment_id, attempt
        self._pending: tuple[int, bytes, int | None] | None = None
        self._cond = threading.Condition()
        self._closed = False
        self._busy = False
        self.taken = False  # a checkpoint was submitted (it may be recorded)

    def submit(self, epoch: int, data: bytes, best_epoch: int | None) -> None:
        with self._cond:
            first, self.taken = not self.taken, True
            self._pending = (epoch, data, best_epoch)
            self._cond.notify()
        if first:
            self.start()

    def run(self) -> None:
        while True:
            with self._cond:
                while self._pending is None and not self._closed:
                    self._cond.wait()
                if self._pending is None:
                    return
                job, self._pending, self._busy = self._pending, None, True
            try:
                self._upload(*job)
            except Exception:  # the next checkpoint tries again; training is never stopped
                log.warning("checkpoint_upload_failed", epoch=job[0], exc_info=True)
            finally:
                with self._cond:
                    self._busy = False
                    self._cond.notify_all()

    def _upload(self, epoch: int, data: bytes, best_epoch: int | None) -> None:
        key = artifacts.checkpoint_key(self.experiment_id, epoch)
        store = artifacts.store()
        sha = with_store_retry(lambda: store.put_bytes(data, key), f"checkpoint {key}")

        def record() -> list[str]:
            with session_scope() as session:
                if not ExperimentRepository(session).fence(self.experiment_id, self.attempt):
                    return [key]  # no longer ours: the object is an orphan
                artifacts.record(session, "checkpoint", key, sha, len(data),
                                 self.experiment_id, epoch, self.attempt)  # fmt: skip
                repo = ArtifactRepository(session)
                keep = {epoch, best_epoch}
                stale = [a.key for a in repo.checkpoints(self.experiment_id) if a.epoch not in keep]
                repo.forget(stale)
                return stale

        stale = with_db_retry(record, f"checkpoint {key} record")
        if key not in stale:
            written.put(key, data)
        for old in stale:
            written.drop(old)
            try:
                store.delete(old)
            except ArtifactError:  # an orphan object costs space, not correctness
                log.warning("checkpoint_delete_failed", key=old, exc_info=True)
        log.info("checkpoint_saved", epoch=epoch, key=key, bytes=len(data))

    def close(self, wait: bool = True) -> None:
        """Stop after the upload in flight (and, with `wait`, the one waiting)."""
        with self._cond:
            if not wait:
                self._pending = None
            self._closed = True
            self._cond.notify_all()
        if self.taken:  # else never started: nothing to wait for
            self.join()


def recorded(session: Session, experiment_id: int, last_epoch: int) -> list[tuple[str, str]]:
    """The run's recorded checkpoints at or before `last_epoch` (key, sha256), newest first."""
    rows = ArtifactRepository(session).checkpoints(experiment_id, last_epoch)
    return [(a.key, a.sha256) for a in rows]


def latest_good(experiment_id: int, candidates: list[tuple[str, str]]) -> dict[str, Any] | None:
    """The newest of `candidates` (`recorded`) whose bytes verify and load; an unusable one
    (missing, corrupt, another format) is dropped and the previous one tried, so a bad
    checkpoint never makes the run crash-loop: at worst it starts over."""
    store = artifacts.store()
    for key, sha in candidates:
        try:
            data = written.get(key, sha)  # this process wrote it: no need to read it back
            if data is None:
                read = partial(store.get_bytes, key, sha)
                data = with_store_retry(read, f"read {key}")
            state = checkpoint.loads(data)
            if state is None:
                raise ArtifactError(f"checkpoint {key!r} is of another format")
            return state
        except StoreUnavailable:
            raise
        except Exception as exc:
            log.warning("checkpoint_unusable", key=key, error=f"{type(exc).__name__}: {exc}"[:300])
            _forget(key)
    return None


def _forget(key: str) -> None:
    def forget() -> None:
        with session_scope() as session:
            ArtifactRepository(session).forget([key])

    with_db_retry(forget, f"forget {key}")
    written.drop(key)
    with contextlib.suppress(ArtifactError):
        artifacts.store().delete(key)


@dataclass(frozen=True)
class SavedModel:
    """The final model's object, written; its row is recorded by `record`, in the transaction
    that finishes the run (finish.finish_run): one transaction fewer per run, and no row for a
    model whose run was not finished by this attempt."""

    key: str
    sha256: str
    size: int
    experiment_id: int
    attempt: int

    def row(self) -> dict[str, Any]:
        """Its artifacts row, as `record` writes it (and the epoch writer, for a run finished
        behind its worker: runs/finish.py `finish_run_behind`)."""
        return artifact_row("model", self.key, self.sha256, self.size, self.experiment_id,
                            attempt=self.attempt)  # fmt: skip

    def record(self, session: Session) -> None:
        ArtifactRepository(session).record(self.row())


def save_model(experiment_id: int, attempt: int, data: bytes) -> SavedModel:
    """Write the final model (safetensors bytes) to the store, before the run is finished."""
    key = artifacts.model_key(experiment_id)
    store = artifacts.store()
    sha = with_store_retry(lambda: store.put_bytes(data, key), f"model {key}")
    return SavedModel(key, sha, len(data), experiment_id, attempt)


def discard_checkpoints(experiment_id: int) -> None:
    """A run that ended keeps only its final model, unless KEEP_CHECKPOINTS."""
    if settings.keep_checkpoints:
        return

    def keys() -> list[str]:
        with session_scope() as session:
            return ArtifactRepository(session).forget_checkpoints([experiment_id])

    for key in with_db_retry(keys, f"experiment {experiment_id} checkpoints"):
        written.drop(key)
        try:
            artifacts.store().delete(key)
        except ArtifactError:
            log.warning("checkpoint_delete_failed", key=key, exc_info=True)

"""A test's view of the artifact store (service/artifacts): the default folder under DATA_DIR on
the embedded backend, S3 on the postgres one. In-process tests use `service.artifacts.service
.store()` (their settings point at the backend); stack tests `store_of(backend)`."""

from __future__ import annotations

import os
from typing import Any

import safetensors.torch
import torch

from service.artifacts import service as artifacts
from service.artifacts.store import Store, store_for
from tests.support.stack import Backend


def store_of(backend: Backend) -> Store:
    os.environ.update(backend.s3_env)  # test credentials for the session's SeaweedFS
    return store_for(backend.artifact_url or (backend.data_dir / "artifacts").resolve().as_uri())


def has_model(store: Store, experiment_id: int) -> bool:
    return store.exists(artifacts.model_key(experiment_id))


def checkpoint_keys(store: Store, experiment_id: int) -> list[str]:
    """Oldest epoch first."""
    return store.keys(f"checkpoints/{experiment_id}/")


def load_model(store: Store, experiment_id: int) -> dict[str, torch.Tensor]:
    return safetensors.torch.load(store.get_bytes(artifacts.model_key(experiment_id)))


def load_checkpoint(store: Store, key: str) -> dict[str, Any]:
    from worker.engine import checkpoint

    state = checkpoint.loads(store.get_bytes(key))
    assert state is not None
    return state


def local_file(key: str) -> Any:
    """A stored dataset as the worker reads it: the store's own file, or its verified local copy
    (in-process: settings point at the backend)."""
    from service.kit.db import session_scope
    from worker.runs.datasets import local_copy

    with session_scope() as session:
        sha = artifacts.sha256_of(session, key)
    return local_copy(key, sha)

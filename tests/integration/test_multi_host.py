"""Many machines, no shared disk (issue #13): the API and two workers, each with its own empty
DATA_DIR, sharing only PostgreSQL, Redis and an S3 store (SeaweedFS). A dataset is uploaded
through the API; one worker is SIGKILLed mid-run; the other resumes the run from its last
checkpoint in S3, the attempts say where and from which epoch, the trace equals an
uninterrupted twin's, and the final model downloads as safetensors."""

from __future__ import annotations

import io
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import numpy as np
import pytest
import safetensors.torch

from tests.integration.conftest import FAST
from tests.integration.test_faults import trace
from tests.support.backends import Backends
from tests.support.stack import Stack, registered, start_stack, wait_for

pytestmark = [pytest.mark.integration, pytest.mark.postgres]

SPEC: dict[str, Any] = {
    "dataset": "uploaded-blobs", "model": {"type": "mlp", "hidden": [128, 128], "dropout": 0.1},
    "solver": {"type": "Adam"}, "base_lr": 0.002, "batch_size": 32, "epochs": 10,
    "scheduler": {"type": "ReduceLROnPlateau", "params": {"patience": 1, "factor": 0.5}},
    "checkpoint_every": 2, "seed": 5,
}  # fmt: skip


@pytest.fixture
def cluster(backends: Backends, tmp_path: Path) -> Iterator[Stack]:
    """The API alone (no worker) on PostgreSQL + Redis + S3; the test starts the workers."""
    with backends.backend("postgres", tmp_path / "api") as backend:
        backend.overrides.update(FAST)
        with start_stack(backend, tmp_path / "logs", workers=0) as stack:
            yield stack


def machine(stack: Stack, name: str, root: Path) -> Any:
    """A worker on its own "machine": an empty DATA_DIR of its own, nothing shared but the
    servers. Returns (process, data dir)."""
    data_dir = root / name
    data_dir.mkdir(parents=True)
    proc = stack.start_worker(name, {"GLIDEPATH_DATA_DIR": str(data_dir)})
    return proc, data_dir


def upload(c: httpx.Client) -> None:
    rng = np.random.default_rng(0)
    centers = rng.normal(size=(4, 32)) * 2
    y = rng.integers(0, 4, 2000)
    x = (centers[y] + rng.normal(size=(2000, 32))).astype(np.float32)
    buf = io.BytesIO()
    np.savez(buf, x=x, y=y)
    npz = ("blobs.npz", buf.getvalue(), "application/octet-stream")
    r = c.post("/v1/datasets", data={"name": "uploaded-blobs"}, files={"file": npz})
    assert r.status_code == 201, r.text


def files_under(root: Path) -> list[str]:
    return sorted(str(p.relative_to(root)) for p in root.rglob("*") if p.is_file())


def test_a_run_survives_the_loss_of_its_machine(cluster: Stack, tmp_path: Path) -> None:
    with cluster.client() as c:
        upload(c)  # into S3 through the API
        first, first_dir = machine(cluster, "host-a", tmp_path / "hosts")
        first_id = registered(c, first.pid)["id"]

        twin = c.post("/v1/experiments", json={**SPEC, "name": "twin"}).json()["id"]
        assert cluster.wait_final(twin)["status"] == "succeeded", cluster.logs()
        expected = trace(c, twin)

        exp_id = c.post("/v1/experiments", json=SPEC).json()["id"]
        body: dict[str, Any] = {}

        def past_a_checkpoint() -> bool:
            nonlocal body
            body = c.get(f"/v1/experiments/{exp_id}").json()
            return body["status"] == "running" and body["epochs_run"] >= 5

        wait_for(past_a_checkpoint, 90, lambda: f"{body}\n{cluster.logs()}")
        first.kill()  # the machine is gone: no handler, no hand-back, its disk with it
        first.wait()

        second, second_dir = machine(cluster, "host-b", tmp_path / "hosts")
        second_id = registered(c, second.pid)["id"]
        final = cluster.wait_final(exp_id, timeout=180)
        assert final["status"] == "succeeded", cluster.logs()
        assert trace(c, exp_id) == expected  # identical to the uninterrupted twin

        attempts = final["attempts"]
        assert [(a["attempt"], a["worker"], a["outcome"]) for a in attempts] == [
            (1, first_id, "lost"), (2, second_id, "succeeded")]  # fmt: skip
        resumed = attempts[1]["resumed_from_epoch"]
        assert resumed >= 4 and resumed % SPEC["checkpoint_every"] == 0, attempts

        model = c.get(f"/v1/experiments/{exp_id}/model")
        assert model.status_code == 200, model.text
        weights = safetensors.torch.load(model.content)
        assert {k: tuple(v.shape) for k, v in weights.items()}["1.weight"] == (128, 32)

    # Nothing shared went through a worker's disk: the dataset came from S3 into a cache, and
    # no checkpoint or model was ever written there.
    for data_dir in (first_dir, second_dir):
        kept = files_under(data_dir)
        assert all(f.startswith("cache/datasets/") for f in kept), kept

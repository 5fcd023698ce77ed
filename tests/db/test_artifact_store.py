"""The artifact store (service/artifacts/store.py) on a local folder and on a real S3 server
(SeaweedFS), and what the worker does with what it finds there: writes are atomic and verified
on read; a corrupt or missing checkpoint makes a run resume from the previous good one (never a
crash loop); an unreachable store is a clear error that /readyz reports."""

from __future__ import annotations

import hashlib
import time
from pathlib import Path
from typing import Any

import pytest
from fastapi.testclient import TestClient

from service.artifacts.service import store
from service.artifacts.store import ArtifactMissing, CorruptArtifact, Store, StoreUnavailable
from service.config import settings
from tests.db.test_worker_runs import IRIS, detail, run_handed_back_after, submit, trace
from tests.support.artifacts import checkpoint_keys
from tests.support.s3 import S3Server
from tests.support.stack import free_port
from worker.runs.artifacts import _Written, written
from worker.runs.lifecycle import run_experiment


@pytest.fixture(params=["folder", pytest.param("s3", marks=pytest.mark.postgres)])
def any_store(request: Any, tmp_path: Path) -> Store:
    if request.param == "folder":
        return Store((tmp_path / "store").as_uri())
    s3: S3Server = request.getfixturevalue("s3_server")
    request.getfixturevalue("monkeypatch").setenv("AWS_ENDPOINT_URL", s3.endpoint_url)
    for k, v in s3.env.items():
        request.getfixturevalue("monkeypatch").setenv(k, v)
    return Store(request.getfixturevalue("s3_url"))


def test_writes_are_verified_on_read(any_store: Store, tmp_path: Path) -> None:
    sha = any_store.put_bytes(b"weights" * 1000, "models/1.safetensors")
    assert any_store.get_bytes("models/1.safetensors", sha) == b"weights" * 1000
    big = tmp_path / "big.bin"
    big.write_bytes(bytes(range(256)) * 50_000)  # 12.8 MB: three parts on S3
    sha_big = any_store.put_file(big, "datasets/big.npz")
    copy = any_store.get_file("datasets/big.npz", tmp_path / "copy.bin", sha_big)
    assert copy.read_bytes() == big.read_bytes()
    assert any_store.keys("datasets/") == ["datasets/big.npz"]

    any_store.put_bytes(b"not the weights", "models/1.safetensors")  # replaced behind our back
    with pytest.raises(CorruptArtifact, match=r"models/1\.safetensors"):
        any_store.get_bytes("models/1.safetensors", sha)
    with pytest.raises(CorruptArtifact):
        any_store.get_file("models/1.safetensors", tmp_path / "bad.bin", sha)
    assert not (tmp_path / "bad.bin").exists()  # nothing half-written is left
    any_store.delete("models/1.safetensors")
    any_store.delete("models/1.safetensors")  # deleting what is gone is fine
    with pytest.raises(ArtifactMissing, match=r"models/1\.safetensors"):
        any_store.get_bytes("models/1.safetensors")
    assert any_store.check()["ok"] is True


@pytest.mark.postgres
def test_each_s3_store_signs_with_the_credentials_set_when_it_was_made(
    s3_server: S3Server, s3_url: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Stores share botocore's parsed data files (a fresh client costs ~35 ms, not 100–250), not
    their credentials."""
    for k, v in s3_server.env.items():
        monkeypatch.setenv(k, v)
    good = Store(s3_url)
    good.put_bytes(b"kept", "models/1.safetensors")
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", "not-the-secret")
    wrong = Store(s3_url)
    with pytest.raises(StoreUnavailable):
        wrong.get_bytes("models/1.safetensors")
    assert good.get_bytes("models/1.safetensors") == b"kept"
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", s3_server.env["AWS_SECRET_ACCESS_KEY"])
    assert Store(s3_url).get_bytes("models/1.safetensors") == b"kept"


def test_keys_cannot_leave_the_store(any_store: Store) -> None:
    for key in ("../x", "/etc/passwd", "a/../../b", ""):
        with pytest.raises(ValueError):
            any_store.put_bytes(b"x", key)


def test_an_unreachable_store_is_a_clear_error_soon(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("AWS_ENDPOINT_URL", f"http://127.0.0.1:{free_port()}")  # nothing there
    monkeypatch.setenv("AWS_ACCESS_KEY_ID", "k")
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", "s")
    dead = Store("s3://nowhere/prefix")
    t0 = time.monotonic()
    assert dead.check()["ok"] is False
    with pytest.raises(StoreUnavailable, match="nowhere"):
        dead.put_bytes(b"x", "k")
    assert time.monotonic() - t0 < 30


def test_readyz_reports_the_store(client: TestClient, monkeypatch: pytest.MonkeyPatch) -> None:
    assert client.get("/readyz").json()["checks"]["artifacts"]["ok"] is True
    monkeypatch.setenv("AWS_ENDPOINT_URL", f"http://127.0.0.1:{free_port()}")
    monkeypatch.setattr(settings, "artifact_url", "s3://nowhere/prefix")
    r = client.get("/readyz")
    assert r.status_code == 503 and r.json()["checks"]["artifacts"]["ok"] is False
    assert r.headers["Retry-After"]


def test_a_corrupt_checkpoint_resumes_from_the_previous_good_one(client: TestClient) -> None:
    spec = {**IRIS, "epochs": 12, "checkpoint_every": 1}
    straight = submit(client, spec)
    assert run_experiment(straight, owner="test:0").status == "succeeded"
    exp_id = submit(client, spec)

    assert run_handed_back_after(client, exp_id, epochs=4).status == "handed_back"
    kept = checkpoint_keys(store(), exp_id)  # the newest and the best (maybe one and the same)
    assert kept, "no checkpoint was recorded"
    store().put_bytes(b"garbage, not a checkpoint", kept[-1])  # the newest is now corrupt
    written.clear()  # resumed as on another worker: this one would use the copy it wrote

    assert run_experiment(exp_id, owner="test:2").status == "succeeded"
    assert trace(client, exp_id) == trace(client, straight)  # the same floats, all the same
    # Resumed from the previous good checkpoint, or from the start when there was none.
    previous = int(kept[-2].rsplit("-", 1)[1].split(".")[0]) if len(kept) > 1 else 0
    attempts = detail(client, exp_id).get("attempts")
    if attempts is not None:  # GET /v1/experiments/{id} lists them
        assert attempts[1]["resumed_from_epoch"] == previous
    assert store().keys(f"checkpoints/{exp_id}/") == []  # the run ended: its checkpoints went


def test_a_missing_checkpoint_means_starting_over_not_a_crash_loop(client: TestClient) -> None:
    spec = {**IRIS, "epochs": 8, "checkpoint_every": 1}
    straight = submit(client, spec)
    assert run_experiment(straight, owner="test:0").status == "succeeded"
    exp_id = submit(client, spec)

    assert run_handed_back_after(client, exp_id, epochs=3).status == "handed_back"
    for key in checkpoint_keys(store(), exp_id):
        store().delete(key)  # every checkpoint object lost (their rows remain)
    written.clear()
    assert run_experiment(exp_id, owner="test:2").status == "succeeded"
    assert trace(client, exp_id) == trace(client, straight)


def test_a_checkpoint_this_process_wrote_is_read_from_memory_if_it_verifies() -> None:
    cache, data = _Written(), b"checkpoint bytes"
    sha = hashlib.sha256(data).hexdigest()
    cache.put("checkpoints/1/epoch-3.pt", data)
    assert cache.get("checkpoints/1/epoch-3.pt", sha) == data
    assert cache.get("checkpoints/1/epoch-3.pt", "0" * 64) is None  # not what was recorded
    cache.CACHE_BYTES = 2 * len(data)  # the newest kept within the bound
    cache.put("checkpoints/2/epoch-3.pt", data)
    cache.put("checkpoints/3/epoch-3.pt", data)
    assert cache.get("checkpoints/1/epoch-3.pt", sha) is None
    assert cache.get("checkpoints/3/epoch-3.pt", sha) == data
    cache.drop("checkpoints/3/epoch-3.pt")
    assert cache.get("checkpoints/3/epoch-3.pt", sha) is None

"""Uploads bigger than memory: the body is copied to disk in chunks, an `.npz` is checked from its
headers and streamed into storage a bounded number of rows at a time, and the worker reads the
stored `x` in place (a memory map). Memory is measured in-process with tracemalloc while the
request runs, its body streamed from a file (httpx's ASGI transport, which unlike TestClient
does not read the whole body first)."""

from __future__ import annotations

import asyncio
import io
import os
import tracemalloc
import zipfile
from collections.abc import AsyncIterator, Iterator
from pathlib import Path
from typing import Any

import httpx
import numpy as np
import pytest
from fastapi.testclient import TestClient

from service.artifacts.service import store
from service.artifacts.store import UPLOAD_PART
from tests.api.test_datasets_api import SPEC, Payload, classification_arrays, npz, snapshot, upload
from tests.support.artifacts import local_file
from tests.support.stack import Backend

MB = 2**20
BOUNDARY = "glidepath-test-boundary"


def write_npz(path: Path, compressed: bool = False, **arrays: Any) -> Path:
    (np.savez_compressed if compressed else np.savez)(path, **arrays)
    return path


def big_npz(path: Path, n: int, features: int) -> Path:
    """An `np.savez` archive with float32 x (n, features) written a block at a time, so the test
    itself never holds it either; y is two classes."""
    rng = np.random.default_rng(0)
    y = (np.arange(n) % 2).astype(np.int64)
    with zipfile.ZipFile(path, "w", zipfile.ZIP_STORED, allowZip64=True) as zf:
        with zf.open("x.npy", "w", force_zip64=True) as out:
            header = {"descr": "<f4", "fortran_order": False, "shape": (n, features)}
            np.lib.format.write_array_header_1_0(out, header)
            for start in range(0, n, 1000):
                k = min(1000, n - start)
                block = rng.normal(size=(k, features)) + y[start : start + k, None]
                out.write(block.astype(np.float32).tobytes())
        with zf.open("y.npy", "w") as out:
            np.lib.format.write_array(out, y)
    return path


def _parts(name: str, filename: str) -> tuple[bytes, bytes]:
    """The multipart body around the file's bytes: the `name` field and the file part's headers;
    the closing boundary."""
    disposition = f"--{BOUNDARY}\r\ncontent-disposition: form-data; "
    head = (
        f'{disposition}name="name"\r\n\r\n{name}\r\n'
        f'{disposition}name="file"; filename="{filename}"\r\n'
        "content-type: application/octet-stream\r\n\r\n"
    )
    return head.encode(), f"\r\n--{BOUNDARY}--\r\n".encode()


def post_streamed(
    client: TestClient, path: Path, name: str, *, chunked: bool = False, filename: str = "d.npz"
) -> httpx.Response:
    """POST /v1/datasets with `path` as the file, read from disk 64 KiB at a time while the app
    receives it (with a Content-Length, or chunked without one)."""
    head, tail = _parts(name, filename)

    async def body() -> AsyncIterator[bytes]:
        yield head
        with path.open("rb") as f:
            while chunk := f.read(64 * 1024):
                yield chunk
        yield tail

    headers = {"content-type": f"multipart/form-data; boundary={BOUNDARY}"}
    if not chunked:
        headers["content-length"] = str(len(head) + path.stat().st_size + len(tail))

    async def send() -> httpx.Response:
        transport = httpx.ASGITransport(app=client.app)
        async with httpx.AsyncClient(transport=transport, base_url="http://test") as http:
            return await http.post("/v1/datasets", content=body(), headers=headers)

    return asyncio.run(send())


def traced_peak(call: Any) -> tuple[Any, int]:
    """What `call()` returns, and the peak of memory traced while it ran (bytes)."""
    tracemalloc.start()
    try:
        tracemalloc.reset_peak()
        result = call()
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    return result, peak


@pytest.fixture
def limit_mb(monkeypatch: pytest.MonkeyPatch) -> Iterator[Any]:
    from service.config import settings

    def set_limit(mb: int) -> None:
        monkeypatch.setattr(settings, "max_upload_mb", mb)

    yield set_limit


# -- large uploads --------------------------------------------------------------------------------


def test_large_upload_streams_and_is_read_in_place(
    client: TestClient, backend: Backend, tmp_path: Path, limit_mb: Any
) -> None:
    """A 40 MB upload under a 100 MB limit is accepted while the process's traced memory stays a
    small fraction of it, and the worker reads it back as a memory map."""
    from service.datasets import storage
    from service.training.spec import DatasetRef
    from worker.runs.datasets import load_arrays

    limit_mb(100)
    n, features = 10_000, 1_000  # x: 40 MB of float32
    path = big_npz(tmp_path / "big.npz", n, features)
    size = path.stat().st_size
    assert size > 40 * 10**6
    # The store's client is made once per process (on S3, botocore loads its service models,
    # some MB of objects): made before measuring, so the peak is the upload's own.
    store().keys("datasets/")

    r, peak = traced_peak(lambda: post_streamed(client, path, "big"))
    assert r.status_code == 201, r.text
    print(f"\n40 MB upload: file {size / MB:.1f} MiB, traced peak {peak / MB:.2f} MiB")
    # Reading it whole would trace at least `size`; other threads of the process (housekeeping,
    # the outbox sender) are traced too, hence the margin.
    # On S3 the store uploads in parts, one at a time, each copied once by botocore.
    bound = size / 4 + (3 * UPLOAD_PART if backend.artifact_url else 0)
    assert peak < bound, f"peak {peak / MB:.1f} MiB for a {size / MB:.1f} MiB upload"
    body = r.json()
    assert (body["n_samples"], body["feature_shape"], body["n_classes"]) == (n, [features], 2)

    stored = local_file("datasets/big.npz")
    arrays = storage.read(stored, "classification")
    assert isinstance(arrays.x, np.memmap)
    assert arrays.x.dtype == np.float32 and arrays.x.shape == (n, features)
    assert arrays.x.offset % storage.ALIGN == 0  # the stored x's data is aligned
    assert type(arrays.y) is np.ndarray and arrays.y.dtype == np.int64
    with np.load(path, mmap_mode=None) as original:
        np.testing.assert_array_equal(arrays.x[::997], original["x"][::997])
        np.testing.assert_array_equal(arrays.y, original["y"])

    loaded, info, _ = load_arrays(DatasetRef(type="big"))
    assert isinstance(loaded.x, np.memmap) and info.n_samples == n
    assert not [f for f in os.listdir(stored.parent) if f.startswith(".")]  # no temp files left


@pytest.mark.parametrize("chunked", [False, True])
def test_oversize_upload_is_413_without_reading_it_into_memory(
    client: TestClient, backend: Backend, tmp_path: Path, limit_mb: Any, chunked: bool
) -> None:
    """Refused with the same 413 as ever: from the declared Content-Length, or (chunked, no
    length) as soon as the received body passes the limit."""
    limit_mb(8)
    path = big_npz(tmp_path / "big.npz", 5_000, 1_000)  # 20 MB
    before = snapshot(client, backend.data_dir)
    r, peak = traced_peak(lambda: post_streamed(client, path, "big", chunked=chunked))
    assert r.status_code == 413, r.text
    detail = r.json()["detail"]
    assert detail[0]["loc"] == ["body", "file"]
    assert detail[0]["type"] == "too_large"
    assert "GLIDEPATH_MAX_UPLOAD_MB" in detail[0]["msg"]
    assert peak < path.stat().st_size / 3, f"peak {peak / MB:.1f} MiB"
    assert snapshot(client, backend.data_dir) == before


def test_upload_just_past_the_limit_is_413(
    client: TestClient, backend: Backend, tmp_path: Path, limit_mb: Any
) -> None:
    """Within the form's slack but past the limit: refused from the received file's size."""
    limit_mb(2)
    path = big_npz(tmp_path / "edge.npz", 600, 1_000)  # 2.3 MB
    before = snapshot(client, backend.data_dir)
    r = post_streamed(client, path, "edge")
    assert r.status_code == 413, r.text
    assert r.json()["detail"][0]["loc"] == ["body", "file"]
    assert "the upload is 2.3 MB; the limit is 2.0 MB" in r.json()["detail"][0]["msg"]
    assert snapshot(client, backend.data_dir) == before


def test_receive_stops_at_the_limit(tmp_path: Path) -> None:
    """The copy itself counts: a source past the limit is refused after reading at most one
    chunk past it, and leaves no file."""
    from service.datasets import files, storage

    class Endless(io.RawIOBase):
        read_bytes = 0

        def readable(self) -> bool:
            return True

        def readinto(self, b: Any) -> int:
            self.read_bytes += len(b)
            return len(b)

    source = Endless()
    with pytest.raises(files.TooLarge) as raised:
        storage.receive(tmp_path, io.BufferedReader(source), 5 * MB)
    assert "the limit is 5.0 MB (GLIDEPATH_MAX_UPLOAD_MB)" in str(raised.value)
    assert source.read_bytes <= 5 * MB + 2 * storage.CHUNK
    assert os.listdir(tmp_path / storage.FOLDER) == []


# -- what is checked, from headers and chunks ----------------------------------------------------


X, Y = classification_arrays(40)


def refused(client: TestClient, backend: Backend, content: bytes) -> dict[str, Any]:
    before = snapshot(client, backend.data_dir)
    r = upload(client, "bad", content)
    assert r.status_code == 422, r.text
    assert snapshot(client, backend.data_dir) == before
    detail: dict[str, Any] = r.json()["detail"][0]
    assert detail["loc"] == ["body", "file"]
    return detail


@pytest.mark.parametrize("member", ["x", "y"])
def test_object_members_are_refused_never_unpickled(
    client: TestClient, backend: Backend, tmp_path: Path, member: str
) -> None:
    objects = np.empty(40, dtype=object)
    objects[:] = [Payload(tmp_path / "unpickled") for _ in range(40)]
    arrays = {"x": X, "y": Y, member: objects}
    detail = refused(client, backend, npz(**arrays))
    assert detail["type"] == "pickle_refused"
    assert f"array {member!r} has dtype object" in detail["msg"]
    assert not (tmp_path / "unpickled").exists()


def test_length_mismatch_is_refused(client: TestClient, backend: Backend) -> None:
    detail = refused(client, backend, npz(x=X, y=Y[:-1]))
    assert detail["msg"] == "y has 39 values but x has 40 samples; they must match"


def test_nan_in_a_late_chunk_of_x_is_refused_with_the_totals(
    client: TestClient, backend: Backend
) -> None:
    """x spans several chunks; every non-finite value is counted, the last chunk's included."""
    n = 3_000
    x = np.random.default_rng(1).normal(size=(n, 200))  # 4.6 MB of float64: five chunks
    x[-1, :3] = np.nan
    x[-2, 0] = 1e300  # past float32: inf
    detail = refused(client, backend, npz(x=x, y=np.arange(n) % 2))
    assert detail["type"] == "non_finite"
    assert detail["msg"].startswith("x has 3 NaN and 1 infinite values")


@pytest.mark.parametrize(
    "variant",
    ["stored", "compressed", "fortran order", "big-endian", "fortran order, compressed"],
)
def test_npz_variants_are_stored_exactly(
    client: TestClient, backend: Backend, tmp_path: Path, variant: str
) -> None:
    """However the archive was written, what is stored is float32 x and class ids, row for row
    (multi-chunk: 3000 rows of 150 float64 is 3.4 MB)."""
    from service.datasets import storage

    rng = np.random.default_rng(2)
    x = rng.normal(size=(3_000, 150))
    y = rng.integers(0, 3, 3_000)
    if "fortran" in variant:
        x = np.asfortranarray(x)
    if variant == "big-endian":
        x, y = x.astype(">f8"), y.astype(">i4")
    path = write_npz(tmp_path / "v.npz", compressed="compressed" in variant, x=x, y=y)
    r = upload(client, "variant", path.read_bytes())
    assert r.status_code == 201, r.text
    stored = local_file("datasets/variant.npz")
    arrays = storage.read(stored, "classification")
    assert isinstance(arrays.x, np.memmap)
    np.testing.assert_array_equal(arrays.x, x.astype(np.float32))
    np.testing.assert_array_equal(arrays.y, y)


def test_datasets_stored_before_are_still_read(tmp_path: Path) -> None:
    """Files written by the old code (`np.savez`) are memory-mapped too; a compressed archive
    is loaded as it always was."""
    from service.datasets import storage

    x, y = classification_arrays(50)
    x32, ids = x.astype(np.float32), np.searchsorted([5, 7, 9], y)
    plain = write_npz(tmp_path / "plain.npz", x=x32, y=ids)
    squeezed = write_npz(tmp_path / "squeezed.npz", compressed=True, x=x32, y=ids)
    for path, mapped in ((plain, True), (squeezed, False)):
        arrays = storage.read(path, "classification")
        assert isinstance(arrays.x, np.memmap) is mapped
        np.testing.assert_array_equal(arrays.x, x32)
        np.testing.assert_array_equal(arrays.y, ids)
        assert arrays.y.dtype == np.int64
    regression = storage.read(plain, "regression")
    assert regression.y.dtype == np.float32


# -- and it trains --------------------------------------------------------------------------------


def test_streamed_upload_trains(client: TestClient, tmp_path: Path) -> None:
    """A multi-chunk upload received by streaming trains from its memory-mapped x."""
    from worker.runs.lifecycle import run_experiment

    n, features = 2_000, 256  # 2 MB of float32 x: two chunks
    path = big_npz(tmp_path / "train.npz", n, features)
    r = post_streamed(client, path, "streamed")
    assert r.status_code == 201, r.text
    created = client.post("/v1/experiments", json={**SPEC, "dataset": "streamed", "epochs": 2})
    assert created.status_code == 201, created.text
    exp_id = created.json()["id"]
    outcome = run_experiment(exp_id)
    got = client.get(f"/v1/experiments/{exp_id}").json()
    assert outcome.status == "succeeded", got["error"]
    epochs = client.get(f"/v1/experiments/{exp_id}/metrics").json()["epochs"]
    assert len(epochs) == 2
    assert all(np.isfinite(row["val_accuracy"]) for row in epochs)

"""User datasets and synthetic generators through the API, on SQLite and on PostgreSQL: good
uploads are listed and usable by experiments; bad ones are refused with the field that is wrong,
and leave neither a row nor a file behind."""

from __future__ import annotations

import io
import os
import pickle
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from fastapi.testclient import TestClient

from service.artifacts.service import store
from tests.support.stack import Backend

BUILTINS = [
    "digits",
    "iris",
    "wine",
    "breast_cancer",
    "diabetes",
    "synthetic_classification",
    "synthetic_regression",
]

SPEC: dict[str, Any] = {
    "name": "on-upload",
    "split": {"train": 0.8, "val": 0.2, "seed": 0, "stratify": True},
    "model": {"type": "mlp", "hidden": [16]},
    "solver": {"type": "SGD", "params": {"momentum": 0.9}},
    "base_lr": 0.05,
    "epochs": 3,
    "batch_size": 32,
}


def npz(**arrays: Any) -> bytes:
    buf = io.BytesIO()
    np.savez(buf, **arrays)
    return buf.getvalue()


def classification_arrays(n: int = 120, seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    rng = np.random.default_rng(seed)
    y = np.array([5, 7, 9])[rng.integers(0, 3, n)]
    x = rng.normal(size=(n, 6)) + y[:, None] / 3.0
    return x, y


def upload(
    client: TestClient,
    name: str,
    content: bytes,
    filename: str = "data.npz",
    **fields: str,
) -> Any:
    return client.post(
        "/v1/datasets",
        data={"name": name, **fields},
        files={"file": (filename, content, "application/octet-stream")},
    )


def snapshot(client: TestClient, data_dir: Path) -> tuple[Any, list[list[str]]]:
    """What a failed request must leave unchanged: the listing, the stored datasets and the
    scratch folder."""
    scratch = data_dir / "datasets"
    files = [sorted(os.listdir(scratch)) if scratch.exists() else [], store().keys("datasets/")]
    listing = client.get("/v1/datasets")
    assert listing.status_code == 200
    return listing.json(), files


def csv_bytes(header: list[str], rows: list[list[Any]]) -> bytes:
    lines = [",".join(header), *(",".join(str(v) for v in row) for row in rows)]
    return ("\n".join(lines) + "\n").encode()


# -- good -----------------------------------------------------------------------------------------


def test_builtins_are_listed_first_including_synthetic(client: TestClient) -> None:
    body = client.get("/v1/datasets").json()
    assert [d["name"] for d in body["datasets"]] == BUILTINS
    by_name = {d["name"]: d for d in body["datasets"]}
    assert all(d["builtin"] and d["description"] for d in body["datasets"])
    assert by_name["digits"]["image_shape"] == [1, 8, 8]
    assert by_name["synthetic_classification"]["n_samples"] == 1000
    assert by_name["synthetic_classification"]["feature_shape"] == [20]
    assert by_name["synthetic_classification"]["n_classes"] == 2
    assert by_name["synthetic_regression"]["task"] == "regression"
    assert by_name["synthetic_regression"]["n_classes"] is None
    assert client.get("/v1/datasets/synthetic_regression").json()["builtin"] is True
    # They work with no setup.
    r = client.post("/v1/experiments", json={**SPEC, "dataset": "synthetic_regression"})
    assert r.status_code == 201, r.text
    assert r.json()["split_sizes"] == {"train": 800, "val": 200, "test": 0}


def test_npz_upload_is_listed_and_usable(client: TestClient, backend: Backend) -> None:
    from service.training.spec import DatasetRef
    from worker.runs.datasets import load_arrays

    x, y = classification_arrays()
    r = upload(client, "blobs", npz(x=x, y=y))
    assert r.status_code == 201, r.text
    body = r.json()
    assert body["name"] == "blobs"
    assert body["task"] == "classification"
    assert body["n_samples"] == 120
    assert body["feature_shape"] == [6]
    assert body["n_classes"] == 3
    assert body["builtin"] is False
    assert body["created_at"]
    assert body["source"]["classes"] == [5, 7, 9]  # original labels of class ids 0, 1, 2
    assert body["source"]["format"] == "npz"
    assert body["source"]["task_inferred"] is True

    listed = client.get("/v1/datasets").json()["datasets"]
    assert [d["name"] for d in listed] == [*BUILTINS, "blobs"]
    assert listed[-1] == body
    assert client.get("/v1/datasets/blobs").json() == body
    assert store().exists("datasets/blobs.npz")

    r = client.post("/v1/experiments", json={**SPEC, "dataset": "blobs"})
    assert r.status_code == 201, r.text
    assert r.json()["split_sizes"] == {"train": 96, "val": 24, "test": 0}
    assert r.json()["steps_per_epoch"] == 3

    # The worker reads back exactly what was uploaded (labels as class ids).
    arrays, info, _ = load_arrays(DatasetRef(type="blobs"))
    np.testing.assert_array_equal(arrays.x, x.astype(np.float32))
    np.testing.assert_array_equal(arrays.y, np.searchsorted([5, 7, 9], y))
    assert arrays.x.dtype == np.float32 and arrays.y.dtype == np.int64
    assert info.task == "classification" and info.n_classes == 3


def test_built_in_and_uploaded_datasets_take_no_params(
    client: TestClient, monkeypatch: pytest.MonkeyPatch
) -> None:
    from service.workers import service as workers

    def submit(name: str) -> Any:
        return client.post("/v1/experiments", json={**SPEC, "dataset": {"type": name, "params":
                                                                        {"n": 3}}})  # fmt: skip

    def refused(name: str) -> Any:
        r = submit(name)
        assert r.status_code == 422, r.text
        return r.json()["detail"]

    assert refused("digits") == [{
        "loc": ["body", "dataset", "params"],
        "msg": "built-in dataset 'digits' takes no params; give its name alone (params are for "
        "datasets that workers' plugins offer)",
        "type": "unexpected_params",
    }]  # fmt: skip
    x, y = classification_arrays()
    assert upload(client, "blobs", npz(x=x, y=y)).status_code == 201
    [error] = refused("blobs")
    assert error["loc"] == ["body", "dataset", "params"]
    assert error["msg"].startswith("uploaded dataset 'blobs' takes no params")
    # With params the name means a plugin, as the worker loads it: one that shares the upload's
    # name is checked as a plugin.
    offer = workers.Offer(datasets={"blobs": {"package": "p", "version": "1", "params": [
        {"name": "n", "required": False, "default": 600, "kind": "integer"}]}})  # fmt: skip
    monkeypatch.setattr(workers, "offer", lambda session: offer)
    r = submit("blobs")
    assert r.status_code == 201, r.text
    assert r.json()["split_sizes"] is None  # a plugin dataset's: the worker's to write
    assert refused("digits")[0]["loc"] == ["body", "dataset", "params"]  # a built-in's, always


def test_missing_dataset_is_404(client: TestClient) -> None:
    r = client.get("/v1/datasets/nope")
    assert r.status_code == 404
    assert r.json()["detail"][0]["loc"] == ["path", "name"]


@pytest.mark.parametrize(
    ("header", "rows", "fields", "task", "n_classes", "classes"),
    [
        (  # integer labels in the middle column: classification, inferred
            ["a", "label", "b"],
            [[i * 0.5, i % 3, -i] for i in range(30)],
            {"label_column": "label"},
            "classification",
            3,
            [0, 1, 2],
        ),
        (  # string labels: classification
            ["a", "b", "species"],
            [[i, i * 2.5, ["cat", "dog"][i % 2]] for i in range(20)],
            {"label_column": "species"},
            "classification",
            2,
            ["cat", "dog"],
        ),
        (  # fractional targets: regression, inferred
            ["x1", "x2", "price"],
            [[i, i % 7, i * 1.25 + 0.1] for i in range(40)],
            {"label_column": "price"},
            "regression",
            None,
            None,
        ),
        (  # integer targets, but the task is given
            ["x1", "count"],
            [[i, i * 3] for i in range(15)],
            {"label_column": "count", "task": "regression"},
            "regression",
            None,
            None,
        ),
    ],
)
def test_csv_upload_infers_or_takes_the_task(
    client: TestClient,
    header: list[str],
    rows: list[list[Any]],
    fields: dict[str, str],
    task: str,
    n_classes: int | None,
    classes: list[Any] | None,
) -> None:
    r = upload(client, "table", csv_bytes(header, rows), "table.csv", **fields)
    assert r.status_code == 201, r.text
    body = r.json()
    assert body["task"] == task
    assert body["n_samples"] == len(rows)
    assert body["feature_shape"] == [len(header) - 1]
    assert body["n_classes"] == n_classes
    assert body["source"].get("classes") == classes
    assert body["source"]["label_column"] == fields["label_column"]
    assert body["source"]["task_inferred"] is ("task" not in fields)
    listed = client.get("/v1/datasets").json()["datasets"][-1]
    assert (listed["name"], listed["task"], listed["feature_shape"]) == (
        "table",
        task,
        [len(header) - 1],
    )


def test_csv_values_are_loaded_as_written(client: TestClient) -> None:
    from service.training.spec import DatasetRef
    from worker.runs.datasets import load_arrays

    rows = [[i, i * 0.5, i * 1.5 - 3.25] for i in range(12)]
    r = upload(client, "exact", csv_bytes(["a", "y", "b"], rows), "e.csv", label_column="y")
    assert r.status_code == 201, r.text
    arrays, info, _ = load_arrays(DatasetRef(type="exact"))
    assert info.task == "regression"
    np.testing.assert_array_equal(arrays.x, np.array([[r[0], r[2]] for r in rows], np.float32))
    np.testing.assert_array_equal(arrays.y, np.array([r[1] for r in rows], np.float32))


def test_generator_is_deterministic(client: TestClient) -> None:
    from service.training.spec import DatasetRef
    from worker.runs.datasets import load_arrays

    params = {"generator": "classification", "n_samples": 300, "n_features": 8, "n_classes": 4}
    params |= {"noise": 0.05, "seed": 7}
    for name in ("gen-a", "gen-b"):
        r = client.post("/v1/datasets", json={"name": name, **params})
        assert r.status_code == 201, r.text
        body = r.json()
        assert (body["task"], body["n_samples"], body["feature_shape"], body["n_classes"]) == (
            "classification",
            300,
            [8],
            4,
        )
        assert body["source"]["kind"] == "generator"
        assert body["source"]["seed"] == 7 and body["source"]["noise"] == 0.05
    a, _, _ = load_arrays(DatasetRef(type="gen-a"))
    b, _, _ = load_arrays(DatasetRef(type="gen-b"))
    np.testing.assert_array_equal(a.x, b.x)
    np.testing.assert_array_equal(a.y, b.y)

    r = client.post("/v1/datasets", json={"name": "gen-c", **params, "seed": 8})
    assert r.status_code == 201
    c, _, _ = load_arrays(DatasetRef(type="gen-c"))
    assert not np.array_equal(a.x, c.x)

    r = client.post(
        "/v1/datasets", json={"name": "reg", "generator": "regression", "n_samples": 200}
    )
    assert r.status_code == 201, r.text
    assert (r.json()["task"], r.json()["n_classes"], r.json()["feature_shape"]) == (
        "regression",
        None,
        [20],
    )
    reg, _, _ = load_arrays(DatasetRef(type="reg"))
    assert abs(float(reg.y.mean())) < 1e-4 and abs(float(reg.y.std()) - 1) < 1e-3  # standardized


def test_runs_train_on_uploaded_datasets(client: TestClient) -> None:
    """An image-shaped npz trains a cnn; a csv regression dataset records val_mae."""
    from worker.runs.lifecycle import run_experiment

    rng = np.random.default_rng(0)
    y = rng.integers(0, 2, 80)
    x = rng.normal(size=(80, 1, 8, 8)).astype(np.float32) + y[:, None, None, None]
    r = upload(client, "tiny-images", npz(x=x, y=y))
    assert r.status_code == 201, r.text
    assert r.json()["image_shape"] == [1, 8, 8]
    rows = [[i / 40, (i % 5) / 5, 2 * i / 40 - (i % 5) / 5] for i in range(60)]
    r = upload(client, "lines", csv_bytes(["a", "b", "t"], rows), "l.csv", label_column="t")
    assert r.status_code == 201, r.text

    cnn = {**SPEC, "dataset": "tiny-images", "model": {"type": "cnn", "channels": [4]}}
    reg = {**SPEC, "dataset": "lines", "split": {"train": 0.8, "val": 0.2, "seed": 0}}
    for spec, metric in ((cnn, "val_accuracy"), (reg, "val_mae")):
        created = client.post("/v1/experiments", json=spec)
        assert created.status_code == 201, created.text
        exp_id = created.json()["id"]
        outcome = run_experiment(exp_id)
        got = client.get(f"/v1/experiments/{exp_id}").json()
        assert outcome.status == "succeeded", got["error"]
        epochs = client.get(f"/v1/experiments/{exp_id}/metrics").json()["epochs"]
        assert len(epochs) == 3
        assert all(row[metric] is not None and np.isfinite(row[metric]) for row in epochs)


@pytest.mark.parametrize("backend", ["postgres"], indirect=True)
def test_a_connection_dropped_at_an_uploaded_datasets_lookup_is_retried(
    client: TestClient, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A worker reads an upload's catalogue entry as the run starts; a connection the server
    dropped just then (pooled connections are pinged only after idling) fails that one read,
    which is tried again, instead of failing the run."""
    from sqlalchemy import text

    from service.datasets.repository import DatasetRepository
    from service.kit.db import get_engine
    from tests.support.databases import drop_connection
    from worker.runs.lifecycle import run_experiment

    x, y = classification_arrays()
    assert upload(client, "dropped", npz(x=x, y=y)).status_code == 201
    exp_id = client.post("/v1/experiments", json={**SPEC, "dataset": "dropped"}).json()["id"]
    read = DatasetRepository.by_name
    dropped: list[int] = []

    def by_name_on_a_dropped_connection(repo: DatasetRepository, name: str) -> Any:
        if not dropped:
            pid = repo.session.execute(text("SELECT pg_backend_pid()")).scalar_one()
            drop_connection(get_engine().url, pid)
            dropped.append(pid)
        return read(repo, name)

    monkeypatch.setattr(DatasetRepository, "by_name", by_name_on_a_dropped_connection)
    outcome = run_experiment(exp_id)
    got = client.get(f"/v1/experiments/{exp_id}").json()
    assert dropped and outcome.status == "succeeded", got["error"]


# -- bad ------------------------------------------------------------------------------------------

X, Y = classification_arrays(40)


class Payload:
    """Creates a file when unpickled: proof that nothing was unpickled."""

    def __init__(self, marker: Path) -> None:
        self.marker = marker

    def __reduce__(self) -> tuple[Any, ...]:
        return (open, (str(self.marker), "w"))


def _pickled_npz(tmp: Path) -> bytes:
    objects = np.empty(40, dtype=object)
    objects[:] = [Payload(tmp / "unpickled") for _ in range(40)]
    return npz(x=objects, y=Y)


def _bare_pickle(tmp: Path) -> bytes:
    return pickle.dumps({"x": Payload(tmp / "unpickled"), "y": Y})


Request = Callable[[TestClient, Path], Any]


def _up(content: bytes | Callable[[Path], bytes], name: str = "bad", **kw: str) -> Request:
    filename = kw.pop("filename", "bad.npz")

    def send(client: TestClient, tmp: Path) -> Any:
        data = content(tmp) if callable(content) else content
        return upload(client, name, data, filename, **kw)

    return send


def _json(body: dict[str, Any]) -> Request:
    return lambda client, _tmp: client.post("/v1/datasets", json=body)


CSV_OK = csv_bytes(["a", "b", "label"], [[i, -i, i % 2] for i in range(20)])

BAD: dict[str, tuple[Request, int, list[Any]]] = {
    "missing y": (_up(npz(x=X)), 422, ["body", "file"]),
    "extra array": (_up(npz(x=X, y=Y, z=Y)), 422, ["body", "file"]),
    "wrong y length": (_up(npz(x=X, y=Y[:-1])), 422, ["body", "file"]),
    "2-d y": (_up(npz(x=X, y=np.stack([Y, Y], 1))), 422, ["body", "file"]),
    "1-d x": (_up(npz(x=Y.astype(float), y=Y)), 422, ["body", "file"]),
    "string x": (_up(npz(x=X.astype(str), y=Y)), 422, ["body", "file"]),
    "too few samples": (_up(npz(x=X[:5], y=Y[:5])), 422, ["body", "file"]),
    "nan in x": (_up(npz(x=np.where(X > 1.5, np.nan, X), y=Y)), 422, ["body", "file"]),
    "inf in y": (_up(npz(x=X, y=np.where(Y == 5, np.inf, Y))), 422, ["body", "file"]),
    "overflow to float32": (_up(npz(x=X * 1e300, y=Y)), 422, ["body", "file"]),
    "one class": (_up(npz(x=X, y=np.ones(40, int))), 422, ["body", "file"]),
    "pickled npz": (_up(_pickled_npz), 422, ["body", "file"]),
    "bare pickle": (_up(_bare_pickle), 422, ["body", "file"]),
    "not a zip": (_up(b"PK-but-not-really"), 422, ["body", "file"]),
    "fractional labels as classification": (
        _up(npz(x=X, y=Y + 0.5), task="classification"),
        422,
        ["body", "task"],
    ),
    "unknown task": (_up(npz(x=X, y=Y), task="ranking"), 422, ["body", "task"]),
    "label_column with npz": (_up(npz(x=X, y=Y), label_column="y"), 422, ["body", "label_column"]),
    "traversal": (_up(npz(x=X, y=Y), name="../evil"), 422, ["body", "name"]),
    "slash": (_up(npz(x=X, y=Y), name="a/b"), 422, ["body", "name"]),
    "upper case": (_up(npz(x=X, y=Y), name="Blobs"), 422, ["body", "name"]),
    "empty name": (_up(npz(x=X, y=Y), name=""), 422, ["body", "name"]),
    "built-in name": (_up(npz(x=X, y=Y), name="digits"), 409, ["body", "name"]),
    "synthetic built-in name": (
        _up(npz(x=X, y=Y), name="synthetic_regression"),
        409,
        ["body", "name"],
    ),
    "csv without label_column": (_up(CSV_OK, filename="t.csv"), 422, ["body", "label_column"]),
    "csv label_column not in header": (
        _up(CSV_OK, filename="t.csv", label_column="target"),
        422,
        ["body", "label_column"],
    ),
    "csv non-numeric feature": (
        _up(
            csv_bytes(["a", "y"], [[i if i != 7 else "n/a", i % 2] for i in range(20)]),
            filename="t.csv",
            label_column="y",
        ),
        422,
        ["body", "file"],
    ),
    "csv ragged row": (
        _up(CSV_OK + b"1,2\n", filename="t.csv", label_column="label"),
        422,
        ["body", "file"],
    ),
    "csv nan": (
        _up(
            csv_bytes(["a", "y"], [[i if i != 3 else "nan", i % 2] for i in range(20)]),
            filename="t.csv",
            label_column="y",
        ),
        422,
        ["body", "file"],
    ),
    "csv string targets as regression": (
        _up(
            csv_bytes(["a", "y"], [[i, "ab"[i % 2]] for i in range(20)]),
            filename="t.csv",
            label_column="y",
            task="regression",
        ),
        422,
        ["body", "task"],
    ),
    "unsupported file type": (_up(CSV_OK, filename="t.txt"), 415, ["body", "file"]),
    "no file": (
        lambda client, _tmp: client.post(
            "/v1/datasets", data={"name": "bad"}, files={"other": ("a.npz", b"x")}
        ),
        422,
        ["body", "other"],
    ),
    "unknown form field": (_up(npz(x=X, y=Y), color="red"), 422, ["body", "color"]),
    "wrong content type": (
        lambda client, _tmp: client.post(
            "/v1/datasets", content=b"name=x", headers={"content-type": "text/plain"}
        ),
        415,
        ["header", "content-type"],
    ),
    "urlencoded form": (
        lambda client, _tmp: client.post("/v1/datasets", data={"name": "x"}),
        415,
        ["header", "content-type"],
    ),
    "generator: unknown generator": (
        _json({"name": "g", "generator": "moons"}),
        422,
        ["body", "generator"],
    ),
    "generator: n_classes on regression": (
        _json({"name": "g", "generator": "regression", "n_classes": 3}),
        422,
        ["body", "n_classes"],
    ),
    "generator: too few samples": (
        _json({"name": "g", "generator": "regression", "n_samples": 9}),
        422,
        ["body", "n_samples"],
    ),
    "generator: noise above 1 for classification": (
        _json({"name": "g", "generator": "classification", "noise": 1.5}),
        422,
        ["body", "noise"],
    ),
    "generator: regression noise that would overflow the target": (
        _json({"name": "g", "generator": "regression", "noise": 1e308}),
        422,
        ["body", "noise"],
    ),
    "generator: too many classes for the features": (
        _json({"name": "g", "generator": "classification", "n_features": 2, "n_classes": 5}),
        422,
        ["body", "n_classes"],
    ),
    "generator: unknown field": (
        _json({"name": "g", "generator": "regression", "size": 10}),
        422,
        ["body", "size"],
    ),
    "generator: traversal": (
        _json({"name": "../g", "generator": "regression"}),
        422,
        ["body", "name"],
    ),
    "generator: built-in name": (
        _json({"name": "iris", "generator": "classification"}),
        409,
        ["body", "name"],
    ),
}


@pytest.mark.parametrize("case", list(BAD))
def test_bad_upload_is_refused_and_leaves_nothing(
    client: TestClient, backend: Backend, tmp_path: Path, case: str
) -> None:
    send, status, loc = BAD[case]
    before = snapshot(client, backend.data_dir)
    r = send(client, tmp_path)
    assert r.status_code == status, r.text
    detail = r.json()["detail"]
    assert loc in [d["loc"] for d in detail], detail
    assert all(set(d) == {"loc", "msg", "type"} for d in detail)
    assert snapshot(client, backend.data_dir) == before
    assert not (tmp_path / "unpickled").exists()


def test_pickles_are_refused_by_name(client: TestClient, tmp_path: Path) -> None:
    # The payload is real: loading it the unsafe way would run code.
    with np.load(io.BytesIO(_pickled_npz(tmp_path)), allow_pickle=True) as unsafe:
        unsafe["x"]
    assert (tmp_path / "unpickled").exists()
    (tmp_path / "unpickled").unlink()

    r = upload(client, "evil", _pickled_npz(tmp_path))
    assert r.status_code == 422
    assert r.json()["detail"][0]["type"] == "pickle_refused"
    assert "pickled arrays are refused" in r.json()["detail"][0]["msg"]
    assert not (tmp_path / "unpickled").exists()


def test_duplicate_name_is_409(client: TestClient, backend: Backend) -> None:
    assert upload(client, "twice", npz(x=X, y=Y)).status_code == 201
    before = snapshot(client, backend.data_dir)
    stored = store().get_bytes("datasets/twice.npz")
    for r in (
        upload(client, "twice", npz(x=X * 2, y=Y)),
        client.post("/v1/datasets", json={"name": "twice", "generator": "regression"}),
    ):
        assert r.status_code == 409, r.text
        assert r.json()["detail"][0]["loc"] == ["body", "name"]
    assert snapshot(client, backend.data_dir) == before
    assert store().get_bytes("datasets/twice.npz") == stored


def test_lost_insert_race_removes_the_file(
    client: TestClient, backend: Backend, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The name is taken between the check and the insert: 409, and the written file is gone."""
    from service.datasets import service

    assert upload(client, "race", npz(x=X, y=Y)).status_code == 201
    before = snapshot(client, backend.data_dir)
    monkeypatch.setattr(service, "check_free", lambda session, name: None)
    r = upload(client, "race", npz(x=X * 2, y=Y))
    assert r.status_code == 409, r.text
    assert r.json()["detail"][0]["loc"] == ["body", "name"]
    assert snapshot(client, backend.data_dir) == before


def test_rolled_back_transaction_removes_the_file(client: TestClient, backend: Backend) -> None:
    """A file is published before the commit; if the transaction rolls back instead, no row will
    point at it, so it is removed."""
    from service.datasets import service
    from service.datasets.schemas import GeneratorIn
    from service.kit.db import get_sessionmaker

    params = GeneratorIn(name="never", generator="regression", n_samples=50)
    with get_sessionmaker()() as session:
        service.create_generated(session, params)
        assert store().exists("datasets/never.npz")
        session.rollback()
    assert not store().exists("datasets/never.npz")
    assert client.get("/v1/datasets/never").status_code == 404

    with get_sessionmaker()() as session:
        service.create_generated(session, params)
        session.commit()
        session.rollback()  # a later rollback never touches a committed dataset
    assert store().exists("datasets/never.npz")
    assert client.get("/v1/datasets/never").status_code == 200


@pytest.mark.parametrize(
    "n_rows",
    [
        40_000,  # ~1.6 MB: past the limit, caught from the parsed form before reading the file
        100_000,  # ~4 MB: refused from Content-Length before the body is read
    ],
)
def test_oversize_upload_is_413(
    client: TestClient, backend: Backend, monkeypatch: pytest.MonkeyPatch, n_rows: int
) -> None:
    from service.config import settings

    monkeypatch.setattr(settings, "max_upload_mb", 1)
    before = snapshot(client, backend.data_dir)
    x = np.random.default_rng(0).normal(size=(n_rows, 5))
    r = upload(client, "big", npz(x=x, y=np.arange(n_rows) % 2))
    assert r.status_code == 413, r.text
    assert r.json()["detail"][0]["loc"] == ["body", "file"]
    assert "GLIDEPATH_MAX_UPLOAD_MB" in r.json()["detail"][0]["msg"]
    assert snapshot(client, backend.data_dir) == before


def test_zip_bomb_is_413(
    client: TestClient, backend: Backend, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A small compressed archive that unpacks past the limit is refused before unpacking."""
    from service.config import settings

    monkeypatch.setattr(settings, "max_upload_mb", 1)
    buf = io.BytesIO()
    np.savez_compressed(buf, x=np.zeros((200_000, 4)), y=np.arange(200_000) % 2)
    assert len(buf.getvalue()) < 2**20
    before = snapshot(client, backend.data_dir)
    r = upload(client, "bomb", buf.getvalue())
    assert r.status_code == 413, r.text
    assert r.json()["detail"][0]["loc"] == ["body", "file"]
    assert snapshot(client, backend.data_dir) == before


def test_generator_past_the_size_limit_is_422(
    client: TestClient, monkeypatch: pytest.MonkeyPatch
) -> None:
    from service.config import settings

    monkeypatch.setattr(settings, "max_upload_mb", 1)
    r = client.post(
        "/v1/datasets",
        json={"name": "huge", "generator": "regression", "n_samples": 200_000, "n_features": 10},
    )
    assert r.status_code == 422, r.text
    assert r.json()["detail"][0]["loc"] == ["body", "n_samples"]

"""Datasets as plain functions over a session (the route commits): resolve a name to what the spec
checks and the worker need, list them, and add uploads and generated ones."""

from __future__ import annotations

from pathlib import Path, PurePath
from typing import IO, Any

from sqlalchemy import event
from sqlalchemy.orm import Session, SessionTransaction

from service.artifacts import service as artifacts
from service.artifacts.store import StoreUnavailable
from service.config import settings
from service.datasets import builtin, files, storage
from service.datasets.models import Dataset
from service.datasets.repository import DatasetRepository
from service.datasets.schemas import DatasetList, DatasetOut, GeneratorIn, Upload
from service.kit.conflicts import conflict_on_duplicate
from service.kit.errors import Conflict, ErrorItem, InvalidInput, NotFound, Unavailable, item
from service.kit.time import utcnow
from service.training.datasets import DatasetInfo

NAME: list[str | int] = ["body", "name"]


def uploaded(session: Session) -> list[Dataset]:
    return DatasetRepository(session).all()


def find(session: Session, name: str) -> Dataset | None:
    return DatasetRepository(session).by_name(name)


def _description(row: Dataset) -> str:
    src = row.source or {}
    if src.get("kind") == "generator":
        classes = f", {row.n_classes} classes" if row.n_classes else ""
        return (
            f"synthetic {src.get('generator')}: {row.n_samples} samples, "
            f"{src.get('n_features')} features{classes}, noise {src.get('noise')} "
            f"(seed {src.get('seed')})"
        )
    if src.get("kind") == "upload":
        return f"uploaded {src.get('format')} ({src.get('filename')}), {row.n_samples} samples"
    return f"uploaded ({row.n_samples} samples)"


def info_of(row: Dataset) -> DatasetInfo:
    shape = tuple(int(d) for d in row.feature_shape)
    return DatasetInfo(
        name=row.name,
        task=row.task,
        n_samples=row.n_samples,
        feature_shape=shape,
        n_classes=row.n_classes,
        image_shape=(shape[0], shape[1], shape[2]) if len(shape) == 3 else None,
        description=_description(row),
    )


def describe(session: Session, name: str) -> DatasetInfo | None:
    """A built-in's or an upload's description; None when the name is neither (a plugin
    dataset, or unknown: the caller tells them apart, service/workers)."""
    if name in builtin.NAMES:
        return builtin.info(name)
    row = find(session, name)
    return info_of(row) if row is not None else None


# -- reading ------------------------------------------------------------------------------------


def _out(info: DatasetInfo, row: Dataset | None) -> DatasetOut:
    return DatasetOut(
        name=info.name,
        task=info.task,
        n_samples=info.n_samples,
        feature_shape=list(info.feature_shape),
        n_classes=info.n_classes,
        image_shape=list(info.image_shape) if info.image_shape else None,
        builtin=row is None,
        description=info.description,
        source=row.source if row is not None else None,
        created_at=row.created_at if row is not None else None,
    )


def out(row: Dataset) -> DatasetOut:
    return _out(info_of(row), row)


def listing(session: Session) -> DatasetList:
    """Built-ins first (in their fixed order), then uploads by name."""
    return DatasetList(
        datasets=[
            *(_out(builtin.info(n), None) for n in builtin.NAMES),
            *(out(row) for row in uploaded(session)),
        ]
    )


def get(session: Session, name: str) -> DatasetOut:
    if name in builtin.NAMES:
        return _out(builtin.info(name), None)
    row = find(session, name)
    if row is None:
        raise NotFound(f"no dataset named {name!r}", loc=["path", "name"])
    return out(row)


# -- adding -------------------------------------------------------------------------------------


def limit_bytes() -> int:
    return settings.max_upload_mb * 2**20


def receive(source: IO[bytes]) -> storage.Received:
    """Copy an upload's file in chunks to a temporary file next to the datasets (413 as soon as
    it passes the limit): never held in memory. The caller removes it."""
    return storage.receive(settings.data_dir, source, limit_bytes())


def check_free(session: Session, name: str) -> None:
    """409 when the name is a built-in's or an existing upload's (checked before any parsing)."""
    if name in builtin.NAMES:
        raise Conflict(f"{name!r} is a built-in dataset; choose another name", loc=NAME)
    if find(session, name) is not None:
        raise Conflict(f"a dataset named {name!r} already exists", loc=NAME)


def _remove_on_rollback(session: Session, key: str) -> None:
    """The file was stored before the commit: if the transaction it belongs to is rolled back
    instead (a failed commit included), no row will ever point at it, so remove it."""
    root = session.get_transaction()

    def on_rollback(_: Session, previous: SessionTransaction) -> None:
        if previous is root:
            artifacts.store().delete(key)

    event.listen(session, "after_soft_rollback", on_rollback)


def _store(
    session: Session, name: str, prepared: files.Prepared, source: dict[str, Any], tmp: Path
) -> Dataset:
    """Insert the row for the written temporary file `tmp`, then put the file in the artifact
    store (ARTIFACT_URL) with its sha256 recorded. A failed insert (the name was taken
    meanwhile) removes the file; nothing is left behind on any error."""
    key = artifacts.dataset_key(name)
    try:
        row = Dataset(
            name=name,
            task=prepared.task,
            n_samples=prepared.n_samples,
            feature_shape=prepared.feature_shape,
            n_classes=prepared.n_classes,
            path=key,  # in the artifact store
            source=source,
            created_at=utcnow(),
        )
        # A plain flush, no savepoint: nothing else in this transaction needs saving from a
        # failed insert (and pysqlite would commit at a SAVEPOINT's release).
        with conflict_on_duplicate(f"a dataset named {name!r} already exists", NAME):
            DatasetRepository(session).add(row)
        store = artifacts.store()
        sha = store.put_file(tmp, key)
        _remove_on_rollback(session, key)
        artifacts.record(session, "dataset", key, sha, tmp.stat().st_size)
    except StoreUnavailable as exc:
        raise Unavailable(f"the artifact store is unavailable: {exc}", loc=["body", "file"],
                          headers={"Retry-After": "5"}) from exc  # fmt: skip
    finally:
        tmp.unlink(missing_ok=True)
    return row


def create_upload(session: Session, upload: Upload) -> DatasetOut:
    """Validate an uploaded `.npz` or `.csv` and store it. Raises 409/413/415/422; on any error
    nothing is written. An `.npz` is streamed from the received file into storage (checked from
    its headers, `x` converted a bounded number of rows at a time), never loaded whole."""
    form = upload.form
    check_free(session, form.name)
    suffix = PurePath(upload.filename).suffix.lower()
    if suffix not in (".npz", ".csv"):
        raise files.UnsupportedMediaType(
            f"unsupported file {upload.filename!r}: upload a .npz (arrays x and y) or a .csv "
            "(a header row and a label column)",
            loc=list(files.FILE),
        )
    limit = limit_bytes()
    files.check_size(upload.size, limit, "the upload")
    source: dict[str, Any] = {
        "kind": "upload",
        "format": suffix[1:],
        "filename": PurePath(upload.filename).name[:200],
        "sha256": upload.sha256,
    }
    data_dir = settings.data_dir
    if suffix == ".npz":
        if form.label_column is not None:
            raise InvalidInput(
                "label_column applies to .csv uploads; an .npz holds its labels in 'y'",
                loc=["body", "label_column"],
            )
        with upload.path.open("rb") as fp, storage.Writer(data_dir) as writer:
            prepared = files.stream_npz(
                fp, form.task, limit, writer, lambda: storage.scratch(data_dir)
            )
        tmp = writer.path
    else:
        if form.label_column is None:
            raise InvalidInput(
                "a .csv upload needs label_column: the header name of the label/target column",
                loc=["body", "label_column"],
            )
        raw = files.parse_csv(upload.path.read_bytes(), form.label_column)
        source["label_column"] = form.label_column
        prepared, arrays = files.prepare(raw, form.task, limit_bytes=limit)
        tmp = storage.write_temp(data_dir, arrays)
    source["task_inferred"] = prepared.task_inferred
    if prepared.classes is not None:
        source["classes"] = prepared.classes
    return out(_store(session, form.name, prepared, source, tmp))


def _generator_problems(params: GeneratorIn) -> list[ErrorItem]:
    problems: list[ErrorItem] = []
    if params.generator == "regression":
        if params.n_classes is not None:
            problems.append(
                item(
                    ["body", "n_classes"],
                    "n_classes applies to the classification generator only",
                    "invalid",
                )
            )
    else:
        k = params.classes
        if params.noise > 1:
            problems.append(
                item(
                    ["body", "noise"],
                    "for classification, noise is the fraction of labels assigned at random: 0..1",
                    "invalid",
                )
            )
        if k > 2**params.n_features:
            problems.append(
                item(
                    ["body", "n_classes"],
                    f"{k} classes need at least {(k - 1).bit_length()} features",
                    "invalid",
                )
            )
        if params.n_samples < 2 * k:
            problems.append(
                item(["body", "n_samples"], f"{k} classes need at least {2 * k} samples", "invalid")
            )
    n_bytes = params.n_samples * params.n_features * 4
    if n_bytes > limit_bytes():
        problems.append(
            item(
                ["body", "n_samples"],
                f"n_samples × n_features as float32 is {files.mib(n_bytes)}; the limit is "
                f"{files.mib(limit_bytes())} (GLIDEPATH_MAX_UPLOAD_MB)",
                "too_large",
            )
        )
    return problems


def create_generated(session: Session, params: GeneratorIn) -> DatasetOut:
    """Generate a seeded synthetic dataset and store it like an upload."""
    check_free(session, params.name)
    problems = _generator_problems(params)
    if problems:
        raise InvalidInput.of(problems)
    arrays = builtin.synthetic(
        params.generator,
        n_samples=params.n_samples,
        n_features=params.n_features,
        n_classes=params.classes,
        noise=params.noise,
        seed=params.seed,
    )
    prepared, checked = files.prepare(arrays, params.generator, loc=("body",))
    source: dict[str, Any] = {
        "kind": "generator",
        **params.model_dump(exclude={"name"}),
        "n_classes": prepared.n_classes,
    }
    tmp = storage.write_temp(settings.data_dir, checked)
    return out(_store(session, params.name, prepared, source, tmp))

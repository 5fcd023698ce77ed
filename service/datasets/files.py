"""User datasets' file formats: parse an upload (`.npz`, `.csv`) and validate it. Functions over
bytes and open files (no database, no HTTP, no paths: where files live is `storage.py`).

An `.npz` is never loaded whole: it is checked from its members' `.npy` headers (dtype, shape,
order), `y` is read (one value per sample), and `x` is streamed a bounded number of rows at a
time, converted to float32 and checked for finite values on its way into storage. Nothing is ever
unpickled: an object-dtype member is refused from its header before any of its data is read. What
is stored is always two plain numeric arrays: `x` float32 `(n, *feature_shape)` and `y` int64
class ids 0..K-1 (classification) or float32 targets (regression).
"""

from __future__ import annotations

import csv
import io
import math
import re
import zipfile
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from typing import IO, Any, Protocol

import numpy as np

from service.kit.errors import GlidepathError, InvalidInput, item
from service.training.datasets import Arrays

NAME_RE = re.compile(r"^[a-z0-9][a-z0-9_-]{0,63}$")
NAME_RULE = "1-64 characters of a-z, 0-9, '_' and '-', starting with a letter or a digit"
TASKS = ("classification", "regression")
MIN_SAMPLES = 10
MAX_CLASSES = 1000
INFER_MAX_CLASSES = 100  # integer-valued targets with at most this many values → classification
CHUNK_BYTES = 2**20  # of x read at a time (at least one row)

FILE: tuple[str, ...] = ("body", "file")


class TooLarge(GlidepathError):
    status_code = 413
    type_ = "too_large"


class UnsupportedMediaType(GlidepathError):
    status_code = 415
    type_ = "unsupported_media_type"


@dataclass(frozen=True)
class Prepared:
    """What the catalogue records about a validated dataset."""

    shape: tuple[int, ...]  # x's: (n, *feature_shape)
    task: str
    n_classes: int | None
    classes: list[Any] | None  # original label of class id i (classification)
    task_inferred: bool

    @property
    def n_samples(self) -> int:
        return int(self.shape[0])

    @property
    def feature_shape(self) -> list[int]:
        return [int(d) for d in self.shape[1:]]


@dataclass(frozen=True)
class _Labels:
    y: np.ndarray  # int64 class ids or float32 targets
    task: str
    n_classes: int | None
    classes: list[Any] | None


class ArraySink(Protocol):
    """Where validated arrays go (`storage.Writer`): member `name` of `shape`, row chunks."""

    def add(
        self, name: str, dtype: Any, shape: tuple[int, ...], chunks: Iterator[np.ndarray]
    ) -> None: ...


def _invalid(msg: str, loc: tuple[str, ...] = FILE, type_: str = "invalid_dataset") -> InvalidInput:
    return InvalidInput.of([item(list(loc), msg, type_)])


def name_problem(name: str) -> str | None:
    """Why `name` cannot name a dataset file, or None. Rules out '..', '/', '\\' and the like."""
    if NAME_RE.fullmatch(name):
        return None
    return f"invalid dataset name {name!r}: use {NAME_RULE}"


def mib(n_bytes: int) -> str:
    return f"{n_bytes / 2**20:.1f} MB"


def check_size(n_bytes: int, limit_bytes: int, what: str, loc: tuple[str, ...] = FILE) -> None:
    if n_bytes > limit_bytes:
        raise TooLarge(
            f"{what} is {mib(n_bytes)}; the limit is {mib(limit_bytes)} (GLIDEPATH_MAX_UPLOAD_MB)",
            loc=list(loc),
        )


# -- parsing ------------------------------------------------------------------------------------


def read_npy_header(fp: IO[bytes]) -> tuple[tuple[int, ...], bool, np.dtype[Any]]:
    """Shape, Fortran order and dtype of the `.npy` array at `fp`, which is left at its data."""
    version = np.lib.format.read_magic(fp)
    if version == (1, 0):
        shape, fortran, dtype = np.lib.format.read_array_header_1_0(fp)
    elif version == (2, 0):
        shape, fortran, dtype = np.lib.format.read_array_header_2_0(fp)
    else:
        raise ValueError(f"unsupported .npy format version {version}")
    return tuple(int(d) for d in shape), bool(fortran), dtype


@dataclass(frozen=True)
class _Member:
    info: zipfile.ZipInfo
    shape: tuple[int, ...]
    fortran: bool
    dtype: np.dtype[Any]

    @property
    def nbytes(self) -> int:
        return math.prod(self.shape) * self.dtype.itemsize


@contextmanager
def _reading() -> Iterator[None]:
    """What reading an archive raises, as a 422 naming the file."""
    try:
        yield
    except ValueError as exc:
        if "pickle" in str(exc) or "Object arrays" in str(exc):
            raise _invalid(
                "pickled arrays are refused; store plain numeric arrays", type_="pickle_refused"
            ) from None
        raise _invalid(f"not a readable .npz archive: {exc}") from None
    # Encrypted members raise RuntimeError, unknown compression NotImplementedError.
    except (
        OSError,
        EOFError,
        zipfile.BadZipFile,
        KeyError,
        RuntimeError,
        NotImplementedError,
    ) as exc:
        raise _invalid(f"not a readable .npz archive: {exc}") from None


def _members(zf: zipfile.ZipFile, limit_bytes: int) -> dict[str, _Member]:
    """`x` and `y` from their headers. Object dtypes (pickles) are refused, and the declared
    sizes must fit the member and, in total, `limit_bytes` (no zip bombs)."""
    members = zf.infolist()
    names = sorted(m.filename.removesuffix(".npy") for m in members)
    missing = [a for a in ("x", "y") if a not in names]
    if missing:
        raise _invalid(
            f"the archive has no array {missing[0]!r} (arrays: {', '.join(names) or '-'}); "
            "an upload holds exactly 'x' (features) and 'y' (labels or targets)"
        )
    extra = [n for n in names if n not in ("x", "y")]
    if extra or len(members) != 2 or any(not m.filename.endswith(".npy") for m in members):
        raise _invalid(
            f"unexpected members {', '.join(extra or names)}; "
            "an upload holds exactly the arrays 'x' and 'y'"
        )
    check_size(sum(m.file_size for m in members), limit_bytes, "the unpacked archive")
    found: dict[str, _Member] = {}
    for m in members:
        with zf.open(m) as fp:
            shape, fortran, dtype = read_npy_header(fp)
        if dtype.hasobject:
            raise _invalid(
                f"array {m.filename.removesuffix('.npy')!r} has dtype object: "
                "pickled arrays are refused; store plain numeric arrays",
                type_="pickle_refused",
            )
        member = _Member(m, shape, fortran, dtype)
        if member.nbytes > m.file_size:
            raise _invalid(f"array {m.filename!r} is truncated or corrupt")
        found[m.filename.removesuffix(".npy")] = member
    return found


def _read_exact(fp: IO[bytes], n_bytes: int, m: _Member) -> bytes:
    with _reading():
        data = fp.read(n_bytes)
    if len(data) != n_bytes:
        raise _invalid(f"array {m.info.filename!r} is truncated or corrupt")
    return data


def _drain(fp: IO[bytes]) -> None:
    """Read a member to its end, so that its CRC is checked."""
    with _reading():
        while fp.read(CHUNK_BYTES):
            pass


def _whole(zf: zipfile.ZipFile, m: _Member) -> np.ndarray:
    with _reading(), zf.open(m.info) as fp:
        read_npy_header(fp)
        data = _read_exact(fp, m.nbytes, m)
        _drain(fp)
    return np.frombuffer(data, dtype=m.dtype).reshape(m.shape, order="F" if m.fortran else "C")


def _rows(
    zf: zipfile.ZipFile, m: _Member, scratch: Callable[[], IO[bytes]]
) -> Iterator[np.ndarray]:
    """`m`'s rows in order, about CHUNK_BYTES at a time. A Fortran-order array (columns first,
    as `np.savez(df.values)` often writes) is copied to a scratch file and its rows gathered
    from a memory map of it."""
    row_bytes = math.prod(m.shape[1:]) * m.dtype.itemsize
    per = max(1, CHUNK_BYTES // max(1, row_bytes))
    n = m.shape[0]
    with zf.open(m.info) as fp:
        with _reading():
            read_npy_header(fp)
        if not m.fortran:
            for start in range(0, n, per):
                k = min(per, n - start)
                data = _read_exact(fp, k * row_bytes, m)
                yield np.frombuffer(data, dtype=m.dtype).reshape(k, *m.shape[1:])
            _drain(fp)
            return
        with scratch() as tmp:
            left = m.nbytes
            while left:
                data = _read_exact(fp, min(CHUNK_BYTES, left), m)
                tmp.write(data)
                left -= len(data)
            _drain(fp)
            tmp.flush()
            mapped = np.memmap(tmp, dtype=m.dtype, mode="r", shape=m.shape, order="F")
            try:
                for start in range(0, n, per):
                    yield np.array(mapped[start : start + per], order="C")
            finally:
                del mapped


def _float32_rows(chunks: Iterator[np.ndarray], loc: tuple[str, ...]) -> Iterator[np.ndarray]:
    """The chunks as float32; once all are through, refused when any value was not finite."""
    n_nan = n_inf = 0
    for chunk in chunks:
        with np.errstate(over="ignore"):  # values past float32's range become inf: refused
            block = np.ascontiguousarray(chunk, dtype=np.float32)
        n_nan += int(np.isnan(block).sum())
        n_inf += int(np.isinf(block).sum())
        yield block
    _refuse_non_finite(n_nan, n_inf, "x", loc)


def stream_npz(
    fp: IO[bytes],
    task: str | None,
    limit_bytes: int,
    sink: ArraySink,
    scratch: Callable[[], IO[bytes]],
) -> Prepared:
    """Validate the `.npz` at `fp` (arrays `x` and `y`, as `np.savez`/`np.savez_compressed`
    write them) and write it to `sink` as float32 `x` and int64/float32 `y`, never holding `x`
    whole: shapes and dtypes from the headers, `y` read, `x` streamed. `scratch` makes an
    anonymous temporary file (for a Fortran-order `x`)."""
    with _reading():
        is_zip = zipfile.is_zipfile(fp)
    if not is_zip:
        raise _invalid("not an .npz archive (a zip of .npy arrays, as np.savez writes)")
    with _reading():
        zf = zipfile.ZipFile(fp)
    with zf:
        with _reading():
            members = _members(zf, limit_bytes)
        x, y = members["x"], members["y"]
        _check_shapes(x.shape, x.dtype, y.shape, FILE)
        n = x.shape[0]
        check_size(math.prod(x.shape) * 4 + n * 8, limit_bytes, "the dataset (as float32 features)")
        labels = _labels(_whole(zf, y), task, FILE)
        sink.add("x", np.float32, x.shape, _float32_rows(_rows(zf, x, scratch), FILE))
        sink.add("y", labels.y.dtype, labels.y.shape, iter([labels.y]))
    return Prepared(x.shape, labels.task, labels.n_classes, labels.classes, task is None)


def parse_csv(data: bytes, label_column: str) -> Arrays:
    """Features and labels of a CSV with a header row: every column but `label_column` is a
    numeric feature; labels may be numbers or strings (strings mean classification)."""
    try:
        text = data.decode("utf-8-sig")
    except UnicodeDecodeError:
        raise _invalid("the .csv is not UTF-8 text") from None
    reader = csv.reader(io.StringIO(text, newline=""))
    try:
        header = [h.strip() for h in next(reader)]
    except StopIteration:
        raise _invalid("the .csv is empty; it needs a header row naming the columns") from None
    except csv.Error as exc:
        raise _invalid(f"the .csv cannot be parsed: {exc}") from None
    if label_column not in header:
        raise _invalid(
            f"no column {label_column!r} in the header; columns: {', '.join(header)}",
            loc=("body", "label_column"),
            type_="unknown_column",
        )
    if header.count(label_column) > 1:
        raise _invalid(f"the header names {label_column!r} more than once")
    if len(header) < 2:
        raise _invalid("the .csv needs at least one feature column besides the label column")
    label_at = header.index(label_column)
    feature_names = [h for i, h in enumerate(header) if i != label_at]
    rows: list[list[float]] = []
    labels: list[str] = []
    try:
        for row in reader:
            if not row or all(not v.strip() for v in row):
                continue  # blank lines
            if len(row) != len(header):
                raise _invalid(
                    f"line {reader.line_num} has {len(row)} fields; the header has {len(header)}"
                )
            labels.append(row[label_at].strip())
            values = row[:label_at] + row[label_at + 1 :]
            try:
                rows.append([float(v) for v in values])
            except ValueError:
                for name, v in zip(feature_names, values, strict=True):
                    try:
                        float(v)
                    except ValueError:
                        raise _invalid(
                            f"line {reader.line_num}, column {name!r}: {v!r} is not a number "
                            "(feature columns must be numeric)"
                        ) from None
    except csv.Error as exc:
        raise _invalid(f"the .csv cannot be parsed at line {reader.line_num}: {exc}") from None
    x = np.array(rows, dtype=np.float64).reshape(len(rows), len(feature_names))
    try:
        y: np.ndarray = np.array([float(v) for v in labels], dtype=np.float64)
    except ValueError:
        y = np.array(labels, dtype=np.str_)
    return Arrays(x=x, y=y)


# -- validation ---------------------------------------------------------------------------------


def _refuse_non_finite(n_nan: int, n_inf: int, what: str, loc: tuple[str, ...] = FILE) -> None:
    if n_nan or n_inf:
        raise _invalid(
            f"{what} has {n_nan} NaN and {n_inf} infinite values (or values beyond float32's "
            "range); every value must be finite",
            loc,
            type_="non_finite",
        )


def _non_finite(a: np.ndarray, what: str, loc: tuple[str, ...] = FILE) -> None:
    _refuse_non_finite(int(np.isnan(a).sum()), int(np.isinf(a).sum()), what, loc)


def _plain(v: Any) -> Any:
    """A label as JSON keeps it: integral numbers as int."""
    if isinstance(v, float) and v.is_integer():
        return int(v)
    return v


def _check_shapes(
    x_shape: tuple[int, ...], x_dtype: np.dtype[Any], y_shape: tuple[int, ...], loc: tuple[str, ...]
) -> None:
    """What the headers tell: x's dtype and shape, y's shape, their lengths."""
    if x_dtype.kind not in "biuf":
        raise _invalid(f"x must be numeric (int, float or bool), not {x_dtype}", loc)
    if not 2 <= len(x_shape) <= 4:
        raise _invalid(
            f"x has shape {x_shape}: it must be (n, features) or (n, C, H, W) (2 to 4 dims)", loc
        )
    if any(d < 1 for d in x_shape[1:]):
        raise _invalid(f"x has shape {x_shape}: every feature dimension must be at least 1", loc)
    n = int(x_shape[0])
    if len(y_shape) != 1:
        raise _invalid(f"y must be 1-D (one label or target per sample), not shape {y_shape}", loc)
    if y_shape[0] != n:
        raise _invalid(f"y has {y_shape[0]} values but x has {n} samples; they must match", loc)
    if n < MIN_SAMPLES:
        raise _invalid(f"{n} samples; a dataset needs at least {MIN_SAMPLES}", loc)


def _labels(y: np.ndarray, task: str | None, loc: tuple[str, ...]) -> _Labels:
    """Infer the task when not given; class labels remapped to 0..K-1, targets as float32."""
    task_loc = ("body", "task")
    if y.dtype.kind in "US":
        try:
            labels: np.ndarray = y.astype(np.str_)
        except UnicodeDecodeError:
            raise _invalid("y holds bytes that are not ASCII text", loc) from None
        if task == "regression":
            raise _invalid("regression needs numeric targets; y holds strings", task_loc)
        inferred = "classification"
    elif y.dtype.kind in "biuf":
        labels = y.astype(np.float64)
        _non_finite(labels, "y")
        integral = bool(np.all(labels == np.round(labels)))
        if task == "classification" and not integral:
            raise _invalid(
                "classification labels must be integers or strings; y has fractional values",
                task_loc,
            )
        few = integral and len(np.unique(labels)) <= INFER_MAX_CLASSES
        inferred = "classification" if few else "regression"
    else:
        raise _invalid(f"y must hold numbers or strings, not {y.dtype}", loc)
    chosen = task or inferred

    if chosen == "regression":
        with np.errstate(over="ignore"):
            y32 = labels.astype(np.float32)
        _non_finite(y32, "y")
        return _Labels(y32, "regression", None, None)
    classes, ids = np.unique(labels, return_inverse=True)
    k = len(classes)
    if k < 2:
        raise _invalid(
            f"y has a single class ({_plain(classes[0].item())!r}); classification needs at "
            "least 2",
            loc,
        )
    if k > MAX_CLASSES:
        raise _invalid(f"y has {k} classes; at most {MAX_CLASSES} are allowed", loc)
    original = [_plain(c.item()) for c in classes]
    return _Labels(ids.reshape(-1).astype(np.int64), "classification", k, original)


def prepare(
    raw: Arrays, task: str | None, loc: tuple[str, ...] = FILE, limit_bytes: int | None = None
) -> tuple[Prepared, Arrays]:
    """Check in-memory arrays' shapes, dtypes and values; infer the task when not given; remap
    class labels to 0..K-1. Raises InvalidInput (422) naming what is wrong."""
    x, y = np.asarray(raw.x), np.asarray(raw.y)
    _check_shapes(x.shape, x.dtype, y.shape, loc)
    n = int(x.shape[0])
    with np.errstate(over="ignore"):  # values past float32's range become inf: refused below
        x32 = np.ascontiguousarray(x, dtype=np.float32)
    _non_finite(x32, "x")
    if limit_bytes is not None:
        check_size(x32.nbytes + n * 8, limit_bytes, "the dataset (as float32 features)", loc)
    labels = _labels(y, task, loc)
    prepared = Prepared(x32.shape, labels.task, labels.n_classes, labels.classes, task is None)
    return prepared, Arrays(x32, labels.y)

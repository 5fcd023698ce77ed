"""User datasets' file formats: parse an upload (`.npz`, `.csv`) and validate it. Pure functions
over bytes (no database, no HTTP, no paths: where files live is `storage.py`).

Nothing is ever unpickled: `.npz` members are read with `allow_pickle=False`, and an object-dtype
member is refused from its header before any of its data is read. What is stored is always two
plain numeric arrays written by `np.savez`: `x` float32 `(n, *feature_shape)` and `y` int64 class
ids 0..K-1 (classification) or float32 targets (regression).
"""

from __future__ import annotations

import csv
import io
import re
import zipfile
from dataclasses import dataclass
from typing import Any

import numpy as np

from service.kit.errors import GlidepathError, InvalidInput, item
from service.training.datasets import Arrays

NAME_RE = re.compile(r"^[a-z0-9][a-z0-9_-]{0,63}$")
NAME_RULE = "1-64 characters of a-z, 0-9, '_' and '-', starting with a letter or a digit"
TASKS = ("classification", "regression")
MIN_SAMPLES = 10
MAX_CLASSES = 1000
INFER_MAX_CLASSES = 100  # integer-valued targets with at most this many values → classification

FILE: tuple[str, ...] = ("body", "file")


class TooLarge(GlidepathError):
    status_code = 413
    type_ = "too_large"


class UnsupportedMediaType(GlidepathError):
    status_code = 415
    type_ = "unsupported_media_type"


@dataclass(frozen=True)
class Prepared:
    """Validated arrays, ready to store, and what the catalogue records about them."""

    arrays: Arrays
    task: str
    n_classes: int | None
    classes: list[Any] | None  # original label of class id i (classification)
    task_inferred: bool

    @property
    def feature_shape(self) -> list[int]:
        return [int(d) for d in self.arrays.x.shape[1:]]


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


def _npy_header(fp: Any) -> tuple[tuple[int, ...], np.dtype[Any]]:
    version = np.lib.format.read_magic(fp)
    if version == (1, 0):
        shape, _, dtype = np.lib.format.read_array_header_1_0(fp)
    elif version == (2, 0):
        shape, _, dtype = np.lib.format.read_array_header_2_0(fp)
    else:
        raise ValueError(f"unsupported .npy format version {version}")
    return shape, dtype


def parse_npz(data: bytes, limit_bytes: int) -> Arrays:
    """The arrays `x` and `y` of an `.npz` archive (as `np.savez`/`np.savez_compressed` write it).

    Every member's header is checked before its data is read: object dtypes (pickles) are refused,
    and the declared sizes must fit the member and, in total, `limit_bytes` (no zip bombs)."""
    buf = io.BytesIO(data)
    if not zipfile.is_zipfile(buf):
        raise _invalid("not an .npz archive (a zip of .npy arrays, as np.savez writes)")
    try:
        with zipfile.ZipFile(buf) as zf:
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
            for m in members:
                with zf.open(m) as fp:
                    shape, dtype = _npy_header(fp)
                if dtype.hasobject:
                    raise _invalid(
                        f"array {m.filename.removesuffix('.npy')!r} has dtype object: "
                        "pickled arrays are refused; store plain numeric arrays",
                        type_="pickle_refused",
                    )
                if int(np.prod(shape, dtype=np.int64)) * dtype.itemsize > m.file_size:
                    raise _invalid(f"array {m.filename!r} is truncated or corrupt")
        with np.load(io.BytesIO(data), allow_pickle=False) as npz:
            return Arrays(x=npz["x"], y=npz["y"])
    except InvalidInput:
        raise
    except TooLarge:
        raise
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


def _non_finite(a: np.ndarray, what: str) -> None:
    n_nan, n_inf = int(np.isnan(a).sum()), int(np.isinf(a).sum())
    if n_nan or n_inf:
        raise _invalid(
            f"{what} has {n_nan} NaN and {n_inf} infinite values (or values beyond float32's "
            "range); every value must be finite",
            type_="non_finite",
        )


def _plain(v: Any) -> Any:
    """A label as JSON keeps it: integral numbers as int."""
    if isinstance(v, float) and v.is_integer():
        return int(v)
    return v


def prepare(
    raw: Arrays, task: str | None, loc: tuple[str, ...] = FILE, limit_bytes: int | None = None
) -> Prepared:
    """Check shapes, dtypes and values; infer the task when not given; remap class labels to
    0..K-1. Raises InvalidInput (422) naming what is wrong."""
    x, y = np.asarray(raw.x), np.asarray(raw.y)
    if x.dtype.kind not in "biuf":
        raise _invalid(f"x must be numeric (int, float or bool), not {x.dtype}", loc)
    if not 2 <= x.ndim <= 4:
        raise _invalid(
            f"x has shape {x.shape}: it must be (n, features) or (n, C, H, W) (2 to 4 dims)", loc
        )
    if any(d < 1 for d in x.shape[1:]):
        raise _invalid(f"x has shape {x.shape}: every feature dimension must be at least 1", loc)
    n = int(x.shape[0])
    if y.ndim != 1:
        raise _invalid(f"y must be 1-D (one label or target per sample), not shape {y.shape}", loc)
    if len(y) != n:
        raise _invalid(f"y has {len(y)} values but x has {n} samples; they must match", loc)
    if n < MIN_SAMPLES:
        raise _invalid(f"{n} samples; a dataset needs at least {MIN_SAMPLES}", loc)
    with np.errstate(over="ignore"):  # values past float32's range become inf: refused below
        x32 = np.ascontiguousarray(x, dtype=np.float32)
    _non_finite(x32, "x")
    if limit_bytes is not None:
        check_size(x32.nbytes + n * 8, limit_bytes, "the dataset (as float32 features)", loc)

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
        return Prepared(Arrays(x32, y32), "regression", None, None, task is None)
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
    arrays = Arrays(x32, ids.reshape(-1).astype(np.int64))
    return Prepared(arrays, "classification", k, original, task is None)

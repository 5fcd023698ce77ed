"""User datasets' files: one `.npz` per dataset, written to a temporary file under
DATA_DIR/datasets (scratch space) and then put in the artifact store (datasets/<name>.npz,
service/artifacts), read back without unpickling.

What is stored is always two plain numeric arrays, `x` float32 and `y` int64 or float32, in an
uncompressed archive (ZIP_STORED, as `np.savez` writes) whose members are written chunk by chunk,
so no dataset is ever held whole to be stored, and whose `x` data starts 64-byte aligned. The
worker memory-maps `x` in place instead of loading it (`read`); an archive whose members are
compressed is loaded as before."""

from __future__ import annotations

import contextlib
import hashlib
import math
import os
import struct
import tempfile
import time
import zipfile
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path
from types import TracebackType
from typing import IO, Any

import numpy as np
from numpy.typing import DTypeLike

from service.datasets.files import check_size, read_npy_header
from service.training.datasets import Arrays

FOLDER = "datasets"  # scratch space under DATA_DIR
CHUNK = 2**20  # bytes copied at a time
ALIGN = 64  # where x's data starts in the stored archive (as .npy aligns its own data)
_PAD_FIELD = 0xD935  # a zip extra field that only pads (the id Android's zipalign uses)
_LOCAL_HEADER = struct.Struct("<4s2B4HL2L2H")  # a zip member's local file header
_ZIP64_EXTRA = 20  # the zip64 extra field zipfile adds to a local header it writes


def folder(data_dir: Path) -> Path:
    path = data_dir / FOLDER
    path.mkdir(parents=True, exist_ok=True)
    return path


# -- receiving ----------------------------------------------------------------------------------


@dataclass(frozen=True)
class Received:
    path: Path
    size: int
    sha256: str


def receive(data_dir: Path, source: IO[bytes], limit_bytes: int) -> Received:
    """Copy an upload, `CHUNK` bytes at a time, to a temporary file in the datasets folder,
    counting: 413 as soon as it is past `limit_bytes` (and nothing is left behind). The caller
    removes the file when done with it."""
    fd, tmp = tempfile.mkstemp(prefix=".incoming-", suffix=".part", dir=folder(data_dir))
    digest = hashlib.sha256()
    size = 0
    try:
        with os.fdopen(fd, "wb") as out:
            while chunk := source.read(CHUNK):
                size += len(chunk)
                check_size(size, limit_bytes, "the upload")
                digest.update(chunk)
                out.write(chunk)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
    return Received(Path(tmp), size, digest.hexdigest())


def scratch(data_dir: Path) -> IO[bytes]:
    """An anonymous temporary file in the datasets folder (gone when closed)."""
    return tempfile.TemporaryFile(dir=folder(data_dir))


# -- writing ------------------------------------------------------------------------------------


class Writer:
    """A new dataset file: an uncompressed `.npz` written one member at a time from chunks.
    As a context manager: finished on success, removed on any error."""

    def __init__(self, data_dir: Path) -> None:
        fd, tmp = tempfile.mkstemp(prefix=".upload-", suffix=".npz", dir=folder(data_dir))
        self.path = Path(tmp)
        try:
            os.fchmod(fd, 0o644)  # mkstemp's 0600 would hide it from a worker as another user
            self._file = os.fdopen(fd, "w+b")
        except BaseException:
            os.close(fd)
            self.path.unlink(missing_ok=True)
            raise
        self._zip = zipfile.ZipFile(self._file, "w", zipfile.ZIP_STORED, allowZip64=True)

    def add(
        self, name: str, dtype: DTypeLike, shape: tuple[int, ...], chunks: Iterable[np.ndarray]
    ) -> None:
        """Member `name.npy` of `shape`: the chunks, converted to `dtype`, are its rows in order."""
        dt = np.dtype(dtype)
        info = zipfile.ZipInfo(f"{name}.npy", date_time=time.localtime()[:6])
        info.compress_type = zipfile.ZIP_STORED
        info.external_attr = 0o644 << 16
        # Pad the local header so the member's data (and so the .npy data after its 64-byte
        # aligned header) starts on an ALIGN boundary: a memory map of it is aligned.
        fixed = _LOCAL_HEADER.size + len(info.filename.encode()) + _ZIP64_EXTRA + 4
        pad = -(self._file.tell() + fixed) % ALIGN
        info.extra = struct.pack("<HH", _PAD_FIELD, pad) + bytes(pad)
        expected = math.prod(shape) * dt.itemsize
        written = 0
        with self._zip.open(info, "w", force_zip64=True) as out:
            header = {
                "descr": np.lib.format.dtype_to_descr(dt),
                "fortran_order": False,
                "shape": tuple(int(d) for d in shape),
            }
            np.lib.format.write_array_header_1_0(out, header)
            for chunk in chunks:
                block = np.ascontiguousarray(chunk, dtype=dt)
                out.write(block.reshape(-1).view(np.uint8).data)
                written += block.nbytes
        if written != expected:
            raise ValueError(f"{name}: {written} bytes written for shape {shape} ({expected})")

    def __enter__(self) -> Writer:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        if exc_type is not None:
            self._discard()
            return
        try:
            self._zip.close()
            self._file.flush()
            os.fsync(self._file.fileno())
            self._file.close()
        except BaseException:
            self._discard()
            raise

    def _discard(self) -> None:
        with contextlib.suppress(Exception):  # a half-written archive: only closed, then removed
            self._zip.close()
        self._file.close()
        self.path.unlink(missing_ok=True)


def write_temp(data_dir: Path, arrays: Arrays) -> Path:
    """Write in-memory arrays to a temporary file in the datasets folder (same file system, so
    `publish` is an atomic rename)."""
    with Writer(data_dir) as writer:
        writer.add("x", np.float32, arrays.x.shape, [arrays.x])
        writer.add("y", arrays.y.dtype, arrays.y.shape, [arrays.y])
    return writer.path


# -- reading ------------------------------------------------------------------------------------


def _mapped(path: Path, info: zipfile.ZipInfo) -> np.memmap[Any, Any] | None:
    """The member as a read-only memory map, or None when it cannot be one (compressed,
    encrypted, empty)."""
    if info.compress_type != zipfile.ZIP_STORED or info.flag_bits & 0x1:
        return None
    with path.open("rb") as f:
        f.seek(info.header_offset)
        local = _LOCAL_HEADER.unpack(f.read(_LOCAL_HEADER.size))
        if local[0] != b"PK\x03\x04":
            raise ValueError(f"{path.name}: {info.filename} has no local header")
        start = info.header_offset + _LOCAL_HEADER.size + local[10] + local[11]
        f.seek(start)
        shape, fortran, dtype = read_npy_header(f)
        offset = f.tell()
    if dtype.hasobject:
        raise ValueError(f"{path.name}: {info.filename} has dtype object; it is never unpickled")
    nbytes = math.prod(shape) * dtype.itemsize
    if nbytes == 0:
        return None
    if offset - start + nbytes > info.file_size:
        raise ValueError(f"{path.name}: {info.filename} is truncated")
    return np.memmap(
        path, dtype=dtype, mode="r", offset=offset, shape=shape, order="F" if fortran else "C"
    )


def read(path: Path, task: str) -> Arrays:
    """A stored dataset (never unpickling): x float32, memory-mapped from the file where it is
    stored uncompressed (every dataset this module writes), so a large one is read in place
    rather than loaded; y int64 or float32 by task, in memory."""
    y_dtype = np.int64 if task == "classification" else np.float32
    with zipfile.ZipFile(path) as zf:
        x_map = _mapped(path, zf.getinfo("x.npy"))
        y_map = _mapped(path, zf.getinfo("y.npy"))
    if x_map is None or y_map is None:  # a compressed archive: loaded, as it always was
        with np.load(path, allow_pickle=False) as npz:
            x = np.ascontiguousarray(npz["x"], dtype=np.float32)
            y = np.ascontiguousarray(npz["y"], dtype=y_dtype)
        return Arrays(x=x, y=y)
    if x_map.dtype == np.float32 and x_map.flags.c_contiguous:
        x = x_map
    else:
        x = np.ascontiguousarray(x_map, dtype=np.float32)
    return Arrays(x=x, y=np.array(y_map, dtype=y_dtype))

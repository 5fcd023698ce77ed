"""The artifact store over fsspec: a local folder (`file://…`, the default under DATA_DIR) or an
S3-compatible bucket (`s3://bucket/prefix`, through s3fs; endpoint and credentials from the
standard AWS_* variables). It knows keys and bytes, not the database.

Writes are atomic: a local file is written beside its key and renamed; an S3 object appears only
when its single PUT (or multipart upload) completes. Every write returns the content's sha256,
and a read given the expected sha256 verifies it: a truncated or corrupt artifact is
`CorruptArtifact`, never silently used."""

from __future__ import annotations

import contextlib
import hashlib
import os
import shutil
import tempfile
import uuid
from functools import cache
from pathlib import Path
from typing import IO, Any

import fsspec

CHUNK = 1 << 20
UPLOAD_PART = 5 << 20


class ArtifactError(Exception):
    """Base of the store's errors; the message says which key."""


class ArtifactMissing(ArtifactError):
    pass


class CorruptArtifact(ArtifactError):
    pass


class StoreUnavailable(ArtifactError):
    """The store did not answer (network, credentials, endpoint): worth retrying."""


def sha256_file(path: Path) -> str:
    with path.open("rb") as f:
        return hashlib.file_digest(f, "sha256").hexdigest()


def _aws_session() -> Any:
    """A fresh AWS session (it reads the AWS_* credentials now), sharing one process-wide loader
    of botocore's data files: a new session would parse the endpoint rules and S3's service
    model again, ~1 MB of JSON, 100–250 ms on this machine before its first request."""
    from aiobotocore.session import AioSession

    session = AioSession()
    session.register_component("data_loader", _botocore_loader())
    return session


@cache
def _botocore_loader() -> Any:
    from botocore.loaders import create_loader

    return create_loader()


class Store:
    def __init__(self, url: str) -> None:
        self.url = url.rstrip("/")
        # s3fs retries on its own (5 times by default) on top of botocore: bounded here, so an
        # unreachable store is an answer within seconds; callers retry with backoff themselves.
        options: dict[str, Any] = {}
        if self.url.startswith(("s3://", "s3a://")):
            botocore = {"connect_timeout": 3, "read_timeout": 30, "retries": {"max_attempts": 2}}
            # A client of its own, made now: fsspec would otherwise hand back a cached one made
            # under other AWS_* settings (`store_for` caches a Store per URL instead).
            options = {"config_kwargs": botocore, "skip_instance_cache": True,
                       "session": _aws_session()}  # fmt: skip
        self.fs, root = fsspec.core.url_to_fs(self.url, **options)
        if hasattr(self.fs, "retries"):
            self.fs.retries = 2  # s3fs's own retry loop (an attribute, not a constructor option)
        self.root = root.rstrip("/")
        self.local = self.fs.protocol in ("file", "local") or "file" in self.fs.protocol

    def _path(self, key: str) -> str:
        if not key or key.startswith("/") or ".." in key.split("/"):
            raise ValueError(f"bad artifact key {key!r}")
        return f"{self.root}/{key}"

    def local_path(self, key: str) -> Path | None:
        """Where a local store keeps `key` (read in place, memory-mapped); None on S3."""
        return Path(self._path(key)) if self.local else None

    def _call(self, what: str, key: str, fn: Any) -> Any:
        try:
            return fn()
        except FileNotFoundError:
            raise ArtifactMissing(f"artifact {key!r} is missing from {self.url}") from None
        except ArtifactError:
            raise
        except (OSError, ValueError) as exc:
            if self.local and not isinstance(exc, ConnectionError | TimeoutError):
                raise
            raise StoreUnavailable(f"{what} {key!r} at {self.url}: {exc}") from exc
        except Exception as exc:  # botocore and aiohttp errors: the store is away or refuses
            raise StoreUnavailable(f"{what} {key!r} at {self.url}: "
                                   f"{type(exc).__name__}: {exc}") from exc  # fmt: skip

    # -- writing ---------------------------------------------------------------------------------

    def put_file(self, local: Path, key: str) -> str:
        """Copy a local file to `key` atomically; returns its sha256."""
        digest = sha256_file(local)
        path = self._path(key)
        if self.local:
            Path(path).parent.mkdir(parents=True, exist_ok=True)
            tmp = f"{path}.{uuid.uuid4().hex[:8]}.tmp"
            shutil.copyfile(local, tmp)
            with open(tmp, "rb+") as f:
                os.fsync(f.fileno())
            os.replace(tmp, path)
        else:
            # Multipart in parts of S3's minimum size (5 MiB; more for files past 10,000 parts),
            # one at a time: s3fs's defaults (50 MiB parts, 10 at once, each copied by botocore)
            # would hold about a GB of the file in memory while it uploads. As fast on loopback.
            part = max(UPLOAD_PART, -(-local.stat().st_size // 10_000))
            self._call("writing", key, lambda: self.fs.put_file(
                str(local), path, chunksize=part, max_concurrency=1))  # fmt: skip
        return digest

    def put_bytes(self, data: bytes, key: str) -> str:
        digest = hashlib.sha256(data).hexdigest()
        path = self._path(key)
        if self.local:
            Path(path).parent.mkdir(parents=True, exist_ok=True)
            tmp = f"{path}.{uuid.uuid4().hex[:8]}.tmp"
            with open(tmp, "wb") as f:
                f.write(data)
                f.flush()
                os.fsync(f.fileno())
            os.replace(tmp, path)
        else:
            self._call("writing", key, lambda: self.fs.pipe_file(path, data))
        return digest

    # -- reading ---------------------------------------------------------------------------------

    def get_bytes(self, key: str, sha256: str | None = None) -> bytes:
        data: bytes = self._call("reading", key, lambda: self.fs.cat_file(self._path(key)))
        if sha256 is not None and hashlib.sha256(data).hexdigest() != sha256:
            raise CorruptArtifact(f"artifact {key!r}: its sha256 is not the one recorded")
        return data

    def get_file(self, key: str, local: Path, sha256: str | None = None) -> Path:
        """Download `key` to `local` (atomically), verifying `sha256`."""
        local.parent.mkdir(parents=True, exist_ok=True)
        tmp = local.with_name(f".{local.name}.{uuid.uuid4().hex[:8]}.part")
        try:
            self._call("reading", key, lambda: self.fs.get_file(self._path(key), str(tmp)))
            if sha256 is not None and sha256_file(tmp) != sha256:
                raise CorruptArtifact(f"artifact {key!r}: its sha256 is not the one recorded")
            os.replace(tmp, local)
        finally:
            tmp.unlink(missing_ok=True)
        return local

    def open_verified(self, key: str, sha256: str) -> IO[bytes]:
        """`key` open at its first byte, its sha256 checked before anything is read from it: a
        local store's own file (hashed from the handle returned, so a rewrite or delete meanwhile
        cannot change what is read), else a verified download to a temporary file that goes
        away when the handle is closed."""
        local = self.local_path(key)
        if local is None:
            with tempfile.TemporaryDirectory(prefix="glidepath-artifact-") as tmp:
                return self.get_file(key, Path(tmp) / "artifact", sha256).open("rb")
        try:
            f = local.open("rb")
        except FileNotFoundError:
            raise ArtifactMissing(f"artifact {key!r} is missing from {self.url}") from None
        try:
            if hashlib.file_digest(f, "sha256").hexdigest() != sha256:
                raise CorruptArtifact(f"artifact {key!r}: its sha256 is not the one recorded")
            f.seek(0)
        except BaseException:
            f.close()
            raise
        return f

    def keys(self, prefix: str) -> list[str]:
        """Every key under `prefix` (a folder-like `a/b/`), sorted."""
        base = self._path(prefix.rstrip("/"))
        try:
            found = self._call("listing", prefix, lambda: self.fs.find(base))
        except ArtifactMissing:
            return []
        # Some stores (SeaweedFS) keep an emptied folder as an object of its own: not a key.
        start = len(self.root) + 1
        return sorted(p[start:] for p in found if p.rstrip("/") != base)

    def exists(self, key: str) -> bool:
        return bool(self._call("checking", key, lambda: self.fs.exists(self._path(key))))

    # -- deleting --------------------------------------------------------------------------------

    def delete(self, key: str) -> None:
        with contextlib.suppress(ArtifactMissing):
            self._call("deleting", key, lambda: self.fs.rm_file(self._path(key)))

    def delete_many(self, keys: list[str]) -> None:
        """Delete these keys, missing ones included; on S3 one request per 1,000 keys (a rung
        that prunes hundreds of runs)."""
        if self.local:
            for key in keys:
                self.delete(key)
        elif keys:
            paths = [self._path(k) for k in keys]
            self._call("deleting", keys[0], lambda: self.fs.rm(paths))

    # -- health ----------------------------------------------------------------------------------

    def check(self) -> dict[str, Any]:
        """For `/readyz`: can we list the store's root right now?"""
        try:
            if self.local:
                Path(self.root).mkdir(parents=True, exist_ok=True)
            else:
                self.fs.ls(self.root.split("/", 1)[0], refresh=True)
            return {"ok": True, "url": self.url}
        except Exception as exc:
            return {"ok": False, "url": self.url, "error": f"{type(exc).__name__}: "
                    f"{str(exc).splitlines()[0][:200] if str(exc) else ''}"}  # fmt: skip


@cache
def store_for(url: str) -> Store:
    return Store(url)

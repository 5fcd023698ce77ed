"""The S3 fixture (tests/support/s3.py): a real SeaweedFS that s3fs reaches with nothing but the
AWS_* variables of `S3Server.env` (endpoint included: botocore reads AWS_ENDPOINT_URL itself),
and lists and deletes what it stored. Large objects: tests/db/test_artifact_store.py, and the
postgres backend, whose artifacts all go through it."""

from __future__ import annotations

import os
from typing import Any

import pytest

from tests.support.s3 import S3Server

MB = 1024 * 1024


def s3fs_from_env(monkeypatch: pytest.MonkeyPatch, env: dict[str, str]) -> Any:
    """An s3fs filesystem configured by these variables alone: no ~/.aws files, no profile,
    no endpoint or key in code."""
    import fsspec

    for name in list(os.environ):
        if name.startswith("AWS_"):
            monkeypatch.delenv(name)
    monkeypatch.setenv("AWS_CONFIG_FILE", os.devnull)
    monkeypatch.setenv("AWS_SHARED_CREDENTIALS_FILE", os.devnull)
    for name, value in env.items():
        monkeypatch.setenv(name, value)
    # skip_instance_cache: fsspec otherwise hands back an instance made under another env
    return fsspec.filesystem("s3", skip_instance_cache=True)


def test_put_get_list_delete(
    s3_server: S3Server, s3_url: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    fs = s3fs_from_env(monkeypatch, s3_server.env)
    base = s3_url.removeprefix("s3://")
    fs.pipe(f"{base}/a.txt", b"hello")
    fs.pipe(f"{base}/sub/b.bin", bytes(range(256)))

    assert fs.cat(f"{base}/a.txt") == b"hello"
    assert sorted(fs.find(base)) == [f"{base}/a.txt", f"{base}/sub/b.bin"]
    assert fs.info(f"{base}/sub/b.bin")["size"] == 256
    # The objects are on this server (not on some other endpoint s3fs might have picked).
    key = f"{base.split('/', 1)[1]}/a.txt"
    assert s3_server.client().get_object(Bucket=s3_server.bucket, Key=key)["Body"].read() == (
        b"hello"
    )

    fs.rm(f"{base}/a.txt")
    assert not fs.exists(f"{base}/a.txt")
    assert fs.find(base) == [f"{base}/sub/b.bin"]
    fs.rm(base, recursive=True)
    # No objects left. (Unlike AWS, SeaweedFS keeps the emptied "directories": a delimited
    # listing still shows the prefix, so s3fs's find/exists report `base` itself afterwards.)
    listed = s3_server.client().list_objects_v2(Bucket=s3_server.bucket, Prefix=key.split("/")[0])
    assert listed["KeyCount"] == 0

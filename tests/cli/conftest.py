"""One real API + worker per backend for this package's end-to-end tests (module-scoped: the
CLI tests share it, each test using its own experiments), and helpers to run the CLI."""

from __future__ import annotations

import os
import subprocess
import sys
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

from tests.conftest import (
    REDIS_URL,
    _pg_ok,
    _redis_ok,
    _require,
    create_pg_database,
    drop_pg_database,
)
from tests.support.stack import Backend, Stack, start_stack

GLIDEPATH = Path(sys.executable).with_name("glidepath")
# Its own Redis database: the suite's other stacks flush theirs (db 11) when they start.
CLI_REDIS_URL = REDIS_URL.rsplit("/", 1)[0] + "/13"


@dataclass
class Result:
    returncode: int
    stdout: str
    stderr: str

    @property
    def output(self) -> str:
        return self.stdout + self.stderr


def cli_env() -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("GLIDEPATH_")}
    env.update(COLUMNS="200", NO_COLOR="1", PYTHONUNBUFFERED="1")
    return env


def run_cli(*args: str, stdin: str | None = None, timeout: float = 120) -> Result:
    """`glidepath ARGS…` as a user runs it: the installed entry point, in a subprocess."""
    cmd = [str(GLIDEPATH)] if GLIDEPATH.exists() else [sys.executable, "-m", "service.cli"]
    proc = subprocess.run(
        [*cmd, *args],
        input=stdin,
        capture_output=True,
        text=True,
        env=cli_env(),
        timeout=timeout,
    )
    return Result(proc.returncode, proc.stdout, proc.stderr)


@pytest.fixture(
    scope="module", params=["embedded", pytest.param("postgres", marks=pytest.mark.postgres)]
)
def cli_stack(
    request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[Stack]:
    """A real `glidepath api` and one worker, shared by a module's tests, on each backend."""
    root = tmp_path_factory.mktemp(f"cli-{request.param}")
    data_dir = root / "data"
    pg_url = ""
    if request.param == "embedded":
        backend = Backend("embedded", f"sqlite:///{data_dir / 'glidepath.db'}", "", data_dir)
    else:
        _require(_pg_ok(), "PostgreSQL on 127.0.0.1:5432")
        _require(_redis_ok(), "Redis on 127.0.0.1:6379")
        import redis

        redis.Redis.from_url(CLI_REDIS_URL).flushdb()
        pg_url = create_pg_database()
        backend = Backend("postgres", pg_url, CLI_REDIS_URL, data_dir)
    try:
        with start_stack(backend, root / "logs") as running:
            yield running
    finally:
        if pg_url:
            drop_pg_database(pg_url)

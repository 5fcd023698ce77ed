"""The real API + worker for this package's end-to-end tests (the session's `stack`: the CLI
tests share it, each test using its own experiments), and helpers to run the CLI."""

from __future__ import annotations

import os
import subprocess
import sys
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest
import structlog
from fastapi.testclient import TestClient
from typer.testing import CliRunner

from service.cli import session
from service.client import Client
from tests.support.stack import Stack

GLIDEPATH = Path(sys.executable).with_name("glidepath")


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


@pytest.fixture
def cli_stack(stack: Stack) -> Stack:
    """The session's real `glidepath api` and worker (tests/conftest.py), on each backend."""
    return stack


@pytest.fixture
def cli(client: TestClient, monkeypatch: pytest.MonkeyPatch) -> Iterator[CliRunner]:
    """The commands in-process (Typer's CliRunner): every command's Client sends through the
    in-process app (`client`)."""
    monkeypatch.setattr(
        session, "new_client", lambda url, token: Client(http=client, token=token, retries=0)
    )
    monkeypatch.delenv("GLIDEPATH_TOKEN", raising=False)
    monkeypatch.setenv("COLUMNS", "200")
    # The in-process API's own logs (its housekeeping thread's election, say) go to stderr, as
    # a real API process's would, not into the command's stdout that the tests read.
    saved = structlog.get_config()
    structlog.configure(logger_factory=structlog.PrintLoggerFactory(sys.stderr))
    try:
        yield CliRunner()
    finally:
        structlog.configure(**saved)

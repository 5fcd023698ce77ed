"""Start the real processes (`glidepath api`, `glidepath worker`) the way a user would."""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx

from service.kit import migrate

FINAL = {"succeeded", "early_stopped", "diverged", "failed", "cancelled"}


@dataclass
class Backend:
    name: str
    database_url: str
    broker_url: str  # "" = the embedded file-system broker
    data_dir: Path
    overrides: dict[str, str] = field(default_factory=dict)  # extra GLIDEPATH_* for processes

    def env(self) -> dict[str, str]:
        env = {k: v for k, v in os.environ.items() if not k.startswith("GLIDEPATH_")}
        env.update(
            GLIDEPATH_DATA_DIR=str(self.data_dir),
            GLIDEPATH_DATABASE_URL=self.database_url,
            GLIDEPATH_BROKER_URL=self.broker_url,
            GLIDEPATH_LEASE_SECONDS="10",
            PYTHONUNBUFFERED="1",
        )
        env.update(self.overrides)
        return env


@dataclass
class Stack:
    backend: Backend
    url: str
    log_dir: Path
    procs: dict[str, subprocess.Popen[bytes]] = field(default_factory=dict)

    def client(self) -> httpx.Client:
        return httpx.Client(base_url=self.url, timeout=10)

    def start_worker(self, name: str) -> subprocess.Popen[bytes]:
        proc = _spawn(
            ["worker", "--name", f"{name}@%h"], self.backend, self.log_dir / f"{name}.log"
        )
        self.procs[name] = proc
        return proc

    def logs(self) -> str:
        return "\n".join(
            f"--- {p.name}\n{p.read_text()[-4000:]}" for p in self.log_dir.glob("*.log")
        )

    def wait_final(self, experiment_id: int, timeout: float = 120) -> dict[str, Any]:
        with self.client() as c:
            body: dict[str, Any] = {}

            def done() -> bool:
                nonlocal body
                body = c.get(f"/v1/experiments/{experiment_id}").json()
                return body.get("status") in FINAL

            wait_for(done, timeout, lambda: f"experiment {experiment_id}: {body}\n{self.logs()}")
            return body


def wait_for(pred: Callable[[], bool], timeout: float, why: Callable[[], str] = lambda: "") -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if pred():
            return
        time.sleep(0.1)
    raise AssertionError(f"timed out after {timeout}s: {why()}")


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def die_with_parent() -> None:
    """In the child, before exec: SIGKILL me when the test process dies. Without it a test run
    that is itself killed leaves workers behind that consume the next run's messages."""
    import ctypes

    PR_SET_PDEATHSIG = 1
    ctypes.CDLL("libc.so.6", use_errno=True).prctl(PR_SET_PDEATHSIG, signal.SIGKILL)


def _spawn(args: list[str], backend: Backend, log: Path) -> subprocess.Popen[bytes]:
    log.parent.mkdir(parents=True, exist_ok=True)
    return subprocess.Popen(
        [sys.executable, "-m", "service.cli", *args],
        env=backend.env(),
        stdout=log.open("wb"),
        stderr=subprocess.STDOUT,
        start_new_session=True,
        preexec_fn=die_with_parent,
    )


def stop(proc: subprocess.Popen[bytes], sig: int = signal.SIGTERM, timeout: float = 20) -> None:
    if proc.poll() is None:
        proc.send_signal(sig)
        try:
            proc.wait(timeout)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()


@contextmanager
def start_stack(backend: Backend, log_dir: Path, workers: int = 1) -> Iterator[Stack]:
    backend.data_dir.mkdir(parents=True, exist_ok=True)
    migrate.upgrade(backend.database_url)
    port = free_port()
    stack = Stack(backend, f"http://127.0.0.1:{port}", log_dir)
    stack.procs["api"] = _spawn(["api", "--port", str(port)], backend, log_dir / "api.log")
    try:
        for i in range(workers):
            stack.start_worker(f"w{i}")

        def ready() -> bool:
            try:
                return httpx.get(f"{stack.url}/readyz", timeout=2).status_code == 200
            except httpx.HTTPError:
                return False

        wait_for(ready, 60, stack.logs)
        yield stack
    finally:
        for proc in stack.procs.values():
            stop(proc)

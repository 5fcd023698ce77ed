"""Start the real processes (`glidepath api`, `glidepath worker`) the way a user would: the one
place tests start a stack. `start_stack` is the context manager; `stack_fixture` makes a pytest
fixture of it (one stack per module by default, on each backend) for a test module's conftest or
the module itself."""

from __future__ import annotations

import ctypes
import os
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from contextlib import AbstractContextManager, ExitStack, contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx

from service.kit import migrate
from service.training.status import FINAL


@dataclass
class Backend:
    name: str
    database_url: str
    broker_url: str  # "" = the embedded file-system broker
    data_dir: Path
    overrides: dict[str, str] = field(default_factory=dict)  # extra GLIDEPATH_* for processes
    migrated: bool = False  # the database is a copy of the migrated template: no Alembic run
    # The artifact store: "" = the default folder under data_dir; s3://… with `s3_env` (AWS_*).
    artifact_url: str = ""
    s3_env: dict[str, str] = field(default_factory=dict)

    def env(self) -> dict[str, str]:
        env = {k: v for k, v in os.environ.items() if not k.startswith(("GLIDEPATH_", "AWS_"))}
        env.update(
            GLIDEPATH_DATA_DIR=str(self.data_dir),
            GLIDEPATH_DATABASE_URL=self.database_url,
            GLIDEPATH_BROKER_URL=self.broker_url,
            GLIDEPATH_ARTIFACT_URL=self.artifact_url,
            **self.s3_env,
            GLIDEPATH_LEASE_SECONDS="10",
            PYTHONUNBUFFERED="1",
            # One thread per process: torch's default (one per core) makes a worker many times
            # slower whenever the API, another worker or pytest takes a core.
            OMP_NUM_THREADS="1",
            MKL_NUM_THREADS="1",
        )
        env.update(self.overrides)
        return env


@dataclass
class Stack:
    backend: Backend
    url: str
    log_dir: Path
    procs: dict[str, subprocess.Popen[bytes]] = field(default_factory=dict)
    api_args: list[str] = field(default_factory=list)  # `glidepath api …`, its port fixed

    def client(self) -> httpx.Client:
        # 30 s: under the full suite on 2 cores a first POST (a dataset loaded, a sweep expanded)
        # has taken over 10 s; a hung API still fails the test.
        return httpx.Client(base_url=self.url, timeout=30)

    def start_worker(self, name: str, env: dict[str, str] | None = None) -> subprocess.Popen[bytes]:
        """`env`: more variables for this worker only (a PYTHONPATH with a plugin on it)."""
        proc = _spawn(
            ["worker", "--name", f"{name}@%h"], self.backend, self.log_dir / f"{name}.log", env
        )
        self.procs[name] = proc
        return proc

    def restart_api(self, sig: int = signal.SIGKILL, ready_s: float = 60) -> None:
        """Stop the API with `sig` (SIGKILL: a crash, nothing flushed or handed over) and start
        it again on the same port; back once /readyz answers 200."""
        stop(self.procs["api"], sig)
        log = self.log_dir / f"api-{len(list(self.log_dir.glob('api*.log')))}.log"  # keep the last
        self.procs["api"] = _spawn(self.api_args, self.backend, log)
        wait_for(self.ready, ready_s, self.logs)

    def ready(self) -> bool:
        try:
            return httpx.get(f"{self.url}/readyz", timeout=2).status_code == 200
        except httpx.HTTPError:
            return False

    def logs(self) -> str:
        return "\n".join(
            f"--- {p.name}\n{p.read_text()[-4000:]}" for p in self.log_dir.glob("*.log")
        )

    def wait_sweep(
        self, c: httpx.Client, sweep_id: int, timeout: float = 120,
        until: Callable[[dict[str, Any]], bool] = lambda s: s["status"] == "finished",
    ) -> dict[str, Any]:  # fmt: skip
        """Poll the sweep's detail until `until` says so (by default: it finished); return it."""
        body: dict[str, Any] = {}

        def done() -> bool:
            nonlocal body
            body = c.get(f"/v1/sweeps/{sweep_id}").json()
            return until(body)

        wait_for(done, timeout, lambda: f"sweep {sweep_id}: {body}\n{self.logs()}")
        return body

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


def registered(c: httpx.Client, pid: int, timeout: float = 60) -> dict[str, Any]:
    """The worker process `pid`'s row in the registry (GET /v1/workers), once it is alive."""
    found: dict[str, Any] = {}

    def alive() -> bool:
        nonlocal found
        rows = [w for w in c.get("/v1/workers").json()["items"] if w["pid"] == pid]
        found = rows[0] if rows else {}
        return found.get("state") == "alive"

    wait_for(alive, timeout, lambda: f"worker {pid} not registered: {found}")
    return found


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


# Loaded in the parent: a child that dropped root (a private PostgreSQL) may not read Python's lib.
_LIBC = ctypes.CDLL("libc.so.6", use_errno=True)


def die_with_parent() -> None:
    """In the child, before exec: SIGKILL me when the test process dies. Without it a test run
    that is itself killed leaves workers behind that consume the next run's messages."""
    PR_SET_PDEATHSIG = 1
    _LIBC.prctl(PR_SET_PDEATHSIG, signal.SIGKILL)


def _spawn(
    args: list[str], backend: Backend, log: Path, env: dict[str, str] | None = None
) -> subprocess.Popen[bytes]:
    log.parent.mkdir(parents=True, exist_ok=True)
    return subprocess.Popen(
        [sys.executable, "-m", "service.cli", *args],
        env={**backend.env(), **(env or {})},
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
def start_stack(
    backend: Backend, log_dir: Path, workers: int = 1, api_workers: int = 1, ready_s: float = 60
) -> Iterator[Stack]:
    """The API on a free port (`api_workers` processes: `glidepath api --workers`) and `workers`
    Celery workers, stopped (SIGTERM) on exit; ready once /readyz answers 200 (within
    `ready_s`: a benchmark on a loaded machine waits longer)."""
    backend.data_dir.mkdir(parents=True, exist_ok=True)
    if not backend.migrated:
        migrate.upgrade(backend.database_url)
    port = free_port()
    api = ["api", "--port", str(port), "--workers", str(api_workers)]
    stack = Stack(backend, f"http://127.0.0.1:{port}", log_dir, api_args=api)
    stack.procs["api"] = _spawn(api, backend, log_dir / "api.log")
    try:
        for i in range(workers):
            stack.start_worker(f"w{i}")
        wait_for(stack.ready, ready_s, stack.logs)
        yield stack
    finally:
        stop_all(list(stack.procs.values()))


def stop_all(procs: list[subprocess.Popen[bytes]], grace: float = 1) -> None:
    """A test's teardown: SIGTERM to every process at once, SIGKILL to those still running
    after `grace` seconds (an idle Celery worker's warm shutdown alone takes 1-2 s here, and
    nothing a test checks happens after this)."""
    for proc in procs:
        if proc.poll() is None:
            proc.send_signal(signal.SIGTERM)
    deadline = time.monotonic() + grace
    for proc in procs:
        try:
            proc.wait(max(0.0, deadline - time.monotonic()))
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()


def stack_fixture(
    *,
    scope: str = "module",
    workers: int = 1,
    overrides: dict[str, str] | None = None,
    embedded_only: bool = False,
    postgres_only: bool = False,
    api_workers: int = 1,
) -> Any:
    """A fixture that yields a running `Stack` on each backend (ids embedded, postgres; the
    latter marked `postgres`), on a fresh copy of the session's migrated database.

    scope="module" (the default) shares one stack among a module's tests: they must not kill or
    reconfigure it, and must find their own runs by id (never "all experiments"); scope="session"
    keeps each backend's stack until the session ends (`KeptStacks`), however the tests on the
    two backends interleave. Tests that kill workers or need settings of their own use
    scope="function". `overrides`: GLIDEPATH_* for the processes, e.g. shorter leases.
    `embedded_only`: what the tests check does not depend on the backend (a page in a browser),
    so the embedded default alone; `postgres_only`: what they check is the production stack's
    (PostgreSQL, Redis, S3). `api_workers`: API processes."""
    import pytest

    from tests.support.backends import PARAMS

    params = PARAMS[:1] if embedded_only else PARAMS[1:] if postgres_only else PARAMS

    @contextmanager
    def started(param: str, backends: Any, tmp_path_factory: Any) -> Iterator[Stack]:
        root = tmp_path_factory.mktemp(f"stack-{param}")
        with backends.backend(param, root) as backend:
            backend.overrides.update(overrides or {})
            with start_stack(backend, root / "logs", workers, api_workers) as running:
                yield running

    if scope == "session":
        # pytest keeps one instance of a parametrized session fixture at a time: a test on the
        # other backend stopped this one's stack and started that one's, and the next test back
        # again (13-35 s each on 2 cores, several times a session). Kept in `session_stacks`,
        # each backend's stack runs until the session ends.
        key = object()

        @pytest.fixture(scope="session", params=params)  # type: ignore[call-overload]
        def _kept(request: Any, session_stacks: KeptStacks, backends: Any,
                  tmp_path_factory: Any) -> Stack:  # fmt: skip
            param = request.param
            return session_stacks.enter(
                (key, param), lambda: started(param, backends, tmp_path_factory)
            )

        return _kept

    @pytest.fixture(scope=scope, params=params)  # type: ignore[call-overload]
    def _stack(request: Any, backends: Any, tmp_path_factory: Any) -> Iterator[Stack]:
        with started(request.param, backends, tmp_path_factory) as running:
            yield running

    return _stack


class KeptStacks:
    """Stacks kept for the whole session (the `session_stacks` fixture), by key: each started on
    first use, all stopped when the session ends."""

    def __init__(self) -> None:
        self._stacks: dict[object, Stack] = {}
        self._exit = ExitStack()

    def __enter__(self) -> KeptStacks:
        return self

    def __exit__(self, *_: object) -> None:
        self._exit.close()

    def enter(self, key: object, start: Callable[[], AbstractContextManager[Stack]]) -> Stack:
        if key not in self._stacks:
            self._stacks[key] = self._exit.enter_context(start())
        return self._stacks[key]

"""`glidepath up` as a user runs it: one command serves the API with an embedded worker, and
Ctrl-C (SIGINT to the terminal's process group) or SIGTERM to it alone (`docker stop`, systemd)
stops both."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path

import httpx
import pytest

from tests.support.stack import die_with_parent, free_port, wait_for

pytestmark = pytest.mark.integration


def _group_alive(pgid: int) -> bool:
    try:
        os.killpg(pgid, 0)
        return True
    except ProcessLookupError:
        return False


def trains(url: str, logs: Callable[[], str]) -> None:
    """A 3-epoch run submitted to `up` succeeds: its API and its embedded worker both serve."""
    spec = {"dataset": "iris", "epochs": 3, "base_lr": 0.1, "batch_size": 32}
    # A long timeout: the first POST loads the dataset in a process that just started, on a
    # machine the rest of the suite keeps busy (httpx's default 5 s was exceeded there).
    with httpx.Client(base_url=url, timeout=60) as c:
        exp_id = c.post("/v1/experiments", json=spec).json()["id"]
        wait_for(lambda: c.get(f"/v1/experiments/{exp_id}").json()["status"]
                 == "succeeded", 60, logs)  # fmt: skip


@pytest.mark.parametrize("stop", ["ctrl-c", "sigterm"])
def test_up_trains_and_stopping_it_stops_api_and_worker(tmp_path: Path, stop: str) -> None:
    port = free_port()
    env = {k: v for k, v in os.environ.items() if not k.startswith("GLIDEPATH_")}
    env["GLIDEPATH_DATA_DIR"] = str(tmp_path / "data")
    env["OMP_NUM_THREADS"] = "1"  # as every stack the tests start (tests/support/stack.py)
    log = (tmp_path / "up.log").open("wb")
    proc = subprocess.Popen(
        [sys.executable, "-m", "service.cli", "up", "--port", str(port)],
        env=env,
        stdout=log,
        stderr=subprocess.STDOUT,
        start_new_session=True,
        preexec_fn=die_with_parent,
    )
    url = f"http://127.0.0.1:{port}"
    logs = lambda: (tmp_path / "up.log").read_text()[-3000:]  # noqa: E731
    try:

        def ready() -> bool:
            try:
                return httpx.get(f"{url}/readyz", timeout=2).status_code == 200
            except httpx.HTTPError:
                return False

        wait_for(ready, 60, logs)
        if stop == "sigterm":  # one variant trains; both stop (what differs is the signal)
            trains(url, logs)
        assert (tmp_path / "data" / "glidepath.db").exists()  # SQLite under DATA_DIR

        if stop == "ctrl-c":
            os.killpg(proc.pid, signal.SIGINT)  # what Ctrl-C in a terminal does
        else:
            os.kill(proc.pid, signal.SIGTERM)  # `docker stop`: the main process only
        # Within `docker stop`'s 10 s grace (then SIGKILL): the worker took 6-9 s to stop here
        # before its idle wait for a message was shortened and its exit skipped the last GC.
        assert proc.wait(timeout=10) == 0, logs()
        deadline = time.monotonic() + 10
        while _group_alive(proc.pid) and time.monotonic() < deadline:
            time.sleep(0.1)
        assert not _group_alive(proc.pid), "the embedded worker outlived `glidepath up`"
    finally:
        if _group_alive(proc.pid):
            os.killpg(proc.pid, signal.SIGKILL)
        log.close()

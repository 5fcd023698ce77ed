"""The `--gpus` supervisor with real processes: one child per GPU, each with its own
CUDA_VISIBLE_DEVICES and the gpu/auto queues, all stopped by one SIGTERM. (On this CPU-only
machine the children train on the CPU; the process layout is what is under test.)"""

from __future__ import annotations

import signal
import subprocess
import sys
from pathlib import Path

import pytest
import torch

from tests.support.backends import Backends
from tests.support.stack import die_with_parent, start_stack, wait_for

pytestmark = pytest.mark.integration

# What `glidepath worker --gpus 0,1` runs on a machine with two GPUs.
SUPERVISE = (
    "from worker.gpus import plan, supervise; import logging, sys; "
    "logging.basicConfig(level='INFO'); sys.exit(supervise(plan('0,1', available=2)))"
)


def _environ(pid: int) -> dict[str, str]:
    raw = Path(f"/proc/{pid}/environ").read_bytes().split(b"\0")
    return dict(item.decode().split("=", 1) for item in raw if b"=" in item)


def _children(pid: int) -> list[int]:
    out = subprocess.run(["pgrep", "-P", str(pid)], capture_output=True, text=True).stdout
    return [int(x) for x in out.split()]


def test_one_worker_per_gpu_and_sigterm_stops_all(backends: Backends, tmp_path: Path) -> None:
    with backends.backend("embedded", tmp_path) as backend, \
            start_stack(backend, tmp_path / "logs", workers=0) as stack:  # fmt: skip
        log = (tmp_path / "supervisor.log").open("wb")
        sup = subprocess.Popen([sys.executable, "-c", SUPERVISE], env=backend.env(), stdout=log,
                               stderr=subprocess.STDOUT, preexec_fn=die_with_parent)  # fmt: skip
        try:
            wait_for(lambda: len(_children(sup.pid)) == 2, 30)
            kids = _children(sup.pid)
            assert sorted(_environ(k)["CUDA_VISIBLE_DEVICES"] for k in kids) == ["0", "1"]
            with stack.client() as c:
                exp_id = c.post("/v1/experiments", json={"dataset": "iris", "epochs": 2}).json()[
                    "id"
                ]
                assert stack.wait_final(exp_id, timeout=60)["status"] == "succeeded"
            sup.send_signal(signal.SIGTERM)
            assert sup.wait(timeout=30) == 0
            wait_for(lambda: not any(Path(f"/proc/{k}").exists() for k in kids), 10)
        finally:
            if sup.poll() is None:
                sup.kill()
            log.close()
        text = (tmp_path / "supervisor.log").read_text()
        assert "gpu0@" in text and "gpu1@" in text
        assert "auto" in text and "gpu" in text


@pytest.mark.skipif(torch.cuda.is_available(), reason="this machine has a GPU")
def test_cli_refuses_gpus_on_a_machine_without_them() -> None:
    from typer.testing import CliRunner

    from service.cli import app

    result = CliRunner().invoke(app, ["worker", "--gpus", "all"])
    assert result.exit_code == 2
    assert "no CUDA device" in result.output

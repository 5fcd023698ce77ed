"""`glidepath worker --gpus`: one worker process per GPU.

Each child is a fresh interpreter (fork + exec), sees exactly one GPU through
CUDA_VISIBLE_DEVICES, runs the solo pool (one run at a time) and consumes the `gpu` and `auto`
queues. The parent only counts devices and supervises: it never runs a model, and no CUDA state
can leak into a child because none is inherited across exec.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
from dataclasses import dataclass
from types import FrameType

from service.kit.logging import get_logger

log = get_logger(__name__)

GPU_QUEUES = "gpu,auto"


@dataclass(frozen=True)
class ChildPlan:
    name: str
    gpu: int
    queues: str

    def argv(self) -> list[str]:
        return [sys.executable, "-m", "service.cli", "worker", "--gpus", "none",
                "--queues", self.queues, "--name", self.name]  # fmt: skip

    def env(self) -> dict[str, str]:
        return {**os.environ, "CUDA_VISIBLE_DEVICES": str(self.gpu)}


def visible_gpu_count() -> int:
    import torch  # counting devices here is safe: children are exec'd, nothing is inherited

    return int(torch.cuda.device_count())


def plan(gpus: str, available: int) -> list[ChildPlan]:
    """Children for `--gpus` ("auto", "all", "none" or ids like "0,1"); [] means one CPU worker
    in this process. Raises ValueError with a message for the user."""
    gpus = gpus.strip().lower()
    if gpus == "none" or (gpus == "auto" and available == 0):
        return []
    if gpus in ("all", "auto"):
        if available == 0:
            raise ValueError("--gpus all: no CUDA device is visible")
        ids = list(range(available))
    else:
        try:
            ids = [int(part) for part in gpus.split(",") if part.strip()]
        except ValueError:
            raise ValueError(f"--gpus {gpus!r}: expected all, none or ids such as 0,1") from None
        bad = [i for i in ids if i < 0 or i >= available]
        if not ids or bad or len(set(ids)) != len(ids):
            raise ValueError(f"--gpus {gpus!r}: {available} CUDA device(s) visible; ids must be "
                             f"distinct and in 0..{available - 1}")  # fmt: skip
    return [ChildPlan(name=f"gpu{i}@%h", gpu=i, queues=GPU_QUEUES) for i in ids]


def supervise(children: list[ChildPlan]) -> int:
    """Start the children, forward SIGTERM/SIGINT to them (each hands its run back), and wait.
    Returns the first non-zero exit code, or 0."""
    procs = [subprocess.Popen(c.argv(), env=c.env()) for c in children]
    started = [f"{c.name} (pid {p.pid}, GPU {c.gpu})" for c, p in zip(children, procs, strict=True)]
    log.info("gpu_workers_started", workers=started)

    def forward(signum: int, _frame: FrameType | None) -> None:
        for p in procs:
            if p.poll() is None:
                p.send_signal(signum)

    for sig in (signal.SIGTERM, signal.SIGINT):
        signal.signal(sig, forward)
    codes = [p.wait() for p in procs]
    return next((c for c in codes if c), 0)

"""The example plugin package (examples/plugin) installed the way a user installs one, with pip,
into a folder of its own: a process with that folder on its PYTHONPATH (a worker) has the
plugin; the test process and the API do not, unless a test puts it on sys.path."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
EXAMPLE = ROOT / "examples" / "plugin"


def install(target: Path) -> Path:
    """pip-install examples/plugin into `target` (no dependencies: torch and numpy are here)."""
    subprocess.run(
        [sys.executable, "-m", "pip", "install", "--quiet", "--no-deps", "--no-build-isolation",
         "--no-cache-dir", "--target", str(target), str(EXAMPLE)],
        check=True,
        capture_output=True,
    )  # fmt: skip
    return target

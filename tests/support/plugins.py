"""The example plugin package (examples/plugin) installed the way a user installs one, with pip,
into a folder of its own: a process with that folder on its PYTHONPATH (a worker) has the
plugin; the test process and the API do not, unless a test puts it on sys.path."""

from __future__ import annotations

import importlib
import subprocess
import sys
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from worker.engine import plugins as engine_plugins
from worker.runs import registry
from worker.runs.registry import Registration

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


@contextmanager
def offered_here(plugin_path: Path) -> Iterator[Registration]:
    """This test process as a worker with the plugin installed, registered in the registry of
    the database `settings` points at (the `client` fixture's)."""
    sys.path.insert(0, str(plugin_path))
    importlib.invalidate_caches()
    engine_plugins.installed.cache_clear()
    try:
        reg = registry.Registration(registry.queues(["auto", "cpu"]))
        reg.register()
        yield reg
    finally:
        sys.path.remove(str(plugin_path))
        engine_plugins.installed.cache_clear()

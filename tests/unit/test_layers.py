"""The one-way layers (ARCHITECTURE.md), checked as a user of the modules would see them: what a
fresh interpreter has loaded after importing each layer, and the import-linter contracts."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
SERVER_SIDE = [
    "sqlalchemy",
    "fastapi",
    "starlette",
    "celery",
    "kombu",
    "redis",
    "psycopg",
    "alembic",
]


def loaded_after(*modules: str) -> set[str]:
    """Top-level packages a fresh interpreter holds after importing `modules`."""
    code = (
        "import importlib, json, sys\n"
        f"for m in {list(modules)!r}: importlib.import_module(m)\n"
        "print(json.dumps(sorted({m.split('.')[0] for m in sys.modules})))"
    )
    out = subprocess.run([sys.executable, "-c", code], cwd=ROOT, capture_output=True, text=True,
                         check=True)  # fmt: skip
    return set(json.loads(out.stdout))


def test_the_training_core_loads_no_web_database_or_queue_library() -> None:
    core = ["service.training." + m for m in (
        "spec", "checks", "catalog", "schedule", "decisions", "split", "range_suggest",
        "range_spec", "hypergradient", "status", "datasets", "errors",
    )]  # fmt: skip
    loaded = loaded_after(*core)
    assert "torch" in loaded and "pydantic" in loaded
    assert loaded.isdisjoint(SERVER_SIDE), loaded & set(SERVER_SIDE)
    assert "worker" not in loaded


def test_the_engine_loads_no_database_and_the_service_never_the_worker() -> None:
    engine = loaded_after("worker.engine.program", "worker.engine.range_test")
    assert engine.isdisjoint(SERVER_SIDE), engine & set(SERVER_SIDE)
    assert "worker" not in loaded_after("service.app", "service.housekeeping")


def test_the_epoch_writer_loads_no_torch_nor_web_framework() -> None:
    """Each worker starts a writer process (worker/runs/epoch_writer.py), a fresh interpreter
    that only writes rows. With torch (which the spec module brought, for one default) it took
    4.0 s to start here and 254 MB; without, 1.2 s and 63 MB."""
    loaded = loaded_after("worker.runs.epoch_writer")
    assert "sqlalchemy" in loaded
    assert loaded.isdisjoint(["torch", "numpy", "fastapi", "starlette", "celery"]), loaded


def test_the_http_client_needs_no_server_side_code() -> None:
    loaded = loaded_after("service.client")
    assert loaded.isdisjoint([*SERVER_SIDE, "torch", "worker"])


@pytest.mark.timeout(120)
def test_import_linter_contracts_hold() -> None:
    """Lazy (function-level) imports included: no service → worker edge outside the CLI that
    starts processes, no cycle, the worker's layers in order."""
    lint = Path(sys.executable).parent / "lint-imports"
    result = subprocess.run([str(lint), "--no-cache"], cwd=ROOT, capture_output=True, text=True)
    assert result.returncode == 0, result.stdout[-4000:]

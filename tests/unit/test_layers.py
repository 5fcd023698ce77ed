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

"""Fixtures for both stacks: the embedded default (SQLite + file-system broker) and the real
PostgreSQL + Redis on this machine. Under CI=true the real-stack tests fail instead of skipping
when a server is missing."""

from __future__ import annotations

import os
import tempfile

# Settings are read at import: isolate every test run before any service module is imported.
os.environ["GLIDEPATH_DATA_DIR"] = tempfile.mkdtemp(prefix="glidepath-test-")
for _name in ("GLIDEPATH_DATABASE_URL", "GLIDEPATH_BROKER_URL", "GLIDEPATH_API_TOKENS"):
    os.environ.pop(_name, None)

import uuid  # noqa: E402
from collections.abc import Iterator  # noqa: E402
from pathlib import Path  # noqa: E402

import pytest  # noqa: E402
from fastapi.testclient import TestClient  # noqa: E402
from sqlalchemy import create_engine, text  # noqa: E402

from tests.support.stack import Backend, Stack, start_stack  # noqa: E402

CI = os.environ.get("CI", "").lower() == "true"
PG_HOST = os.environ.get("GLIDEPATH_TEST_PG", "postgresql+psycopg://postgres@127.0.0.1:5432")
REDIS_URL = os.environ.get("GLIDEPATH_TEST_REDIS", "redis://127.0.0.1:6379/11")


def _require(ok: bool, what: str) -> None:
    if ok:
        return
    if CI:
        pytest.fail(f"{what} is required under CI=true (see .ci/run)")
    pytest.skip(f"{what} is not reachable")


def _pg_ok() -> bool:
    try:
        engine = create_engine(f"{PG_HOST}/postgres", connect_args={"connect_timeout": 2})
        with engine.connect() as conn:
            conn.execute(text("SELECT 1"))
        engine.dispose()
        return True
    except Exception:
        return False


def _redis_ok() -> bool:
    import redis

    try:
        return bool(redis.Redis.from_url(REDIS_URL, socket_timeout=2).ping())
    except Exception:
        return False


def create_pg_database() -> str:
    name = f"glidepath_test_{uuid.uuid4().hex[:10]}"
    admin = create_engine(f"{PG_HOST}/postgres", isolation_level="AUTOCOMMIT")
    with admin.connect() as conn:
        conn.execute(text(f'CREATE DATABASE "{name}"'))
    admin.dispose()
    return f"{PG_HOST}/{name}"


def drop_pg_database(url: str) -> None:
    name = url.rsplit("/", 1)[1]
    admin = create_engine(f"{PG_HOST}/postgres", isolation_level="AUTOCOMMIT")
    with admin.connect() as conn:
        conn.execute(text(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))
    admin.dispose()


@pytest.fixture
def pg_url() -> Iterator[str]:
    """A fresh, empty PostgreSQL database for one test."""
    _require(_pg_ok(), "PostgreSQL on 127.0.0.1:5432")
    url = create_pg_database()
    yield url
    drop_pg_database(url)


@pytest.fixture
def redis_url() -> str:
    """A Redis database emptied for this test (stale messages would wake the wrong runs)."""
    _require(_redis_ok(), "Redis on 127.0.0.1:6379")
    import redis

    redis.Redis.from_url(REDIS_URL).flushdb()
    return REDIS_URL


@pytest.fixture(params=["embedded", pytest.param("postgres", marks=pytest.mark.postgres)])
def backend(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[Backend]:
    """Database + broker URLs for each stack; the embedded one lives in tmp_path."""
    data_dir = tmp_path / "data"
    if request.param == "embedded":
        yield Backend("embedded", f"sqlite:///{data_dir / 'glidepath.db'}", "", data_dir)
        return
    pg = request.getfixturevalue("pg_url")
    broker = request.getfixturevalue("redis_url")
    yield Backend("postgres", pg, broker, data_dir)


@pytest.fixture
def stack(backend: Backend, tmp_path: Path) -> Iterator[Stack]:
    """A real API server and a real Celery worker, as separate processes, on `backend`."""
    with start_stack(backend, tmp_path / "logs") as running:
        yield running


@pytest.fixture
def client(backend: Backend) -> Iterator[TestClient]:
    """The API in-process (FastAPI's TestClient) on `backend`'s database, migrated to head."""
    from service.app import create_app
    from service.config import settings
    from service.kit import db, migrate

    backend.data_dir.mkdir(parents=True, exist_ok=True)
    migrate.upgrade(backend.database_url)
    saved = settings.database_url, settings.data_dir
    settings.database_url, settings.data_dir = backend.database_url, backend.data_dir
    db.get_engine.cache_clear()
    db.get_sessionmaker.cache_clear()
    try:
        with TestClient(create_app()) as test_client:
            yield test_client
    finally:
        db.get_engine().dispose()
        db.get_engine.cache_clear()
        db.get_sessionmaker.cache_clear()
        settings.database_url, settings.data_dir = saved

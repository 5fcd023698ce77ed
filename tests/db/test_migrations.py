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


def test_ids_are_never_handed_out_again_after_upgrading(blank_backend: Backend) -> None:
    """A database from before the AUTOINCREMENT revision keeps every row, child and key through
    the tables' rebuild on SQLite, and from then on a deleted newest run's, sweep's, dataset's
    or token's id is not given to the next one (scripts and links holding it stay dangling
    rather than pointing at another run)."""
    url = blank_backend.database_url
    migrate.upgrade(url, "e5a8c3d91b20")  # the revision before
    now = "CURRENT_TIMESTAMP"
    engine = make_engine(url)
    try:
        with engine.begin() as conn:
            conn.execute(text(
                "INSERT INTO sweeps (name, strategy, request, metric, mode, stage, status, "
                f"created_at) VALUES ('s', 'grid', '{{}}', 'val_loss', 'min', 1, 'running', {now})"
            ))  # fmt: skip
            conn.execute(text(
                "INSERT INTO experiments (name, spec, status, queue, created_at, updated_at, "
                "attempt, epochs_run, cancel_requested, kind, sweep_id) VALUES " + ", ".join(
                    f"('r{i}', '{{}}', 'succeeded', 'auto', {now}, {now}, 1, 1, false, 'train', "
                    "(SELECT max(id) FROM sweeps))" for i in range(3)
                )))  # fmt: skip
            conn.execute(text(
                "INSERT INTO epoch_metrics (experiment_id, epoch, lr, duration_s, attempt, "
                f"created_at) SELECT id, 1, 0.1, 0.01, 1, {now} FROM experiments"
            ))  # fmt: skip
            conn.execute(text(
                "INSERT INTO datasets (name, task, n_samples, feature_shape, path, source, "
                f"created_at) VALUES ('d', 'regression', 10, '[2]', 'p', '{{}}', {now})"
            ))  # fmt: skip
            conn.execute(text(
                "INSERT INTO tokens (name, role, token_hash, created_at) "
                f"VALUES ('t', 'read', 'h', {now})"
            ))  # fmt: skip
        migrate.upgrade(url)
        newest = {t: "SELECT max(id) FROM " + t for t in ("experiments", "sweeps", "datasets",
                                                          "tokens")}  # fmt: skip
        with engine.begin() as conn:
            kept = conn.execute(text(
                "SELECT count(*), count(sweep_id), (SELECT count(*) FROM epoch_metrics) "
                "FROM experiments"
            )).one()  # fmt: skip
            assert tuple(kept) == (3, 3, 3)  # rows, their sweep, their epochs
            ledger = "SELECT status, sum(delta) FROM run_status_changes GROUP BY status"
            assert dict(conn.execute(text(ledger)).all()) == {"succeeded": 3}
            before = {t: conn.execute(text(q)).scalar_one() for t, q in newest.items()}
            for table in newest:
                conn.execute(text(f"DELETE FROM {table} WHERE id = {before[table]}"))
            # The deleted run's epochs went with it: the foreign keys are enforced again.
            assert conn.execute(text("SELECT count(*) FROM epoch_metrics")).scalar_one() == 2
            conn.execute(text(
                "INSERT INTO experiments (name, spec, status, queue, created_at, updated_at, "
                f"attempt, epochs_run, cancel_requested, kind) VALUES ('new', '{{}}', "
                f"'queued', 'auto', {now}, {now}, 0, 0, false, 'train')"
            ))  # fmt: skip
            conn.execute(text(
                "INSERT INTO sweeps (name, strategy, request, metric, mode, stage, status, "
                f"created_at) VALUES ('s2', 'grid', '{{}}', 'val_loss', 'min', 1, 'running', {now})"
            ))  # fmt: skip
            conn.execute(text(
                "INSERT INTO datasets (name, task, n_samples, feature_shape, path, source, "
                f"created_at) VALUES ('d2', 'regression', 10, '[2]', 'p', '{{}}', {now})"
            ))  # fmt: skip
            conn.execute(text(
                "INSERT INTO tokens (name, role, token_hash, created_at) "
                f"VALUES ('t2', 'read', 'h2', {now})"
            ))  # fmt: skip
            after = {t: conn.execute(text(q)).scalar_one() for t, q in newest.items()}
            assert dict(conn.execute(text(ledger)).all()) == {"succeeded": 2, "queued": 1}
        assert {t: after[t] > before[t] for t in newest} == dict.fromkeys(newest, True)
    finally:
        engine.dispose()

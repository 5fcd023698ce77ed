"""Migrations run from empty to head and back on SQLite and PostgreSQL, and match the models."""

from __future__ import annotations

from alembic.autogenerate import compare_metadata
from alembic.migration import MigrationContext
from sqlalchemy import inspect

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

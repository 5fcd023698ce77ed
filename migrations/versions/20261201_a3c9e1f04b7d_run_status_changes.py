"""run status changes: the ledger /metrics counts runs by status from, kept by triggers

Revision ID: a3c9e1f04b7d
Revises: 257d3f195b15
Create Date: 2026-12-01 04:10:00

Triggers on `experiments` append to `run_status_changes` whenever a run is inserted, deleted or
changes status (service/experiments/models.py, RunStatusChange, says why). The ledger starts with the runs already
stored, counted in the same transaction that creates the triggers: on PostgreSQL CREATE TRIGGER
locks `experiments` against writes until the commit, so no change falls between the two.

On SQLite a later migration that rebuilds `experiments` in batch mode (copy, drop, rename) drops
these triggers with the old table: such a migration must create them again (`create_triggers`).
tests/db/test_run_status_ledger.py checks they exist at head on both databases.
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op


revision: str = "a3c9e1f04b7d"
down_revision: str | None = "257d3f195b15"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

# PostgreSQL: an INSERT or DELETE of many runs (a batch, a sweep) writes one row per status per
# statement, from its transition table. An UPDATE fires per row, and only when it sets `status`
# to a new value: a worker's per-epoch progress UPDATE does not run the trigger at all (a column
# list cannot be combined with a transition table).
POSTGRES = [
    """CREATE FUNCTION run_status_added() RETURNS trigger LANGUAGE plpgsql AS $$
    BEGIN
        INSERT INTO run_status_changes (status, delta)
            SELECT status, count(*) FROM added GROUP BY status;
        RETURN NULL;
    END $$""",
    """CREATE FUNCTION run_status_removed() RETURNS trigger LANGUAGE plpgsql AS $$
    BEGIN
        INSERT INTO run_status_changes (status, delta)
            SELECT status, -count(*) FROM removed GROUP BY status;
        RETURN NULL;
    END $$""",
    """CREATE FUNCTION run_status_changed() RETURNS trigger LANGUAGE plpgsql AS $$
    BEGIN
        INSERT INTO run_status_changes (status, delta) VALUES (OLD.status, -1), (NEW.status, 1);
        RETURN NULL;
    END $$""",
    """CREATE TRIGGER experiments_status_insert AFTER INSERT ON experiments
    REFERENCING NEW TABLE AS added FOR EACH STATEMENT EXECUTE FUNCTION run_status_added()""",
    """CREATE TRIGGER experiments_status_delete AFTER DELETE ON experiments
    REFERENCING OLD TABLE AS removed FOR EACH STATEMENT EXECUTE FUNCTION run_status_removed()""",
    """CREATE TRIGGER experiments_status_update AFTER UPDATE OF status ON experiments
    FOR EACH ROW WHEN (OLD.status IS DISTINCT FROM NEW.status)
    EXECUTE FUNCTION run_status_changed()""",
]
POSTGRES_DROP = [
    "DROP TRIGGER IF EXISTS experiments_status_insert ON experiments",
    "DROP TRIGGER IF EXISTS experiments_status_delete ON experiments",
    "DROP TRIGGER IF EXISTS experiments_status_update ON experiments",
    "DROP FUNCTION IF EXISTS run_status_added()",
    "DROP FUNCTION IF EXISTS run_status_removed()",
    "DROP FUNCTION IF EXISTS run_status_changed()",
]

# SQLite has row triggers only.
SQLITE = [
    """CREATE TRIGGER experiments_status_insert AFTER INSERT ON experiments BEGIN
        INSERT INTO run_status_changes (status, delta) VALUES (NEW.status, 1);
    END""",
    """CREATE TRIGGER experiments_status_delete AFTER DELETE ON experiments BEGIN
        INSERT INTO run_status_changes (status, delta) VALUES (OLD.status, -1);
    END""",
    """CREATE TRIGGER experiments_status_update AFTER UPDATE OF status ON experiments
    WHEN OLD.status IS NOT NEW.status BEGIN
        INSERT INTO run_status_changes (status, delta) VALUES (OLD.status, -1);
        INSERT INTO run_status_changes (status, delta) VALUES (NEW.status, 1);
    END""",
]
SQLITE_DROP = [
    "DROP TRIGGER IF EXISTS experiments_status_insert",
    "DROP TRIGGER IF EXISTS experiments_status_delete",
    "DROP TRIGGER IF EXISTS experiments_status_update",
]


def create_triggers() -> None:
    for statement in POSTGRES if op.get_bind().dialect.name == "postgresql" else SQLITE:
        op.execute(statement)


def drop_triggers() -> None:
    for statement in POSTGRES_DROP if op.get_bind().dialect.name == "postgresql" else SQLITE_DROP:
        op.execute(statement)


def upgrade() -> None:
    op.create_table(
        "run_status_changes",
        sa.Column("id", sa.Integer(), autoincrement=True, nullable=False),
        sa.Column("status", sa.String(length=20), nullable=False),
        sa.Column("delta", sa.Integer(), nullable=False),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_run_status_changes")),
    )
    create_triggers()
    op.execute(
        "INSERT INTO run_status_changes (status, delta) "
        "SELECT status, count(*) FROM experiments GROUP BY status"
    )


def downgrade() -> None:
    drop_triggers()
    op.drop_table("run_status_changes")

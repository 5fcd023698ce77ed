"""ids never reused on SQLite: experiments, sweeps, datasets and tokens get AUTOINCREMENT

Revision ID: 7c41d2e9a0f3
Revises: e5a8c3d91b20
Create Date: 2026-12-02 18:40:00

An `INTEGER PRIMARY KEY` without AUTOINCREMENT takes max(id) + 1, so on SQLite the next run
created after deleting the newest one got the deleted run's id: links, bookmarks and scripts
holding the old id silently pointed at another run, and an API process's metrics cache (keyed by
id) served the deleted run's rows under the new one. With AUTOINCREMENT SQLite never hands out
an id again, as PostgreSQL's sequences never do; PostgreSQL needs nothing here.

SQLite cannot change a key in place: each table is rebuilt in batch mode (copy, drop, rename).
migrations/env.py turns foreign-key enforcement off for the migration, as SQLite's ALTER TABLE
procedure requires (dropping `experiments` with it on would cascade to every run's epochs), and
checks the keys afterwards. The rebuild drops the status ledger's triggers with the old
`experiments`; they are created again from the revision that introduced them.
"""

from collections.abc import Sequence

from alembic import context, op

revision: str = "7c41d2e9a0f3"
down_revision: str | None = "e5a8c3d91b20"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

TABLES = ("experiments", "sweeps", "datasets", "tokens")
LEDGER = "a3c9e1f04b7d"  # run_status_changes: its triggers live on `experiments`


def upgrade() -> None:
    if op.get_bind().dialect.name != "sqlite":
        return
    for table in TABLES:
        with op.batch_alter_table(
            table, recreate="always", table_kwargs={"sqlite_autoincrement": True}
        ):
            pass
    ledger = context.script.get_revision(LEDGER)
    assert ledger is not None and ledger.module is not None
    ledger.module.create_triggers()


def downgrade() -> None:
    # Nothing to undo: AUTOINCREMENT keys are what the earlier revisions' code expects too.
    pass

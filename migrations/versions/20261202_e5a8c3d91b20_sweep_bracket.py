"""a hyperband trial's bracket, stored when its stage's runs are created

Revision ID: e5a8c3d91b20
Revises: a3c9e1f04b7d
Create Date: 2026-12-02 08:20:00

A trial's bracket was drawn from its index among its stage's runs each time the pruner asked, so
deleting an ended run of a running sweep moved every later trial's index, and with it the
groups its rungs are decided over. Stored once, nothing moves it, and a pause counts the runs
of its own bracket instead of reading the whole sweep. Runs of sweeps created before this
revision have NULL: the pruner draws theirs as before and stores them the first time it asks
(service/sweeps/pruning.py). ADD COLUMN alone: SQLite does not rebuild the table (the status
ledger's triggers stay).
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "e5a8c3d91b20"
down_revision: str | None = "a3c9e1f04b7d"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.add_column("experiments", sa.Column("sweep_bracket", sa.Integer(), nullable=True))


def downgrade() -> None:
    # Not batch mode: on SQLite (3.35+) a plain DROP COLUMN keeps the table and its triggers.
    op.drop_column("experiments", "sweep_bracket")

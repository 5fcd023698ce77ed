"""a pruned run's stop as one of its own decisions (kind `pruned`)

Revision ID: b81f4c2d6e90
Revises: 7c41d2e9a0f3
Create Date: 2026-12-03 12:10:00

A sweep pruner's stop was stored only as the sweep's (`sweep_decisions`), so a pruned run's
GET /v1/experiments/{id}/decisions, compare and events listed no stop at all, though the
contract says a run's decisions include "the stop, with its reason". From this revision the
pruner stores it as the run's decision too (service/sweeps/pruning.py); this copies the stops of
the runs pruned before it, with the metric their sweep's pruner judged them by. Data only: no
table changes, so SQLite keeps the status ledger's triggers.
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "b81f4c2d6e90"
down_revision: str | None = "7c41d2e9a0f3"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

_stops = sa.text(
    "SELECT d.experiment_id, d.epoch, d.value, d.reason, d.created_at, s.request, s.metric"
    " FROM sweep_decisions d JOIN experiments e ON e.id = d.experiment_id"
    " JOIN sweeps s ON s.id = d.sweep_id"
    " WHERE d.decision = 'stop' AND e.status = 'pruned'"
    " AND NOT EXISTS (SELECT 1 FROM decisions x WHERE x.experiment_id = d.experiment_id"
    " AND x.epoch = d.epoch AND x.kind = 'pruned')"
).columns(request=sa.JSON())

_decisions = sa.table(
    "decisions",
    sa.column("experiment_id", sa.Integer()),
    sa.column("epoch", sa.Integer()),
    sa.column("kind", sa.String()),
    sa.column("monitor", sa.String()),
    sa.column("value", sa.Float()),
    sa.column("reason", sa.Text()),
    sa.column("created_at", sa.DateTime(timezone=True)),
)


def upgrade() -> None:
    rows = []
    for r in op.get_bind().execute(_stops):
        pruner = (r.request or {}).get("pruner") or {}
        rows.append({"experiment_id": r.experiment_id, "epoch": r.epoch, "kind": "pruned",
                     "monitor": pruner.get("metric") or r.metric, "value": r.value,
                     "reason": r.reason, "created_at": r.created_at})  # fmt: skip
    if rows:
        op.bulk_insert(_decisions, rows)


def downgrade() -> None:
    op.execute("DELETE FROM decisions WHERE kind = 'pruned'")

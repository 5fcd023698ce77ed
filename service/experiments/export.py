"""GET /v1/experiments/{id}/metrics.csv: a run's epochs as CSV for a spreadsheet or pandas, one
row per stored epoch with every metric the run records. (The JSON export is the metrics page.)"""

from __future__ import annotations

import csv
import io

from sqlalchemy.orm import Session

from service.experiments import service
from service.experiments.repository import ExperimentRepository

MEDIA_TYPE = "text/csv"  # Starlette adds "; charset=utf-8" to a text type
COLUMNS = ("epoch", "lr", "lr_min", "lr_max", "train_loss", "val_loss", "val_accuracy",
           "val_mae", "duration_s", "decision", "skipped_steps")  # fmt: skip
# Left out when no row has them: a run counts skipped steps only in fp16, and measures accuracy
# or MAE, not both (a run with neither, diverged at its first epoch, keeps both columns, as the
# metrics page keeps both keys: `unset_keys`).
_ONLY_WHEN_SET = ("val_accuracy", "val_mae", "skipped_steps")


def filename(experiment_id: int) -> str:
    return f"experiment-{experiment_id}-metrics.csv"


def metrics_csv(session: Session, experiment_id: int) -> str:
    """The header, then each epoch in order; an empty cell where a value is null (a non-finite
    float is written as Python spells it: nan, inf)."""
    service.get(session, experiment_id)  # 404 for no such run
    rows = ExperimentRepository(session).epochs(experiment_id)
    some = {c: any(getattr(r, c) is not None for r in rows) for c in _ONLY_WHEN_SET}
    if rows and not some["val_accuracy"] and not some["val_mae"]:
        some["val_accuracy"] = some["val_mae"] = True
    columns = [c for c in COLUMNS if some.get(c, True)]
    out = io.StringIO()
    writer = csv.writer(out, lineterminator="\n")
    writer.writerow(columns)
    for r in rows:
        writer.writerow(["" if (v := getattr(r, c)) is None else v for c in columns])
    return out.getvalue()

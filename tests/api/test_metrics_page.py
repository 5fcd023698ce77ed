"""The metrics poll's fast path (service.metrics_json: plain rows dumped once) answers exactly
what the page's model (MetricsPage of EpochOut) says, on each backend: optional keys left out
when null, non-finite numbers as null, the cursor, pages and limits, a 404 in the error shape."""

from __future__ import annotations

import json
import math

from fastapi.testclient import TestClient

from service.experiments import service
from service.experiments.models import EpochRow
from service.kit.db import session_scope
from tests.api.test_experiments_api import SPEC


def test_the_poll_answers_what_the_page_model_says(client: TestClient) -> None:
    exp_id = client.post("/v1/experiments", json=SPEC).json()["id"]
    odd = {"train_loss": math.inf, "val_loss": -math.inf, "val_mae": 0.25, "skipped_steps": 3,
           "decision": "reduce_lr", "lr_min": None, "lr_max": None,
           "val_accuracy": None}  # fmt: skip
    with session_scope() as session:
        for epoch in range(1, 8):
            values = {"train_loss": 0.5 / epoch, "val_loss": 0.4, "val_accuracy": 0.9,
                      "lr_min": 0.05, "lr_max": 0.1, "decision": None}  # fmt: skip
            session.add(EpochRow(
                experiment_id=exp_id, epoch=epoch, lr=0.1, duration_s=0.01, attempt=1,
                state={"best": 0.4}, **(odd if epoch == 4 else values),
            ))  # fmt: skip
        # A regression epoch that diverged: its NaN MAE (SQLite stores NaN as null) beside no
        # accuracy. The page keeps both keys rather than drop the one the client reads.
        session.add(EpochRow(experiment_id=exp_id, epoch=8, lr=0.1, duration_s=0.01, attempt=1,
                             train_loss=None, val_loss=None, decision="diverged"))  # fmt: skip

    for after, limit in ((0, 1000), (2, 3), (7, 10), (99, 5)):
        r = client.get(f"/v1/experiments/{exp_id}/metrics?after_epoch={after}&limit={limit}")
        assert r.status_code == 200 and r.headers["content-type"] == "application/json"
        with session_scope() as session:
            model = service.metrics(session, exp_id, after, limit).model_dump_json()
        assert r.json() == json.loads(model)
    page = client.get(f"/v1/experiments/{exp_id}/metrics?after_epoch=3&limit=1").json()
    assert page["next_after_epoch"] == 4
    assert page["epochs"] == [{
        "epoch": 4, "lr": 0.1, "lr_min": None, "lr_max": None, "train_loss": None,
        "val_loss": None, "val_mae": 0.25, "duration_s": 0.01, "decision": "reduce_lr",
        "skipped_steps": 3,
    }]  # fmt: skip

    last = client.get(f"/v1/experiments/{exp_id}/metrics?after_epoch=7").json()["epochs"]
    assert [(r["val_accuracy"], r["val_mae"]) for r in last] == [(None, None)]
    assert "skipped_steps" not in last[0]

    r = client.get("/v1/experiments/999999/metrics")
    assert r.status_code == 404
    assert r.json()["detail"][0]["loc"] == ["path", "experiment_id"]

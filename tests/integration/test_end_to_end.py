"""POST → database → broker → a real Celery worker process → epoch rows → polling, through HTTP,
on the embedded default and on PostgreSQL + Redis."""

from __future__ import annotations

from typing import Any

import pytest

from tests.support.stack import Stack

pytestmark = pytest.mark.integration

SPEC: dict[str, Any] = {
    "name": "digits-sgd-warmup",
    "dataset": "digits",
    "split": {"train": 0.8, "val": 0.2, "seed": 0, "stratify": True},
    "model": {"type": "mlp", "hidden": [64]},
    "solver": {"type": "SGD", "params": {"momentum": 0.9, "weight_decay": 0.0005}},
    "base_lr": 0.1,
    "warmup": {"epochs": 3, "start_factor": 0.1},
    "epochs": 8,
    "batch_size": 64,
    "seed": 0,
}


def test_experiment_runs_to_succeeded_and_pages_by_cursor(stack: Stack) -> None:
    with stack.client() as c:
        created = c.post("/v1/experiments", json=SPEC)
        assert created.status_code == 201, created.text
        exp_id = created.json()["id"]
        final = stack.wait_final(exp_id)
        assert final["status"] == "succeeded", stack.logs()
        assert final["epochs_run"] == 8
        assert final["progress"] == {"epochs_run": 8, "epochs": 8, "fraction": 1.0}
        assert final["device"] == "cpu" and final["attempt"] == 1

        everything = c.get(f"/v1/experiments/{exp_id}/metrics", params={"after_epoch": 0}).json()
        rows = everything["epochs"]
        assert [r["epoch"] for r in rows] == list(range(1, 9))
        # Warmup as torch's LinearLR(start_factor=0.1, total_iters=3), stepped per epoch.
        expected = [0.1 * (0.1 + 0.9 * min(e, 3) / 3) for e in range(8)]
        assert [r["lr"] for r in rows] == pytest.approx(expected, rel=1e-12)
        for r in rows:
            assert set(r) == {"epoch", "lr", "train_loss", "val_loss", "val_accuracy",
                              "duration_s", "decision"}  # fmt: skip
            assert r["duration_s"] > 0 and 0 <= r["val_accuracy"] <= 1
        assert rows[-1]["val_accuracy"] > 0.9  # an MLP on digits learns within 8 epochs
        assert rows[-1]["train_loss"] < rows[0]["train_loss"]

        # The cursor: pages of 3 rebuild the same rows, and the last page is empty.
        paged, after = [], 0
        while True:
            page = c.get(f"/v1/experiments/{exp_id}/metrics",
                         params={"after_epoch": after, "limit": 3}).json()  # fmt: skip
            assert page["status"] == "succeeded"
            if not page["epochs"]:
                assert page["next_after_epoch"] == after
                break
            assert len(page["epochs"]) <= 3
            paged += page["epochs"]
            after = page["next_after_epoch"]
        assert paged == rows


def test_same_spec_and_seed_give_identical_metrics(stack: Stack) -> None:
    spec = {**SPEC, "epochs": 3, "warmup": None}
    with stack.client() as c:
        ids = [c.post("/v1/experiments", json=spec).json()["id"] for _ in range(2)]
        for i in ids:
            assert stack.wait_final(i)["status"] == "succeeded"
        a, b = (c.get(f"/v1/experiments/{i}/metrics").json()["epochs"] for i in ids)
    strip = lambda rows: [{k: v for k, v in r.items() if k != "duration_s"} for r in rows]  # noqa: E731
    assert strip(a) == strip(b)

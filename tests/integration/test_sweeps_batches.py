"""Batches and sweeps through real API and worker processes: a batch runs to `finished`, and an
lr_coarse_to_fine sweep launches its fine stage when its coarse runs end (the worker's task moves
the sweep on) and ranks every run."""

from __future__ import annotations

from typing import Any

import pytest

from tests.support.stack import Stack

pytestmark = pytest.mark.integration

BASE: dict[str, Any] = {
    "dataset": "digits",
    "model": {"type": "mlp", "hidden": [32]},
    "solver": {"type": "SGD", "params": {"momentum": 0.9}},
    "epochs": 3,
    "batch_size": 128,
}


# The production stack only (the API tests run batches and sweeps on both backends).
@pytest.mark.postgres
@pytest.mark.parametrize("stack", ["postgres"], indirect=True)
def test_batch_and_coarse_to_fine_sweep_run_to_the_end(stack: Stack) -> None:
    with stack.client() as c:
        batch = c.post(
            "/v1/batches",
            json={"experiments": [{**BASE, "base_lr": lr} for lr in (0.01, 0.1)]},
        )
        assert batch.status_code == 201, batch.text
        r = c.post(
            "/v1/sweeps",
            json={
                "name": "c2f",
                "base": BASE,
                "strategy": "lr_coarse_to_fine",
                "min_lr": 1e-4,
                "max_lr": 1.0,
                "fine_points": 2,
                "metric": "val_accuracy",
            },
        )
        assert r.status_code == 201, r.text
        sweep = stack.wait_sweep(c, r.json()["sweep_id"], timeout=180)
        got = c.get(f"/v1/batches/{batch.json()['batch_id']}").json()
        assert got["status"] == "finished" and got["counts"] == {"succeeded": 2}

    assert sweep["stage"] == 2 and sweep["mode"] == "max"
    coarse = [e for e in sweep["experiments"] if e["stage"] == 1]
    fine = [e for e in sweep["experiments"] if e["stage"] == 2]
    assert [e["params"]["base_lr"] for e in coarse] == [1e-4, 1e-3, 1e-2, 0.1, 1.0]
    assert len(fine) == 2
    # The fine LRs lie strictly inside the decade between the best coarse LR and its better
    # neighbour, as the note says.
    by_lr = {e["params"]["base_lr"]: e for e in coarse}
    best = max(
        (e for e in coarse if e["status"] == "succeeded"),
        key=lambda e: (e["score"], -e["experiment_id"]),
    )
    lr = best["params"]["base_lr"]
    below, above = by_lr.get(lr / 10), by_lr.get(lr * 10)
    scores = {k: e["score"] if e and e["status"] == "succeeded" else None
              for k, e in (("below", below), ("above", above))}  # fmt: skip
    up = scores["below"] is None or (
        scores["above"] is not None and scores["above"] > scores["below"]
    )
    low, high = (lr, lr * 10) if up else (lr / 10, lr)
    assert all(low < e["params"]["base_lr"] < high for e in fine), (lr, fine)
    assert f"best coarse base_lr {lr:g}" in sweep["note"]
    board = sweep["leaderboard"]
    assert len(board) == 7 and board[0]["score"] == max(e["score"] for e in board
                                                         if e["status"] == "succeeded")  # fmt: skip
    assert sweep["best"]["experiment_id"] == board[0]["experiment_id"]
    assert board[0]["score"] > 0.8  # some LR in 1e-4..1 learns digits in 3 epochs

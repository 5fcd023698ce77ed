"""POST → database → broker → a real Celery worker process → epoch rows → polling, through HTTP,
on the embedded default and on PostgreSQL + Redis."""

from __future__ import annotations

import itertools
import re
from typing import Any

import pytest
import torch

from tests.support.artifacts import checkpoint_keys, load_model, store_of
from tests.support.stack import Stack, wait_for

pytestmark = pytest.mark.integration

# `device: auto` runs on CUDA where there is one (the GPU machine), else on the CPU.
EXPECTED_DEVICE = "cuda" if torch.cuda.is_available() else "cpu"

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
        assert final["progress"] == {"epochs_run": 8, "epochs": 8, "fraction": 1.0, "stopped": None}
        assert final["device"] == EXPECTED_DEVICE and final["attempt"] == 1
        # The worker's log has the run's own events (written just after the commit the client
        # saw), not Celery's line per task beside them.
        log = lambda: "".join(p.read_text() for p in stack.log_dir.glob("w*.log"))  # noqa: E731
        wait_for(lambda: re.search(rf"finished .*experiment_id={exp_id}\b", log()) is not None,
                 10, lambda: log()[-2000:])  # fmt: skip
        assert "glidepath.run_experiment[" not in log(), log()[-2000:]

        everything = c.get(f"/v1/experiments/{exp_id}/metrics", params={"after_epoch": 0}).json()
        rows = everything["epochs"]
        assert [r["epoch"] for r in rows] == list(range(1, 9))
        # Warmup as torch's LinearLR(start_factor=0.1, total_iters=3), stepped per epoch.
        expected = [0.1 * (0.1 + 0.9 * min(e, 3) / 3) for e in range(8)]
        assert [r["lr"] for r in rows] == pytest.approx(expected, rel=1e-12)
        for r in rows:
            assert set(r) == {
                "epoch",
                "lr",
                "lr_min",
                "lr_max",
                "train_loss",
                "val_loss",
                "val_accuracy",
                "duration_s",
                "decision",
            }
            assert r["duration_s"] > 0 and 0 <= r["val_accuracy"] <= 1
            assert r["lr_min"] == r["lr_max"] == r["lr"]  # a per-epoch schedule: flat within
        assert rows[-1]["val_accuracy"] > 0.9  # an MLP on digits learns within 8 epochs
        assert rows[-1]["train_loss"] < rows[0]["train_loss"]

        # The cursor: pages of 3 rebuild the same rows, and the last page is empty.
        paged, after = [], 0
        while True:
            page = c.get(
                f"/v1/experiments/{exp_id}/metrics", params={"after_epoch": after, "limit": 3}
            ).json()
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


def test_plateau_and_early_stop_decided_by_worker_match_an_independent_replay(stack: Stack) -> None:
    import torch

    spec = {
        **SPEC,
        "epochs": 30,
        "warmup": {"epochs": 2, "start_factor": 0.5},
        # threshold 0.5 (rel): only a halving of val_loss counts as better, so LR cuts come fast.
        "scheduler": {
            "type": "ReduceLROnPlateau",
            "params": {"factor": 0.5, "patience": 1, "threshold": 0.5},
        },
        # min_delta 0.02 on val_accuracy: stops a few epochs after accuracy saturates.
        "early_stopping": {
            "monitor": "val_accuracy",
            "mode": "max",
            "patience": 4,
            "min_delta": 0.02,
        },
    }
    with stack.client() as c:
        exp_id = c.post("/v1/experiments", json=spec).json()["id"]
        final = stack.wait_final(exp_id)
        rows = c.get(f"/v1/experiments/{exp_id}/metrics").json()["epochs"]
        decisions = c.get(f"/v1/experiments/{exp_id}/decisions").json()["decisions"]
    assert final["status"] == "early_stopped", stack.logs()
    n = len(rows)
    assert 5 <= n < 30 and final["epochs_run"] == n

    # Independent replay: torch's own ReduceLROnPlateau over the stored val_loss after warmup.
    p = torch.zeros(1, requires_grad=True)
    opt = torch.optim.SGD([p], lr=0.1)
    plateau = torch.optim.lr_scheduler.ReduceLROnPlateau(opt, factor=0.5, patience=1, threshold=0.5)
    warm = [0.1 * (0.5 + 0.5 * e / 2) for e in range(2)]
    expected_lr = [*warm]
    for r in rows[2:]:
        expected_lr.append(opt.param_groups[0]["lr"])
        plateau.step(r["val_loss"])
    assert [r["lr"] for r in rows] == pytest.approx(expected_lr, rel=1e-12)
    assert len(set(expected_lr[2:])) > 1  # the run really did reduce its LR

    # Early stopping straight from CONTRACT.md over the stored val_accuracy.
    best, wait, stop_epoch = None, 0, None
    for r in rows:
        v = r["val_accuracy"]
        if best is None or v > best + 0.02:
            best, wait, best_epoch = v, 0, r["epoch"]
        else:
            wait += 1
        if wait >= 4:
            stop_epoch = r["epoch"]
            break
    assert stop_epoch == n
    assert final["best_epoch"] == best_epoch and final["best_value"] == best

    kinds = [(d["epoch"], d["kind"]) for d in decisions]
    assert (n, "early_stop") in kinds
    cuts = [d for d in decisions if d["kind"] == "reduce_lr"]
    # A cut takes effect from the next epoch (a cut at the stop epoch has none to show in).
    assert [d["epoch"] + 1 for d in cuts if d["epoch"] < n] == [
        r["epoch"] for prev, r in itertools.pairwise(rows) if r["lr"] < prev["lr"]
    ]
    assert all("→" in d["reason"] and "val_loss has not improved" in d["reason"] for d in cuts)
    # Each row's label lists that epoch's decisions, in order (a cut and the stop can coincide).
    for r in rows:
        assert r["decision"] == ("+".join(k for e, k in kinds if e == r["epoch"]) or None)


def test_non_finite_loss_ends_the_run_as_diverged(stack: Stack) -> None:
    # Linear regression with MSE at a large LR: the loss grows geometrically until it overflows.
    spec = {"dataset": "diabetes", "model": {"type": "linear"}, "base_lr": 5.0, "epochs": 60,
            "solver": {"type": "SGD", "params": {"momentum": 0.9}}, "batch_size": 32}  # fmt: skip
    with stack.client() as c:
        exp_id = c.post("/v1/experiments", json=spec).json()["id"]
        final = stack.wait_final(exp_id)
        metrics = c.get(f"/v1/experiments/{exp_id}/metrics")
        decisions = c.get(f"/v1/experiments/{exp_id}/decisions").json()["decisions"]
    assert final["status"] == "diverged", stack.logs()
    assert "non-finite" in final["stop_reason"]
    assert metrics.status_code == 200  # NaN is sent as null, never breaks the JSON
    rows = metrics.json()["epochs"]
    assert rows[-1]["decision"] == "diverged" and len(rows) == final["epochs_run"] < 60
    assert set(rows[-1]) >= {"val_mae", "val_loss"} and "val_accuracy" not in rows[-1]
    assert [d["kind"] for d in decisions] == ["diverged"]


def test_restore_best_keeps_the_best_epochs_weights_as_the_final_model(stack: Stack) -> None:
    import torch

    from service.datasets.builtin import info, load
    from service.training.spec import ExperimentSpec
    from worker.engine.data import to_device
    from worker.engine.loop import evaluate
    from worker.engine.model import build_model

    stop = {"monitor": "val_loss", "patience": 3, "restore_best": True}
    spec = {**SPEC, "warmup": None, "epochs": 40, "base_lr": 0.3, "early_stopping": stop}
    with stack.client() as c:
        exp_id = c.post("/v1/experiments", json=spec).json()["id"]
        final = stack.wait_final(exp_id)
        rows = c.get(f"/v1/experiments/{exp_id}/metrics").json()["epochs"]
    assert final["status"] == "early_stopped"
    best = min(rows, key=lambda r: r["val_loss"])
    assert final["best_epoch"] == best["epoch"] < rows[-1]["epoch"]

    weights = load_model(store_of(stack.backend), exp_id)  # safetensors: tensors only
    parsed = ExperimentSpec.model_validate(spec)
    model = build_model(parsed.model, info("digits"))
    model.load_state_dict(weights)
    val = evaluate(
        model,
        to_device(parsed, load("digits"), info("digits"), torch.device("cpu")).val,
        "classification",
    )
    assert val.loss == pytest.approx(best["val_loss"], rel=1e-6)
    assert val.accuracy == best["val_accuracy"]
    assert val.loss != pytest.approx(rows[-1]["val_loss"], rel=1e-6)  # not the last epoch's
    # A finished run keeps its model, not its resume checkpoint.
    assert checkpoint_keys(store_of(stack.backend), exp_id) == []

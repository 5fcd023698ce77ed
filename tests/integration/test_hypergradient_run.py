"""Hypergradient descent through the real API and real workers: the recorded LR adapts epoch by
epoch from base_lr, early stopping still ends a run, and a worker killed mid-run leaves a trace
(LRs included) identical to an uninterrupted twin's once another worker resumes it."""

from __future__ import annotations

import itertools
from typing import Any

import pytest

from tests.integration.test_faults import holder, trace, twin
from tests.support.stack import Stack

pytestmark = pytest.mark.integration

# test_faults.py's size (~60 ms per epoch on a CPU), dropout and momentum included.
SGD_HD: dict[str, Any] = {
    "dataset": "digits", "model": {"type": "mlp", "hidden": [128, 128], "dropout": 0.1},
    "solver": {"type": "SGD", "params": {"momentum": 0.9}, "hypergradient": {"hyper_lr": 1e-3}},
    "base_lr": 0.01, "batch_size": 32, "epochs": 30, "checkpoint_every": 3, "seed": 3,
}  # fmt: skip
ADAM_HD: dict[str, Any] = {
    "dataset": "digits", "model": {"type": "mlp", "hidden": [64]},
    "solver": {"type": "Adam", "params": {}, "hypergradient": {"hyper_lr": 1e-6}},
    "base_lr": 0.001, "epochs": 40, "seed": 1,
    # val_loss never beats a baseline of 0: the run stops after `patience` epochs.
    "early_stopping": {"monitor": "val_loss", "patience": 4, "baseline": 0.0},
}  # fmt: skip


# The production stack only: what is checked (the adapted LR, the resumed trace) is the
# engine's and the worker's, the same on either backend, and the suite's time is finite.
@pytest.mark.postgres
@pytest.mark.parametrize("fault_stack", ["postgres"], indirect=True)
def test_lr_adapts_and_a_killed_run_resumes_with_the_identical_trace(stack2: Stack) -> None:
    with stack2.client() as c:
        adam_id = c.post("/v1/experiments", json=ADAM_HD).json()["id"]
        expected = twin(stack2, c, SGD_HD)  # succeeded, rows contiguous
        lrs = [row["lr"] for row in expected]
        assert len(lrs) == 30
        assert lrs[0] == SGD_HD["base_lr"]  # the first step has no previous step to learn from
        assert all(a != b for a, b in itertools.pairwise(lrs)), lrs  # moves every epoch
        assert max(lrs) > SGD_HD["base_lr"]  # and rises from a cautious start, as it should
        assert all(row["decision"] is None for row in expected)  # no plateau, no stop

        adam = stack2.wait_final(adam_id)
        assert adam["status"] == "early_stopped", adam
        adam_lrs = [row["lr"] for row in trace(c, adam_id)]
        assert len(adam_lrs) == 4 and adam_lrs[0] == ADAM_HD["base_lr"]
        assert len(set(adam_lrs)) == 4

        exp_id = c.post("/v1/experiments", json=SGD_HD).json()["id"]
        victim = holder(stack2, c, exp_id, min_epochs=7)
        victim.kill()  # SIGKILL: resumed elsewhere from the checkpoint (epoch 6 or later)
        victim.wait()
        final = stack2.wait_final(exp_id)
        assert final["status"] == "succeeded", stack2.logs()
        assert final["attempt"] == 2
        assert trace(c, exp_id) == expected  # LR, losses and accuracy, bit for bit

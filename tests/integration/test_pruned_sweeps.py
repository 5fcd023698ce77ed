"""A successive-halving sweep on real API and worker processes (two workers, short leases), with
the worker holding the last rung's winner SIGKILLed mid-run: the sweep still finishes, every
decision follows the rule over the stored histories rung by rung, the killed run resumes from
its checkpoint with a contiguous history, and fewer than half the unpruned epochs are trained."""

from __future__ import annotations

from typing import Any

import httpx
import pytest

from tests.integration.test_faults import holder, trace
from tests.support.stack import Stack

pytestmark = pytest.mark.integration

# ~40 ms epochs (MLP [256, 256], batch 16): rungs at 5 and 15 of 45 epochs; the last stage trains
# 30 (over a second), long enough to be killed mid-way whatever the polling's timing.
BASE: dict[str, Any] = {"dataset": "digits", "model": {"type": "mlp", "hidden": [256, 256]},
                        "batch_size": 16, "epochs": 45}  # fmt: skip
LRS = [0.001, 0.003, 0.01, 0.03, 0.1, 0.3, 0.02, 0.2, 0.005]


def at(c: httpx.Client, exp_id: int, epoch: int) -> float:
    return float(next(r["val_loss"] for r in trace(c, exp_id) if r["epoch"] == epoch))


# The production stack (PostgreSQL, Redis, S3): the in-process tests cover the embedded one.
@pytest.mark.postgres
@pytest.mark.parametrize("fault_stack", ["postgres"], indirect=True)
def test_a_killed_worker_changes_no_decision_of_a_synchronous_sweep(stack2: Stack) -> None:
    pruner = {"type": "successive_halving", "min_epochs": 5, "reduction_factor": 3}
    body = {"base": BASE, "strategy": "grid", "parameters": {"base_lr": LRS}, "pruner": pruner}
    with stack2.client() as c:
        sweep_id = c.post("/v1/sweeps", json=body).json()["sweep_id"]
        # Until the last rung is decided:
        stack2.wait_sweep(c, sweep_id, until=lambda s: len(s["pruning"]["rungs"]) == 2)
        [winner] = [d["experiment_id"] for d in c.get(f"/v1/sweeps/{sweep_id}/decisions").json()
                    if d["epoch"] == 15 and d["decision"] == "continue"]  # fmt: skip
        victim = holder(stack2, c, winner, min_epochs=17)
        victim.kill()
        victim.wait()

        detail = stack2.wait_sweep(c, sweep_id)
        decisions = c.get(f"/v1/sweeps/{sweep_id}/decisions").json()
        assert [d["epoch"] for d in decisions] == [5] * 9 + [15] * 3
        for epoch, keep in ((5, 3), (15, 1)):
            ranked = sorted((at(c, d["experiment_id"], epoch), d["experiment_id"])
                            for d in decisions if d["epoch"] == epoch)  # fmt: skip
            kept = {d["experiment_id"] for d in decisions
                    if d["epoch"] == epoch and d["decision"] == "continue"}  # fmt: skip
            assert kept == {i for _, i in ranked[:keep]}
        final = c.get(f"/v1/experiments/{winner}").json()
        assert final["status"] == "succeeded" and final["attempt"] == 4  # 2 pauses, a kill
        assert [r["epoch"] for r in trace(c, winner)] == list(range(1, 46))
        assert detail["pruning"]["epochs_run"] == 9 * 5 + 3 * 10 + 30 < 9 * 45 / 2

"""A successive-halving sweep on real API and worker processes (two workers, short leases), with
the API and a worker SIGKILLed at once, mid-way through the first stage and again as the last
rung's winner trains on: the sweep still finishes with the decisions of the same sweep
undisturbed, every decision follows the rule over
the stored histories rung by rung, the killed run resumes from its checkpoint with a contiguous
history, and fewer than half the unpruned epochs are trained."""

from __future__ import annotations

from typing import Any

import httpx
import pytest

from tests.integration.test_faults import holder, trace
from tests.support.stack import Stack, registered, wait_for

pytestmark = pytest.mark.integration

# ~40 ms epochs (MLP [256, 256], batch 16): rungs at 5 and 15 of 45 epochs; the last stage trains
# 30 (over a second), long enough to be killed mid-way whatever the polling's timing.
BASE: dict[str, Any] = {"dataset": "digits", "model": {"type": "mlp", "hidden": [256, 256]},
                        "batch_size": 16, "epochs": 45}  # fmt: skip
LRS = [0.001, 0.003, 0.01, 0.03, 0.1, 0.3, 0.02, 0.2, 0.005]


def at(c: httpx.Client, exp_id: int, epoch: int) -> float:
    return float(next(r["val_loss"] for r in trace(c, exp_id) if r["epoch"] == epoch))


def training_now(stack: Stack, c: httpx.Client, sweep_id: int) -> tuple[int, Any]:
    """A run of the sweep training now on a live worker: (its id, that worker's process)."""
    alive = {p.pid: p for p in stack.procs.values() if p.poll() is None}
    found: list[tuple[int, int]] = []

    def one() -> bool:
        page = c.get("/v1/experiments", params={"sweep_id": sweep_id, "status": "running"})
        found[:] = [(e["id"], int(e["worker"].rsplit(":", 1)[1]))
                    for e in page.json()["items"] if e["worker"]]  # fmt: skip
        return any(pid in alive for _, pid in found)

    wait_for(one, 60, stack.logs)
    exp_id, pid = next((i, pid) for i, pid in found if pid in alive)
    return exp_id, alive[pid]


def by_lr(c: httpx.Client, sweep_id: int) -> list[tuple[Any, ...]]:
    """The sweep's decisions by each run's base_lr, with their inputs: comparable across two
    sweeps of one grid."""
    lrs = {e["experiment_id"]: e["params"]["base_lr"]
           for e in c.get(f"/v1/sweeps/{sweep_id}").json()["experiments"]}  # fmt: skip
    return sorted((lrs[d["experiment_id"]], d["epoch"], d["decision"], d["value"], d["cutoff"])
                  for d in c.get(f"/v1/sweeps/{sweep_id}/decisions").json())  # fmt: skip


# The production stack (PostgreSQL, Redis, S3): the in-process tests cover the embedded one.
@pytest.mark.postgres
@pytest.mark.parametrize("fault_stack", ["postgres"], indirect=True)
def test_a_killed_api_and_worker_change_no_decision_of_a_synchronous_sweep(stack2: Stack) -> None:
    """The sweep once undisturbed, then again with the API and a worker SIGKILLed at once twice:
    mid-way through the first stage, and as the last rung's winner trains on: the same
    decisions, with the same values."""
    pruner = {"type": "successive_halving", "min_epochs": 5, "reduction_factor": 3}
    body = {"base": BASE, "strategy": "grid", "parameters": {"base_lr": LRS}, "pruner": pruner}
    with stack2.client() as c:
        clean_id = c.post("/v1/sweeps", json=body).json()["sweep_id"]
        stack2.wait_sweep(c, clean_id)
        clean = by_lr(c, clean_id)
        sweep_id = c.post("/v1/sweeps", json=body).json()["sweep_id"]
        # Mid-way through the first stage (before its rung is decided, as far as a poll can
        # tell): the API and the worker of a run training, at once; then a worker in its place.
        early, first_victim = training_now(stack2, c, sweep_id)
        first_victim.kill()
        stack2.restart_api()  # SIGKILL: the relay and the reaper die mid-sweep too
        first_victim.wait()
        stack2.start_worker(f"after-crash-{sweep_id}")

    with stack2.client() as c:
        # Until the last rung is decided:
        stack2.wait_sweep(c, sweep_id, until=lambda s: len(s["pruning"]["rungs"]) == 2)
        [winner] = [d["experiment_id"] for d in c.get(f"/v1/sweeps/{sweep_id}/decisions").json()
                    if d["epoch"] == 15 and d["decision"] == "continue"]  # fmt: skip
        victim = holder(stack2, c, winner, min_epochs=17)
        victim.kill()
        stack2.restart_api()
        victim.wait()

    with stack2.client() as c:
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
        assert final["status"] == "succeeded"
        assert final["attempt"] == 4 + (winner == early)  # 2 pauses, a kill (or two)
        assert [r["epoch"] for r in trace(c, winner)] == list(range(1, 46))
        assert detail["pruning"]["epochs_run"] == 9 * 5 + 3 * 10 + 30 < 9 * 45 / 2
        assert by_lr(c, sweep_id) == clean


@pytest.mark.postgres
@pytest.mark.parametrize("fault_stack", ["postgres"], indirect=True)
def test_asha_on_two_workers_decides_each_run_over_the_values_recorded_before_it(
    stack2: Stack,
) -> None:
    """Two workers reach ASHA's rungs at the same moments: each decision, in the order stored,
    follows the rule over the values recorded at its rung before it (the sweep's row is the
    lock that orders them)."""
    base = {**BASE, "model": {"type": "mlp", "hidden": [64]}, "batch_size": 64, "epochs": 9}
    pruner = {"type": "asha", "min_epochs": 1, "reduction_factor": 3}
    body = {"base": base, "strategy": "grid", "parameters": {"base_lr": LRS}, "pruner": pruner}
    with stack2.client() as c:
        for name, proc in stack2.procs.items():  # a worker replaced after a kill may be booting
            if name != "api" and proc.poll() is None:
                registered(c, proc.pid)
        sweep_id = c.post("/v1/sweeps", json=body).json()["sweep_id"]
        detail = stack2.wait_sweep(c, sweep_id)
        decisions = c.get(f"/v1/sweeps/{sweep_id}/decisions").json()
        workers = {
            a["worker"]
            for e in detail["experiments"]
            for a in c.get(f"/v1/experiments/{e['experiment_id']}").json()["attempts"]
        }
    assert len(workers) >= 2  # both took runs
    assert decisions and {d["epoch"] for d in decisions} == {1, 3}  # rungs r·η^k below 9
    for i, d in enumerate(decisions):
        before = [e["value"] for e in decisions[:i] if e["epoch"] == d["epoch"]]
        values = sorted([*before, d["value"]])
        keep = max(1, len(values) // 3)
        assert d["compared"] == len(values), d
        assert (d["decision"] == "continue") == (d["value"] <= values[keep - 1]), d
    statuses = {e["status"] for e in detail["experiments"]}
    assert statuses <= {"succeeded", "pruned"} and "pruned" in statuses

"""Sweeps with a pruner, trained in-process run by run: the decisions follow the contract's rules
over the stored histories, are listed in the order taken with their reasons, and a crash between
a run's pause and its rung's decision changes none of them. What involves the database's
concurrency (the rung decided once, ASHA's order, cancel) runs on each backend; the rest of the
rules on the embedded one."""

from __future__ import annotations

import threading
import time
from typing import Any

import pytest
from fastapi.testclient import TestClient

from service.artifacts import service as artifact_service
from service.client.sse import parse
from service.config import settings
from service.sweeps import service as sweeps
from tests.support.artifacts import checkpoint_keys
from worker.runs import artifacts
from worker.runs.lifecycle import run_experiment

BASE: dict[str, Any] = {"dataset": "iris", "model": {"type": "mlp", "hidden": [8]},
                        "epochs": 9, "batch_size": 32, "device": "cpu"}  # fmt: skip
LRS = [0.001, 0.003, 0.01, 0.03, 0.1, 0.3, 1.0, 0.02, 0.2]


def drain(client: TestClient, sweep_id: int, before_advance: Any = None) -> int:
    """Run the sweep's queued runs one at a time, as one worker would, until none is left; after
    each run the worker's task moves the sweep on. Returns the runs (claims) made."""
    claims = 0
    while True:
        queued = queued_in(client, sweep_id)
        if not queued:
            return claims
        for exp_id in queued:
            outcome = run_experiment(exp_id)
            claims += 1
            if outcome.ended_run:
                sweeps.advance_for(exp_id)


def queued_in(client: TestClient, sweep_id: int) -> list[int]:
    page = client.get("/v1/experiments", params={"sweep_id": sweep_id, "status": "queued"})
    return sorted(e["id"] for e in page.json()["items"])


def by_lr(client: TestClient, sweep_id: int) -> list[tuple[float, int, str, str]]:
    """The sweep's decisions by each run's base_lr: comparable across two sweeps of one grid."""
    runs = {e["experiment_id"]: e["params"]["base_lr"]
            for e in client.get(f"/v1/sweeps/{sweep_id}").json()["experiments"]}  # fmt: skip
    ds = client.get(f"/v1/sweeps/{sweep_id}/decisions").json()
    return sorted((runs[d["experiment_id"]], d["epoch"], d["decision"], d["reason"])
                  for d in ds)  # fmt: skip


def sweep_of(client: TestClient, pruner: dict[str, Any]) -> int:
    body = {"base": BASE, "strategy": "grid", "parameters": {"base_lr": LRS}, "pruner": pruner}
    r = client.post("/v1/sweeps", json=body)
    assert r.status_code == 201, r.text
    return int(r.json()["sweep_id"])


def val_loss_at(client: TestClient, exp_id: int, epoch: int) -> float:
    rows = client.get(f"/v1/experiments/{exp_id}/metrics").json()["epochs"]
    return float(next(r["val_loss"] for r in rows if r["epoch"] == epoch))


def assert_stops_are_the_runs_decisions(client: TestClient, sweep_id: int) -> None:
    """Each run the pruner stopped lists that stop as its own last decision (kind `pruned`,
    the sweep decision's epoch, value and sentence), in /decisions and in compare; a run it
    did not stop lists none."""
    stops = {d["experiment_id"]: d for d in client.get(f"/v1/sweeps/{sweep_id}/decisions").json()
             if d["decision"] == "stop"}  # fmt: skip
    assert stops
    runs = client.get(f"/v1/sweeps/{sweep_id}").json()["experiments"]
    ids = [e["experiment_id"] for e in runs]
    series = client.get("/v1/experiments/compare", params={"ids": ",".join(map(str, ids))})
    compared = {s["experiment_id"]: s["decisions"] for s in series.json()["series"]}
    for e in runs:
        got = client.get(f"/v1/experiments/{e['experiment_id']}/decisions").json()
        pruned = [d for d in got["decisions"] if d["kind"] == "pruned"]
        assert compared[e["experiment_id"]] == got["decisions"]
        if e["status"] != "pruned":
            assert pruned == []
            continue
        stop = stops[e["experiment_id"]]
        assert got["decisions"][-1] == pruned[0]
        assert pruned == [{"epoch": stop["epoch"], "kind": "pruned", "monitor": "val_loss",
                           "value": stop["value"], "best": None, "best_epoch": None,
                           "old_lr": None, "new_lr": None, "reason": stop["reason"]}]  # fmt: skip
        detail = client.get(f"/v1/experiments/{e['experiment_id']}").json()
        assert detail["stop_reason"] == stop["reason"]


def test_successive_halving_keeps_the_best_third_at_each_rung(client: TestClient) -> None:
    sweep_id = sweep_of(client, {"type": "successive_halving"})  # r 1, η 3: rungs at 1 and 3
    drain(client, sweep_id)
    detail = client.get(f"/v1/sweeps/{sweep_id}").json()
    assert detail["status"] == "finished"
    runs = {e["experiment_id"]: e for e in detail["experiments"]}
    decisions = client.get(f"/v1/sweeps/{sweep_id}/decisions").json()
    assert [(d["epoch"], d["rung"]) for d in decisions] == [(1, 0)] * 9 + [(3, 1)] * 3
    for epoch, n, keep in ((1, 9, 3), (3, 3, 1)):
        at = [d for d in decisions if d["epoch"] == epoch]
        # From the stored histories: the best `keep` by val_loss at the rung, ties to lower id.
        values = sorted((val_loss_at(client, d["experiment_id"], epoch), d["experiment_id"])
                        for d in at)  # fmt: skip
        best = {i for _, i in values[:keep]}
        assert {d["experiment_id"] for d in at if d["decision"] == "continue"} == best
        for d in at:
            assert d["compared"] == n and d["value"] == val_loss_at(
                client, d["experiment_id"], epoch
            )
            assert d["cutoff"] == values[keep - 1][0]
            if d["decision"] == "stop":
                assert f"is not among the best {keep} of {n} at this rung" in d["reason"]
                assert runs[d["experiment_id"]]["status"] == "pruned"
                assert runs[d["experiment_id"]]["epochs_run"] == epoch
                # No rung will resume it: its checkpoint went with the decision (deleted
                # behind its commit).
                assert artifact_service.wait_deleted()
                assert checkpoint_keys(artifact_service.store(), d["experiment_id"]) == []
    pruning = detail["pruning"]
    assert pruning["pruned"] == 8 and [g["reached"] for g in pruning["rungs"]] == [9, 3]
    assert pruning["epochs_run"] == 9 * 1 + 3 * 2 + 1 * 6 < pruning["epochs_unpruned"] / 2
    assert pruning["epochs_saved"] == 81 - 21
    [winner] = [e for e in detail["experiments"] if e["status"] == "succeeded"]
    assert winner["epochs_run"] == 9
    # The winner resumed from its checkpoints: its history is whole and contiguous.
    rows = client.get(f"/v1/experiments/{winner['experiment_id']}/metrics").json()["epochs"]
    assert [r["epoch"] for r in rows] == list(range(1, 10))
    assert_stops_are_the_runs_decisions(client, sweep_id)


@pytest.mark.parametrize(
    "rule", [{"type": "successive_halving"}, {"type": "hyperband", "min_epochs": 1, "seed": 3}]
)
def test_a_crash_before_the_rung_is_decided_changes_no_decision(
    client: TestClient, monkeypatch: pytest.MonkeyPatch, rule: dict[str, Any]
) -> None:
    """The last run to reach a rung dies after going `waiting`, before deciding it: nothing is
    decided until housekeeping's sweep check does, and then exactly as without the crash
    (hyperband: each bracket's rungs, the check reading the groups' counts)."""
    clean = sweep_of(client, rule)
    drain(client, clean)
    from worker.runs import pruner

    crashed = sweep_of(client, rule)
    real = pruner.pruning.complete_rungs
    monkeypatch.setattr(pruner.pruning, "complete_rungs", lambda *a: 0)  # the worker dies here
    drain(client, crashed)
    waiting = client.get(f"/v1/sweeps/{crashed}").json()["counts"]
    assert waiting == {"waiting": 9}
    monkeypatch.setattr(pruner.pruning, "complete_rungs", real)
    while sweeps.advance_running():  # housekeeping's periodic check, then the workers again
        drain(client, crashed)
    drain(client, crashed)
    assert by_lr(client, crashed) == by_lr(client, clean)
    assert client.get(f"/v1/sweeps/{crashed}").json()["status"] == "finished"


def test_a_promoted_run_that_starts_over_is_told_the_decision_taken(client: TestClient) -> None:
    """A promoted run whose checkpoint at the rung is gone starts over and reaches the decided
    rung again: it is told the decision stored then (its worker reads them as the attempt
    begins) and goes on, rather than waiting at a rung that is never decided again."""
    clean = sweep_of(client, {"type": "successive_halving"})
    drain(client, clean)
    lost = sweep_of(client, {"type": "successive_halving"})
    for exp_id in queued_in(client, lost):
        run_experiment(exp_id)  # each waits at epoch 1; the last one decides the rung
    promoted = queued_in(client, lost)
    assert len(promoted) == 3
    store = artifact_service.store()
    for exp_id in promoted:
        key = artifact_service.checkpoint_key(exp_id, 1)
        store.delete(key)
        artifacts.written.drop(key)  # nor in this worker's memory
    drain(client, lost)
    assert by_lr(client, lost) == by_lr(client, clean)
    detail = client.get(f"/v1/sweeps/{lost}").json()
    assert detail["status"] == "finished"
    for exp_id in promoted:
        attempts = client.get(f"/v1/experiments/{exp_id}").json()["attempts"]
        assert attempts[1]["resumed_from_epoch"] == 0  # started over


def test_asha_decides_each_run_over_the_values_recorded_before_it(client: TestClient) -> None:
    sweep_id = sweep_of(client, {"type": "asha", "min_epochs": 1, "reduction_factor": 3})
    drain(client, sweep_id)
    decisions = client.get(f"/v1/sweeps/{sweep_id}/decisions").json()
    assert decisions and all(d["rung"] is not None for d in decisions)
    for i, d in enumerate(decisions):
        before = [e["value"] for e in decisions[:i] if e["epoch"] == d["epoch"]]
        values = sorted([*before, d["value"]])
        keep = max(1, len(values) // 3)
        assert d["compared"] == len(values)
        assert (d["decision"] == "continue") == (d["value"] <= values[keep - 1]), d
    statuses = {e["status"] for e in client.get(f"/v1/sweeps/{sweep_id}").json()["experiments"]}
    assert statuses <= {"succeeded", "pruned"} and "pruned" in statuses
    assert_stops_are_the_runs_decisions(client, sweep_id)


def test_a_cancelled_sweep_ends_its_waiting_runs_cancelled(client: TestClient) -> None:
    sweep_id = sweep_of(client, {"type": "successive_halving"})
    first = min(client.get(f"/v1/sweeps/{sweep_id}").json()["experiments"],
                key=lambda e: e["experiment_id"])  # fmt: skip
    run_experiment(first["experiment_id"])  # reaches the first rung and waits for the others
    got = client.get(f"/v1/experiments/{first['experiment_id']}").json()
    assert got["status"] == "waiting" and got["epochs_run"] == 1
    assert checkpoint_keys(artifact_service.store(), first["experiment_id"]) != []
    cancelled = client.post(f"/v1/sweeps/{sweep_id}/cancel").json()
    assert cancelled["counts"] == {"cancelled": 9}
    assert client.get(f"/v1/sweeps/{sweep_id}/decisions").json() == []
    assert artifact_service.wait_deleted()
    assert checkpoint_keys(artifact_service.store(), first["experiment_id"]) == []


def test_a_run_cancelled_on_its_way_to_a_rung_ends_cancelled_there(
    client: TestClient, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The sweep is cancelled while a run trains towards its first rung (flagged, not yet seen by
    its worker): its pause ends it `cancelled`, rather than `waiting`, then promoted by a rung
    it decided alone and queued for ever (a run whose cancel was requested is never claimed)."""
    sweep_id = sweep_of(client, {"type": "successive_halving"})
    first = min(e["experiment_id"] for e in client.get(f"/v1/sweeps/{sweep_id}").json()[
        "experiments"])  # fmt: skip
    from worker.runs import pruner

    real = pruner.pruning.wait_at_rung

    def cancelled_first(*args: Any) -> Any:
        assert client.post(f"/v1/sweeps/{sweep_id}/cancel").status_code == 200
        return real(*args)

    monkeypatch.setattr(pruner.pruning, "wait_at_rung", cancelled_first)
    assert run_experiment(first).status == "cancelled"
    got = client.get(f"/v1/experiments/{first}").json()
    assert (got["status"], got["epochs_run"]) == ("cancelled", 1)
    assert got["stop_reason"] == "cancelled while running; stopped at its rung"
    assert checkpoint_keys(artifact_service.store(), first) == []  # an ended run keeps none
    assert client.get(f"/v1/sweeps/{sweep_id}").json()["counts"] == {"cancelled": 9}
    assert client.get(f"/v1/sweeps/{sweep_id}/decisions").json() == []


@pytest.mark.parametrize("backend", ["postgres"], indirect=True)  # row locks
def test_a_sweep_cancelled_while_its_run_pauses_ends_the_run_cancelled(client: TestClient) -> None:
    """The run's pause holds its row when the sweep's cancel comes: the cancel waits for it, and
    then finds the run `waiting`, which it ends, rather than no longer running and left so."""
    from service.experiments.repository import ExperimentRepository
    from service.kit.db import get_sessionmaker, session_scope

    sweep_id = sweep_of(client, {"type": "successive_halving"})
    run = min(e["experiment_id"] for e in client.get(f"/v1/sweeps/{sweep_id}").json()[
        "experiments"])  # fmt: skip
    with session_scope() as session:
        claimed = ExperimentRepository(session).claim_run(run, "w", 60)
    assert claimed is not None
    pausing = get_sessionmaker()()
    cancel = threading.Thread(target=lambda: client.post(f"/v1/sweeps/{sweep_id}/cancel"))
    try:
        assert sweeps.pruning.wait_at_rung(pausing, run, claimed.attempt, 1) == "waiting"
        cancel.start()
        deadline = time.monotonic() + 60  # the in-process API's first request, on a busy box
        while not blocked_on_a_lock(pausing):
            assert time.monotonic() < deadline and cancel.is_alive(), "the cancel did not wait"
            time.sleep(0.02)
        pausing.commit()
    finally:
        pausing.close()  # a failed test's lock released: the cancel ends, the client closes
    cancel.join(30)
    got = client.get(f"/v1/experiments/{run}").json()
    assert got["status"] == "cancelled", got
    assert client.get(f"/v1/sweeps/{sweep_id}").json()["counts"] == {"cancelled": 9}


def blocked_on_a_lock(other: Any) -> bool:
    """Whether a session of the database (not `other`'s) waits for a row lock."""
    from sqlalchemy import text

    # Within a transaction the activity view is read once and kept: read it afresh.
    other.execute(text("SELECT pg_stat_clear_snapshot()"))
    return bool(other.execute(text(
        "SELECT count(*) FROM pg_stat_activity WHERE wait_event_type = 'Lock' "
        "AND datname = current_database()")).scalar())  # fmt: skip


@pytest.mark.parametrize("backend", ["embedded"], indirect=True)  # the rule, not the store
def test_a_pruner_is_checked_at_submit(client: TestClient) -> None:
    body = {"base": BASE, "strategy": "grid", "parameters": {"base_lr": LRS}}
    for pruner, loc in (
        ({"type": "successive_halving", "min_epochs": 9}, ["body", "pruner", "min_epochs"]),
        ({"type": "asha", "metric": "val_mae"}, ["body", "pruner", "metric"]),
        ({"type": "asha", "reduction_factor": 1}, ["body", "pruner", "reduction_factor"]),
        ({"type": "bohb"}, ["body", "pruner", "type"]),
        # A parameter the rule has no use for, refused rather than silently ignored.
        ({"type": "asha", "min_runs": 3}, ["body", "pruner", "min_runs"]),
        ({"type": "median", "reduction_factor": 2}, ["body", "pruner", "reduction_factor"]),
        ({"type": "successive_halving", "seed": 1}, ["body", "pruner", "seed"]),
    ):
        r = client.post("/v1/sweeps", json={**body, "pruner": pruner})
        assert r.status_code == 422, r.text
        assert r.json()["detail"][0]["loc"] == loc, r.json()
    r = client.post("/v1/sweeps", json={**body, "pruner": {"type": "asha", "seed": 3,
                                                           "min_runs": 2}})  # fmt: skip
    assert r.status_code == 422, r.text
    assert [(e["loc"][-1], e["msg"]) for e in r.json()["detail"]] == [
        ("min_runs", "min_runs does not apply to the asha pruner, which takes min_epochs and "
                     "reduction_factor"),
        ("seed", "seed does not apply to the asha pruner, which takes min_epochs and "
                 "reduction_factor"),
    ]  # fmt: skip
    # Each rule's own parameters are taken.
    for pruner in ({"type": "median", "min_epochs": 2, "min_runs": 3},
                   {"type": "hyperband", "reduction_factor": 2, "seed": 7}):  # fmt: skip
        r = client.post("/v1/sweeps", json={**body, "pruner": pruner})
        assert r.status_code == 201, r.text


@pytest.mark.parametrize("backend", ["embedded"], indirect=True)  # the rule, not the store
def test_median_stops_a_run_worse_than_the_others_median(client: TestClient) -> None:
    sweep_id = sweep_of(client, {"type": "median", "min_epochs": 2, "min_runs": 3})
    drain(client, sweep_id)
    decisions = client.get(f"/v1/sweeps/{sweep_id}/decisions").json()
    assert decisions and {d["decision"] for d in decisions} == {"stop"}
    for d in decisions:
        assert d["rung"] is None and d["epoch"] >= 2 and d["compared"] >= 4
        assert d["value"] > d["cutoff"] and "worse than the median" in d["reason"]
        run = client.get(f"/v1/experiments/{d['experiment_id']}").json()
        assert run["status"] == "pruned" and run["epochs_run"] == d["epoch"]
        assert run["stop_reason"] == d["reason"]
    assert_stops_are_the_runs_decisions(client, sweep_id)


def test_a_followed_run_is_sent_its_pruners_stop_then_its_status(
    client: TestClient, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A run waiting at a rung, followed live, is pruned when the last run reaches the rung:
    its stream sends the stop as a `decision` (its epoch was sent before the stop existed),
    then the `pruned` status, then ends. A reconnect from that epoch is sent the same."""
    monkeypatch.setattr(settings, "events_poll_s", 0.02)
    sweep_id = sweep_of(client, {"type": "successive_halving"})
    *first, last = queued_in(client, sweep_id)
    for exp_id in first:
        run_experiment(exp_id)  # each waits at the rung, epoch 1
    slowest = first[0]  # base_lr 0.001: one epoch leaves it far behind, so it is pruned
    path = f"/v1/experiments/{slowest}/events"
    with client.stream("GET", path) as r:
        events = (e for e in parse(r.iter_lines()) if e is not None)
        assert [next(events).event for _ in range(2)] == ["epoch", "status"]
        run_experiment(last)  # reaches the rung last and decides it
        decision, status = next(events), next(events)
        assert next(events, None) is None  # the stream ended
    stop = client.get(f"/v1/experiments/{slowest}/decisions").json()["decisions"][-1]
    assert (decision.event, decision.id, decision.json()) == ("decision", "1", stop)
    assert stop["kind"] == "pruned" and "at this rung" in stop["reason"]
    assert (status.event, status.json()["status"]) == ("status", "pruned")
    again = client.get(path, headers={"Last-Event-ID": "1"}).text.splitlines()
    assert [(e.event, e.id) for e in parse(again) if e is not None] == [
        ("decision", "1"), ("status", "1")
    ]  # fmt: skip


@pytest.mark.parametrize("backend", ["embedded"], indirect=True)  # the rule, not the store
def test_hyperband_runs_successive_halving_in_each_bracket(client: TestClient) -> None:
    from service.training.pruning import bracket_of

    sweep_id = sweep_of(client, {"type": "hyperband", "min_epochs": 1, "seed": 3})
    drain(client, sweep_id)
    detail = client.get(f"/v1/sweeps/{sweep_id}").json()
    assert detail["status"] == "finished" and "random.Random" in detail["pruning"]["rule"]
    ids = sorted(e["experiment_id"] for e in detail["experiments"])
    decisions = client.get(f"/v1/sweeps/{sweep_id}/decisions").json()
    for d in decisions:  # the stated rule: 3 brackets for 9 epochs with r 1, η 3
        assert d["bracket"] == bracket_of(ids.index(d["experiment_id"]), 3, 3, 3)
        assert d["epoch"] in {0: (1, 3), 1: (3,)}[d["bracket"]]  # rungs r·η^(b+k) below 9
    assert {d["bracket"] for d in decisions} >= {0, 1}


def test_deleting_an_ended_trial_moves_no_other_into_another_bracket(client: TestClient) -> None:
    """A trial's bracket is drawn from its index among its stage's runs as the sweep is created
    and kept: deleting an ended run of the running sweep (allowed) shifts the later runs'
    indices, which must not regroup them. Drawn again from the shifted indices (as before the
    brackets were stored), this sweep never finished: runs waited at a rung of a group that had
    changed under them."""
    from service.training.pruning import bracket_of

    sweep_id = sweep_of(client, {"type": "hyperband", "min_epochs": 1, "seed": 0})
    ids = queued_in(client, sweep_id)
    drawn = {i: bracket_of(n, 0, 3, 3) for n, i in enumerate(ids)}  # 3 brackets for 9 epochs
    for exp_id in ids:  # one worker, each run once: each bracket's first rung is decided
        if run_experiment(exp_id).ended_run:
            sweeps.advance_for(exp_id)
    runs = client.get(f"/v1/sweeps/{sweep_id}").json()["experiments"]
    live = [e["experiment_id"] for e in runs if e["status"] in ("queued", "waiting")]
    # A pruned run before a live one whose index, one lower, would draw another bracket.
    deleted = next(e["experiment_id"] for e in runs if e["status"] == "pruned" and any(
        i > e["experiment_id"] and bracket_of(ids.index(i) - 1, 0, 3, 3) != drawn[i]
        for i in live))  # fmt: skip
    assert client.delete(f"/v1/experiments/{deleted}").status_code == 204
    drain(client, sweep_id)
    detail = client.get(f"/v1/sweeps/{sweep_id}").json()
    assert detail["status"] == "finished"
    decisions = client.get(f"/v1/sweeps/{sweep_id}/decisions").json()
    assert decisions and {d["experiment_id"] for d in decisions} <= set(ids) - {deleted}
    assert [d["bracket"] for d in decisions] == [drawn[d["experiment_id"]] for d in decisions]
    for g in detail["pruning"]["rungs"]:  # each rung decided over its own bracket's trials
        assert g["reached"] <= sum(b == g["bracket"] for b in drawn.values())


@pytest.mark.parametrize("backend", ["embedded"], indirect=True)  # the rule, not the store
def test_a_sweep_from_before_brackets_were_stored_is_pruned_by_the_same_draw(
    client: TestClient,
) -> None:
    """Runs of a hyperband sweep created before the bracket was stored with each run (NULL)
    get the bracket the stated rule draws, stored the first time the pruner asks."""
    from sqlalchemy import text

    from service.kit.db import session_scope
    from service.training.pruning import bracket_of

    sweep_id = sweep_of(client, {"type": "hyperband", "min_epochs": 1, "seed": 3})
    ids = queued_in(client, sweep_id)
    with session_scope() as session:
        session.execute(text("UPDATE experiments SET sweep_bracket = NULL WHERE sweep_id = :s"),
                        {"s": sweep_id})  # fmt: skip
    drain(client, sweep_id)
    assert client.get(f"/v1/sweeps/{sweep_id}").json()["status"] == "finished"
    decisions = client.get(f"/v1/sweeps/{sweep_id}/decisions").json()
    assert {d["bracket"] for d in decisions} >= {0, 1}
    for d in decisions:
        assert d["bracket"] == bracket_of(ids.index(d["experiment_id"]), 3, 3, 3)
    with session_scope() as session:
        stored = session.execute(text("SELECT id, sweep_bracket FROM experiments "
                                      "WHERE sweep_id = :s"), {"s": sweep_id}).all()  # fmt: skip
    assert {i: b for i, b in stored} == {i: bracket_of(n, 3, 3, 3) for n, i in enumerate(ids)}


@pytest.mark.parametrize("backend", ["embedded"], indirect=True)  # the rule, not the store
def test_each_stage_of_coarse_to_fine_is_pruned_on_its_own(client: TestClient) -> None:
    body = {"base": {**BASE, "epochs": 3}, "strategy": "lr_coarse_to_fine", "min_lr": 1e-3,
            "max_lr": 1.0, "fine_points": 3, "pruner": {"type": "successive_halving"}}  # fmt: skip
    r = client.post("/v1/sweeps", json=body)
    assert r.status_code == 201, r.text
    sweep_id = r.json()["sweep_id"]
    drain(client, sweep_id)
    detail = client.get(f"/v1/sweeps/{sweep_id}").json()
    assert detail["status"] == "finished" and detail["stage"] == 2
    rungs = [(g["stage"], g["epoch"], g["reached"], g["continued"])
             for g in detail["pruning"]["rungs"]]  # fmt: skip
    assert rungs == [(1, 1, 4, 1), (2, 1, 3, 1)]  # 4 decades, then 3 fine LRs: one each goes on
    finished = [e for e in detail["experiments"] if e["status"] == "succeeded"]
    assert sorted(e["stage"] for e in finished) == [1, 2]
    # Stage 2 scans the decade towards the better of the best coarse LR's neighbours, told apart
    # by the pruner's values at the rung where it stopped them (not half a decade each side).
    coarse = {e["experiment_id"]: e["params"]["base_lr"] for e in detail["experiments"]
              if e["stage"] == 1}  # fmt: skip
    at_rung = {coarse[d["experiment_id"]]: d["value"]
               for d in client.get(f"/v1/sweeps/{sweep_id}/decisions").json()
               if d["experiment_id"] in coarse}  # fmt: skip
    [best] = [e["params"]["base_lr"] for e in finished if e["stage"] == 1]
    lrs = sorted(coarse.values())
    i = lrs.index(best)
    neighbours = [lr for lr in (lrs[i - 1] if i else None, lrs[i + 1] if i + 1 < len(lrs) else None)
                  if lr is not None]  # fmt: skip
    towards = min(neighbours, key=lambda lr: at_rung[lr])
    low, high = sorted((best, towards))
    assert detail["note"].endswith(f"between {low:g} and {high:g}"), detail["note"]


@pytest.mark.parametrize("backend", ["embedded"], indirect=True)  # SQLite's naive times
def test_decision_times_carry_their_timezone(client: TestClient) -> None:
    sweep_id = sweep_of(client, {"type": "asha"})
    first = min(
        e["experiment_id"] for e in client.get(f"/v1/sweeps/{sweep_id}").json()["experiments"]
    )
    run_experiment(first)
    [d, *_] = client.get(f"/v1/sweeps/{sweep_id}/decisions").json()
    assert d["created_at"].endswith(("Z", "+00:00"))


@pytest.mark.parametrize("backend", ["embedded"], indirect=True)  # the rule at scale
def test_a_rung_of_a_thousand_random_trials_is_decided_once_by_the_rule(client: TestClient) -> None:
    """1,000 random trials all waiting at the first rung (their rung rows written directly, as
    1,000 workers would have): one sweep check decides it, the best ⌊1000/3⌋ by the stored value
    go on, a second check decides nothing more."""
    import random

    from sqlalchemy import update

    from service.experiments.models import EpochRow, Experiment
    from service.kit.db import session_scope

    body = {"base": BASE, "strategy": "random", "trials": 1000, "seed": 1,
            "parameters": {"base_lr": {"distribution": "log_uniform", "low": 1e-3, "high": 1}},
            "pruner": {"type": "successive_halving"}}  # fmt: skip
    created = client.post("/v1/sweeps", json=body).json()
    ids, sweep_id = created["ids"], created["sweep_id"]
    rng = random.Random(0)
    losses = {i: round(rng.uniform(0.1, 2.0), 3) for i in ids}  # ties included
    with session_scope() as session:
        session.add_all(EpochRow(experiment_id=i, epoch=1, lr=0.1, val_loss=v, duration_s=0.01,
                                 attempt=1) for i, v in losses.items())  # fmt: skip
        session.execute(update(Experiment).where(Experiment.sweep_id == sweep_id)
                        .values(status="waiting", epochs_run=1, attempt=1))  # fmt: skip
    assert sweeps.advance_running() >= 0
    decisions = client.get(f"/v1/sweeps/{sweep_id}/decisions").json()
    assert len(decisions) == 1000
    best = sorted(ids, key=lambda i: (losses[i], i))[:333]
    assert {d["experiment_id"] for d in decisions if d["decision"] == "continue"} == set(best)
    counts = client.get(f"/v1/sweeps/{sweep_id}").json()["counts"]
    assert counts == {"queued": 333, "pruned": 667}
    sweeps.advance_running()
    assert len(client.get(f"/v1/sweeps/{sweep_id}/decisions").json()) == 1000

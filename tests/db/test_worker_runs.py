"""The worker's run lifecycle in-process (`worker.runs.lifecycle.run_experiment`), on a real
migrated database of each backend: what a user then reads through the API (status, rows,
decisions, files) after a run ends, is cancelled, fails, diverges, or is handed back at a
worker's shutdown and resumed. Fast: no processes, tiny data sets."""

from __future__ import annotations

import io
import threading
import time
from typing import Any

import numpy as np
import pytest
import torch
from fastapi.testclient import TestClient

from service.artifacts.service import store
from service.config import settings
from service.datasets import builtin
from service.experiments.repository import ExperimentRepository
from service.kit.db import session_scope
from service.training.spec import ExperimentSpec
from service.training.status import ExperimentStatus
from tests.support.artifacts import checkpoint_keys, has_model, load_checkpoint, load_model
from worker.engine.data import to_device
from worker.engine.loop import evaluate
from worker.engine.model import build_model
from worker.runs import lease as leases
from worker.runs.finish import Outcome
from worker.runs.lifecycle import run_experiment

IRIS: dict[str, Any] = {
    "name": "in-process",
    "dataset": "iris",
    "split": {"train": 0.6, "val": 0.2, "test": 0.2, "seed": 1},
    "model": {"type": "mlp", "hidden": [16], "dropout": 0.1},
    "solver": {"type": "SGD", "params": {"momentum": 0.9}},
    "base_lr": 0.05,
    "epochs": 5,
    "batch_size": 16,
    "seed": 3,
    "device": "cpu",
}


def submit(client: TestClient, spec: dict[str, Any]) -> int:
    created = client.post("/v1/experiments", json=spec)
    assert created.status_code == 201, created.text
    return int(created.json()["id"])


def detail(client: TestClient, exp_id: int) -> dict[str, Any]:
    body: dict[str, Any] = client.get(f"/v1/experiments/{exp_id}").json()
    return body


def rows(client: TestClient, exp_id: int) -> list[dict[str, Any]]:
    epochs: list[dict[str, Any]] = client.get(f"/v1/experiments/{exp_id}/metrics").json()["epochs"]
    return epochs


def trace(client: TestClient, exp_id: int) -> list[tuple[Any, ...]]:
    keys = ("epoch", "lr", "train_loss", "val_loss", "val_accuracy", "decision")
    return [tuple(r[k] for k in keys) for r in rows(client, exp_id)]


def taken_over(client: TestClient) -> int:
    """A run whose first attempt ("lost:1") lost it: its lease expired and attempt 2
    ("taker:1") claimed it."""
    from sqlalchemy import update

    from service.experiments.models import Experiment

    exp_id = submit(client, IRIS)
    with session_scope() as session:
        repo = ExperimentRepository(session)
        assert repo.claim(exp_id, "lost:1", 60) == 1
        session.execute(update(Experiment).where(Experiment.id == exp_id)
                        .values(lease_expires_at=Experiment.created_at))  # fmt: skip
    with session_scope() as session:
        assert ExperimentRepository(session).claim(exp_id, "taker:1", 60) == 2
    return exp_id


def run_handed_back_after(client: TestClient, exp_id: int, epochs: int) -> Outcome:
    """Run it in-process and shut the worker down once `epochs` epochs are recorded (what
    Celery's warm shutdown does, worker/celery_app.py): the run is handed back."""

    def shut_down() -> None:
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline and detail(client, exp_id)["epochs_run"] < epochs:
            time.sleep(0.002)
        leases.request_shutdown()

    watcher = threading.Thread(target=shut_down)
    watcher.start()
    try:
        return run_experiment(exp_id, owner="test:1")
    finally:
        watcher.join()


def test_a_run_trains_every_epoch_keeps_its_model_and_drops_its_checkpoint(
    client: TestClient,
) -> None:
    exp_id = submit(client, {**IRIS, "checkpoint_every": 2})
    outcome = run_experiment(exp_id, owner="test:1")
    assert (outcome.status, outcome.epochs_run) == (ExperimentStatus.SUCCEEDED, 5)
    got = detail(client, exp_id)
    assert got["status"] == "succeeded" and got["attempt"] == 1 and got["epochs_run"] == 5
    assert got["device"] == "cpu" and got["finished_at"] is not None
    # What the run learnt at its start, written behind its first epoch (`DatabaseSink.begin`).
    assert (got["steps_per_epoch"], got["param_count"]) == (6, 4 * 16 + 16 + 16 * 3 + 3)
    assert got["split_sizes"] == {"train": 90, "val": 30, "test": 30}
    assert got["attempts"][0]["resumed_from_epoch"] == 0
    assert set(got["test_metrics"]) == {"test_loss", "test_accuracy"}
    assert [r["epoch"] for r in rows(client, exp_id)] == [1, 2, 3, 4, 5]
    assert all(r["lr"] == 0.05 for r in rows(client, exp_id))
    assert has_model(store(), exp_id)
    assert checkpoint_keys(store(), exp_id) == []  # dropped once the run ended
    # A second delivery of the same message finds the run ended and does nothing.
    assert run_experiment(exp_id, owner="test:2").status == "not_claimed"
    assert detail(client, exp_id)["attempt"] == 1


@pytest.mark.parametrize("backend", ["postgres"], indirect=True)
def test_a_claim_on_a_connection_the_server_dropped_is_retried(client: TestClient) -> None:
    """The pool pings only connections idle for a second (service/kit/db.py): one the server
    dropped since its last use fails the claim's first statement, and the claim is tried again
    on a new connection instead of failing the task (the run would wait ~60 s to be re-sent)."""
    from sqlalchemy import text

    from service.dispatch.service import wait_sent
    from service.kit.db import get_engine
    from tests.support.databases import drop_connection

    exp_id = submit(client, IRIS)
    assert wait_sent()  # the POST's own background transaction is done with the pool
    with session_scope() as session:  # the connection the next checkout takes (LIFO)
        pid = session.execute(text("SELECT pg_backend_pid()")).scalar_one()
    drop_connection(get_engine().url, pid)
    outcome = run_experiment(exp_id, owner="test:1")
    assert (outcome.status, outcome.epochs_run) == (ExperimentStatus.SUCCEEDED, 5)
    assert detail(client, exp_id)["attempt"] == 1


def test_a_run_cancelled_while_queued_is_never_claimed(client: TestClient) -> None:
    exp_id = submit(client, IRIS)
    assert client.post(f"/v1/experiments/{exp_id}/cancel").status_code in (200, 202)
    assert run_experiment(exp_id, owner="test:1").status == "not_claimed"
    got = detail(client, exp_id)
    assert got["status"] == "cancelled" and got["attempt"] == 0 and rows(client, exp_id) == []


def test_a_diverging_run_ends_diverged_with_its_decision_and_no_model(client: TestClient) -> None:
    spec = {"dataset": "diabetes", "model": {"type": "linear"}, "base_lr": 5.0, "epochs": 60,
            "solver": {"type": "SGD", "params": {"momentum": 0.9}}, "batch_size": 32,
            "device": "cpu"}  # fmt: skip
    exp_id = submit(client, spec)
    assert run_experiment(exp_id, owner="test:1").status == "diverged"
    got = detail(client, exp_id)
    assert got["status"] == "diverged" and got["epochs_run"] < 60
    assert rows(client, exp_id)[-1]["decision"] == "diverged"
    kinds = [
        d["kind"] for d in client.get(f"/v1/experiments/{exp_id}/decisions").json()["decisions"]
    ]
    assert kinds == ["diverged"]
    assert not has_model(store(), exp_id)


def test_early_stopping_ends_the_run_with_the_reason_and_keeps_the_best_epoch(
    client: TestClient,
) -> None:
    # An LR so small the loss barely moves: min_delta makes every epoch "no better".
    stop = {"monitor": "val_loss", "patience": 2, "min_delta": 1.0, "restore_best": True}
    exp_id = submit(client, {**IRIS, "epochs": 20, "base_lr": 1e-4, "early_stopping": stop})
    assert run_experiment(exp_id, owner="test:1").status == "early_stopped"
    got = detail(client, exp_id)
    assert got["status"] == "early_stopped" and got["epochs_run"] == 3
    assert got["best_epoch"] == 1 and got["best_value"] == rows(client, exp_id)[0]["val_loss"]
    assert "val_loss" in got["stop_reason"]
    # restore_best: the model kept is epoch 1's, not the last epoch's.
    weights = load_model(store(), exp_id)
    spec = ExperimentSpec.model_validate({**IRIS, "epochs": 20})
    model = build_model(spec.model, builtin.info("iris"))
    model.load_state_dict(weights)
    data = to_device(spec, builtin.load("iris"), builtin.info("iris"), torch.device("cpu"))
    val = evaluate(model, data.val, "classification")
    assert val.loss == pytest.approx(got["best_value"], rel=1e-6)
    assert val.loss != pytest.approx(rows(client, exp_id)[-1]["val_loss"], rel=1e-9)


def test_a_run_whose_data_is_gone_fails_with_an_error_a_person_reads(client: TestClient) -> None:
    rng = np.random.default_rng(0)
    buf = io.BytesIO()
    np.savez(buf, x=rng.normal(size=(60, 4)).astype("float32"), y=rng.integers(0, 2, 60))
    npz = ("d.npz", buf.getvalue(), "application/octet-stream")
    up = client.post("/v1/datasets", data={"name": "gone-soon"}, files={"file": npz})
    assert up.status_code == 201, up.text
    exp_id = submit(client, {**IRIS, "dataset": "gone-soon", "split": {"train": 0.8, "val": 0.2}})
    store().delete("datasets/gone-soon.npz")
    assert run_experiment(exp_id, owner="test:1").status == "failed"
    got = detail(client, exp_id)
    assert got["status"] == "failed" and "gone-soon.npz" in got["error"]
    assert rows(client, exp_id) == []


def test_a_run_handed_back_at_shutdown_resumes_with_the_identical_trace(
    client: TestClient,
) -> None:
    spec = {**IRIS, "epochs": 20, "checkpoint_every": 1}
    straight = submit(client, spec)
    assert run_experiment(straight, owner="test:0").status == "succeeded"

    exp_id = submit(client, spec)
    first = run_handed_back_after(client, exp_id, epochs=3)
    assert first.status == "handed_back"
    back = detail(client, exp_id)
    assert back["status"] == "queued" and back["worker"] is None and back["attempt"] == 1
    assert 3 <= back["epochs_run"] < 20
    # checkpoint_every 1: the checkpoint holds the last epoch written, and the resume starts there.
    ckpt = load_checkpoint(store(), checkpoint_keys(store(), exp_id)[-1])
    assert ckpt is not None and ckpt["epoch"] == back["epochs_run"] and ckpt["attempt"] == 1

    second = run_experiment(exp_id, owner="test:2")
    assert (second.status, second.epochs_run) == ("succeeded", 20)
    assert detail(client, exp_id)["attempt"] == 2
    assert trace(client, exp_id) == trace(client, straight)  # bit for bit: the same floats
    # Resumed, not started over: attempt 2 wrote only the epochs after the checkpoint.
    with session_scope() as session:
        writers = [r.attempt for r in ExperimentRepository(session).epochs(exp_id)]
    done = back["epochs_run"]
    assert writers == [1] * done + [2] * (20 - done)
    assert detail(client, exp_id)["test_metrics"] == detail(client, straight)["test_metrics"]


def run_cancelled_after_epoch_2(client: TestClient) -> tuple[int, Outcome]:
    """A 400-epoch run trained here while another thread cancels it once epoch 2 is stored."""
    spec = {**IRIS, "dataset": "digits", "epochs": 400, "batch_size": 32}
    exp_id = submit(client, spec)

    def cancel_after_epoch_2() -> None:
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline and detail(client, exp_id)["epochs_run"] < 2:
            time.sleep(0.005)
        client.post(f"/v1/experiments/{exp_id}/cancel")

    watcher = threading.Thread(target=cancel_after_epoch_2)
    watcher.start()
    outcome = run_experiment(exp_id, owner="test:1")
    watcher.join()
    return exp_id, outcome


def test_a_run_cancelled_while_running_stops_at_a_batch_boundary(
    client: TestClient, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(settings, "lease_seconds", 1.0)  # the lease thread looks every 0.33 s
    exp_id, outcome = run_cancelled_after_epoch_2(client)
    assert outcome.status == "cancelled"
    got = detail(client, exp_id)
    assert got["status"] == "cancelled" and got["stop_reason"] == "cancelled while running"
    assert 2 <= got["epochs_run"] < 400 and got["worker"] is None
    assert [r["epoch"] for r in rows(client, exp_id)] == list(range(1, got["epochs_run"] + 1))
    assert not has_model(store(), exp_id)


def test_a_cancel_reaches_a_running_run_through_its_epoch_writes(
    client: TestClient, monkeypatch: pytest.MonkeyPatch
) -> None:
    """With its lease's heartbeat 2 s apart, a run still stops within a few epochs of the
    cancel: the write behind its training reports it (here the heartbeat never does)."""
    monkeypatch.setattr(settings, "lease_seconds", 600.0)  # beats 2 s apart
    monkeypatch.setattr(leases.Lease, "beat", lambda self: None)  # and they see nothing
    started = time.monotonic()
    exp_id, outcome = run_cancelled_after_epoch_2(client)
    assert outcome.status == "cancelled", outcome
    got = detail(client, exp_id)
    assert got["status"] == "cancelled" and got["stop_reason"] == "cancelled while running"
    assert got["epochs_run"] < 400 and time.monotonic() - started < 60
    assert [r["epoch"] for r in rows(client, exp_id)] == list(range(1, got["epochs_run"] + 1))


def test_a_first_attempt_that_lost_its_run_before_it_started_writes_nothing(
    client: TestClient,
) -> None:
    """A first attempt's start is written behind its training: when another attempt took the
    run in between (its lease expired), that write is refused, the attempt stops once told
    (after a few epochs at most), and nothing of it is stored: no rows, no facts, no progress."""
    from worker.runs.training import train_run

    exp_id = taken_over(client)
    spec = ExperimentSpec.model_validate(IRIS)
    outcome = train_run(exp_id, 1, spec, threading.Event(), in_sweep=False)
    assert outcome.status == "lease_lost", outcome
    got = detail(client, exp_id)
    assert (got["status"], got["attempt"], got["epochs_run"]) == ("running", 2, 0)
    assert got["device"] is None and got["param_count"] is None
    assert rows(client, exp_id) == []


def handed_back_with_history(client: TestClient) -> tuple[int, list[dict[str, Any]]]:
    """A run whose first attempt stored epochs 1-4 (a reduce_lr at 3) and no checkpoint, then
    was handed back; its rows as they read then."""
    from tests.support.fake_worker import Worker

    exp_id = submit(client, IRIS)
    first = Worker(exp_id)
    first.claim()
    first.write(1, 2, 3, 4, decision_at=3)
    with session_scope() as session:
        assert ExperimentRepository(session).release(exp_id, first.attempt)
    return exp_id, rows(client, exp_id)


def test_a_resumed_attempt_cuts_the_history_after_its_checkpoint_and_redoes_it(
    client: TestClient,
) -> None:
    """A later attempt's start, written behind its first epoch, cuts the rows and decisions
    after the checkpoint it resumed from (none here: all of them). What the first attempt
    decided that this one does not (its reduce_lr at epoch 3) is gone, not left beside the
    rows redone."""
    exp_id, _ = handed_back_with_history(client)
    straight = submit(client, IRIS)
    assert run_experiment(straight, owner="test:0").status == "succeeded"
    assert run_experiment(exp_id, owner="test:2").status == "succeeded"
    assert trace(client, exp_id) == trace(client, straight)
    with session_scope() as session:
        repo = ExperimentRepository(session)
        assert [r.attempt for r in repo.epochs(exp_id)] == [2] * 5
        assert [(d.epoch, d.kind) for d in repo.decisions(exp_id)] == [
            (d.epoch, d.kind) for d in repo.decisions(straight)
        ]
    assert detail(client, exp_id)["attempts"][1]["resumed_from_epoch"] == 0


def test_a_resumed_attempt_that_lost_its_run_before_it_started_cuts_nothing(
    client: TestClient,
) -> None:
    """When another attempt took the run before the resumed one's start was written, that
    write is refused with its cut: the history stays as it was, rows and decisions."""
    from sqlalchemy import update

    from service.experiments.models import Experiment
    from worker.runs.training import train_run

    exp_id, before = handed_back_with_history(client)
    with session_scope() as session:
        repo = ExperimentRepository(session)
        assert repo.claim(exp_id, "lost:2", 60) == 2
        session.execute(update(Experiment).where(Experiment.id == exp_id)
                        .values(lease_expires_at=Experiment.created_at))  # fmt: skip
    with session_scope() as session:
        assert ExperimentRepository(session).claim(exp_id, "taker:3", 60) == 3
    spec = ExperimentSpec.model_validate(IRIS)
    outcome = train_run(exp_id, 2, spec, threading.Event(), in_sweep=False)
    assert outcome.status == "lease_lost", outcome
    got = detail(client, exp_id)
    assert (got["attempt"], got["epochs_run"]) == (3, 4)
    assert rows(client, exp_id) == before and [r["epoch"] for r in before] == [1, 2, 3, 4]
    assert [r["decision"] for r in before] == [None, None, "reduce_lr", None]
    assert got["attempts"][1]["resumed_from_epoch"] is None


def test_a_run_finished_behind_its_worker_reads_as_one_finished_in_place(
    client: TestClient, capfd: pytest.CaptureFixture[str]
) -> None:
    """What the Celery task asks (`finish_behind=True`): a run with no checkpoint and no sweep is
    finished by the worker's epoch writer while the worker takes its next run. Once the writer
    has answered (the next run's `take` waits for it, and gets the same writer process), it
    reads exactly as the same run finished in place: final status, progress, test metrics, the
    model, its attempt ended, no lease."""
    from worker.runs import epoch_writer

    in_place, behind = submit(client, IRIS), submit(client, IRIS)
    assert run_experiment(in_place, owner="test:1").status == "succeeded"
    writer = epoch_writer.take()
    pid = writer.pid
    epoch_writer.give_back(writer)
    outcome = run_experiment(behind, owner="test:1", finish_behind=True)
    assert (outcome.status, outcome.epochs_run) == (ExperimentStatus.SUCCEEDED, 5)
    writer = epoch_writer.take()
    try:
        assert writer.pid == pid
        got, same = detail(client, behind), detail(client, in_place)
        assert (got["status"], got["epochs_run"], got["worker"]) == ("succeeded", 5, None)
        assert got["finished_at"] is not None and got["test_metrics"] == same["test_metrics"]
        assert [(a["outcome"], a["ended_at"] is not None) for a in got["attempts"]] == [
            ("succeeded", True)
        ]
        assert got["model"] is not None and got["model"]["size"] == same["model"]["size"]
        assert has_model(store(), behind)
        assert trace(client, behind) == trace(client, in_place)
        # Its `finished` event, logged once the writer answered, carries the run's fields.
        ends = [line for line in capfd.readouterr().out.splitlines()
                if " finished " in line and f"experiment_id={behind} " in line]  # fmt: skip
        assert len(ends) == 1 and "worker=test:1" in ends[0], ends
    finally:
        epoch_writer.give_back(writer)


def test_a_finish_behind_a_worker_that_lost_its_run_stores_nothing(client: TestClient) -> None:
    """The final write behind a worker is fenced by its attempt as every write of it: when
    another attempt took the run meanwhile, neither the status nor the model row is stored."""
    from service.artifacts.repository import ArtifactRepository
    from worker.runs import epoch_writer
    from worker.runs.artifacts import SavedModel
    from worker.runs.finish import finish_run_behind

    exp_id = taken_over(client)
    model = SavedModel(f"models/{exp_id}-lost.safetensors", "0" * 64, 10, exp_id, 1)
    finish_run_behind(exp_id, 1, ExperimentStatus.SUCCEEDED, 5, model,
                      stop_reason=None, test_metrics={"test_loss": 0.1})  # fmt: skip
    epoch_writer.give_back(epoch_writer.take())  # the writer has answered
    got = detail(client, exp_id)
    assert (got["status"], got["attempt"], got["worker"]) == ("running", 2, "taker:1")
    assert got["finished_at"] is None and got["test_metrics"] is None
    with session_scope() as session:
        assert ArtifactRepository(session).models_of([exp_id]) == {}


def test_one_heartbeat_thread_renews_each_lease_and_sees_each_cancel(client: TestClient) -> None:
    """Every lease of the process is renewed by the same thread, each on its own schedule, and a
    cancel stops only the run it names."""
    ids = [submit(client, IRIS) for _ in range(2)]
    with session_scope() as session:
        repo = ExperimentRepository(session)
        claimed = [repo.claim_run(i, "test:1", 0.6) for i in ids]
    assert all(c is not None and c.attempt == 1 for c in claimed)

    def expiries() -> list[Any]:
        with session_scope() as session:
            runs = [ExperimentRepository(session).get(i) for i in ids]
            return [run.lease_expires_at for run in runs if run is not None]

    held = [leases.Lease(i, 1, 0.6) for i in ids]  # renewed every 0.2 s
    for lease in held:
        lease.start()
    try:
        before = expiries()
        time.sleep(0.7)
        assert all(a > b for a, b in zip(expiries(), before, strict=True))
        assert client.post(f"/v1/experiments/{ids[1]}/cancel").status_code == 200
        assert held[1].stop.wait(2) and held[1].cancelled
        assert not held[0].stop.is_set()
    finally:
        for lease in held:
            lease.close()
    again = leases.Lease(ids[0], 1, 0.6)
    again.start()
    again.close()
    assert [t.name for t in threading.enumerate()].count("leases") == 1

"""GET /metrics as Prometheus reads it, on SQLite and on PostgreSQL: the text parsed with
prometheus_client's own parser; runs, epochs, decisions and queue waits counted from the database
after runs are created, trained in-process and cancelled; no label is a run id; HTTP requests
counted by route template."""

from __future__ import annotations

import logging
from typing import Any

import pytest
import structlog
from fastapi.testclient import TestClient
from prometheus_client.parser import text_string_to_metric_families
from prometheus_client.samples import Sample
from sqlalchemy import delete, func, insert, select, update

from service.config import settings
from service.dispatch import broker
from service.dispatch.service import RUN_TASK
from service.experiments.models import Decision, EpochRow, Experiment
from service.kit.db import get_engine, session_scope
from service.kit.logging import configure
from service.monitoring import access_log, collector, http_metrics, queues
from service.monitoring.collector import EPOCH_BUCKETS
from service.monitoring.repository import MonitoringRepository
from service.monitoring.tail import GAP_WINDOW
from tests.api.test_pruners_api import drain
from tests.support.runs import end_run
from worker.runs.lifecycle import run_experiment

# Stops early after 3 epochs (no epoch is min_delta better than the first): one decision.
STOPS_EARLY: dict[str, Any] = {
    "dataset": "iris",
    "split": {"train": 0.6, "val": 0.2, "test": 0.2, "seed": 1},
    "model": {"type": "mlp", "hidden": [8]},
    "base_lr": 1e-4,
    "epochs": 20,
    "device": "cpu",
    "early_stopping": {"monitor": "val_loss", "patience": 2, "min_delta": 1.0},
}


@pytest.fixture(autouse=True)
def _sender_of_this_test() -> None:
    """The API's Celery sender is made once per process (dispatch/broker.py); a test's embedded
    broker is a folder of its own, so make it again for this test's folder."""
    broker.sender.cache_clear()


def scrape(client: TestClient) -> dict[str, list[Sample]]:
    """Samples by sample name (`glidepath_epochs_total`, `..._bucket`), as Prometheus sees them."""
    r = client.get("/metrics")
    assert r.status_code == 200, r.text
    assert r.headers["content-type"].startswith("text/plain; version=0.0.4")
    out: dict[str, list[Sample]] = {}
    for family in text_string_to_metric_families(r.text):
        for sample in family.samples:
            out.setdefault(sample.name, []).append(sample)
    return out


def value(samples: dict[str, list[Sample]], name: str, **labels: str) -> float:
    found = [s.value for s in samples.get(name, []) if labels.items() <= s.labels.items()]
    assert len(found) == 1, (name, labels, samples.get(name))
    return found[0]


def create(client: TestClient, spec: dict[str, Any]) -> int:
    r = client.post("/v1/experiments", json=spec)
    assert r.status_code == 201, r.text
    return int(r.json()["id"])


def test_counts_follow_runs_created_trained_and_cancelled(client: TestClient) -> None:
    empty = scrape(client)
    assert value(empty, "glidepath_runs", status="queued") == 0
    assert value(empty, "glidepath_epochs_total") == 0
    assert value(empty, "glidepath_queue_wait_seconds_count") == 0
    assert value(empty, "glidepath_workers", state="alive") == 0

    trained, waiting, cancelled = (create(client, STOPS_EARLY) for _ in range(3))
    assert client.post(f"/v1/experiments/{cancelled}/cancel").status_code == 200
    assert run_experiment(trained, owner="test:1").status == "early_stopped"

    got = scrape(client)
    assert value(got, "glidepath_runs", status="queued") == 1
    assert value(got, "glidepath_runs", status="early_stopped") == 1
    assert value(got, "glidepath_runs", status="cancelled") == 1
    assert value(got, "glidepath_runs", status="running") == 0
    assert value(got, "glidepath_epochs_total") == 3
    assert value(got, "glidepath_epoch_duration_seconds_count") == 3
    assert value(got, "glidepath_epoch_duration_seconds_bucket", le="+Inf") == 3
    assert value(got, "glidepath_epoch_duration_seconds_sum") > 0
    assert value(got, "glidepath_decisions_total", kind="early_stop") == 1
    assert value(got, "glidepath_decisions_total", kind="reduce_lr") == 0
    # The run still queued is looked at again only when the queued runs change.
    figures = collector.figures_for(get_engine())
    assert figures.waiting == {waiting}
    with session_scope() as s:
        assert MonitoringRepository(s).probe().queued_signature == figures.queued_seen
    # Only the trained run has started: one wait observed, however long it took.
    assert value(got, "glidepath_queue_wait_seconds_count") == 1
    assert value(got, "glidepath_queue_wait_seconds_bucket", le="+Inf") == 1
    # Each run's task was sent to its queue (`cpu`: its device) in the embedded broker's folder;
    # none was consumed (the run was trained in-process), so all three messages wait there.
    assert value(got, "glidepath_queue_depth", queue="cpu") == 3
    assert value(got, "glidepath_broker_up") == 1

    # The waiting run starts later: its wait is observed then, once, however often it is read.
    end_run(waiting, [0.5, 0.4])
    again = scrape(client)
    assert value(again, "glidepath_queue_wait_seconds_count") == 2
    assert value(again, "glidepath_epochs_total") == 5
    assert value(again, "glidepath_runs", status="succeeded") == 1
    assert value(scrape(client), "glidepath_epochs_total") == 5

    # A process that starts now (another API process, or this one restarted) reads the same.
    collector._figures.clear()
    fresh = scrape(client)
    for name in ("glidepath_runs", "glidepath_epochs_total", "glidepath_queue_wait_seconds_count",
                 "glidepath_epoch_duration_seconds_sum", "glidepath_decisions_total"):  # fmt: skip
        assert fresh[name] == again[name], name


def test_no_label_value_is_a_run_id(client: TestClient) -> None:
    ids = [create(client, STOPS_EARLY) for _ in range(2)]
    for i in ids:
        assert client.get(f"/v1/experiments/{i}").status_code == 200
        assert client.get(f"/v1/experiments/{i}/metrics").status_code == 200
    end_run(ids[0], [0.3])
    got = scrape(client)
    labels = {v for samples in got.values() for s in samples for v in s.labels.values()}
    assert "/v1/experiments/{experiment_id}" in labels  # the template is there, not the path
    for i in ids:
        assert str(i) not in labels
        assert not [v for v in labels if f"/{i}" in v], labels


def test_http_requests_are_counted_by_route_template(client: TestClient) -> None:
    template = "/v1/experiments/{experiment_id}"
    before = scrape(client)

    def count(samples: dict[str, list[Sample]], **labels: str) -> float:
        found = [s.value for s in samples.get("glidepath_http_requests_total", [])
                 if labels.items() <= s.labels.items()]  # fmt: skip
        return sum(found)

    a, b = create(client, STOPS_EARLY), create(client, STOPS_EARLY)
    for i in (a, b, a):
        assert client.get(f"/v1/experiments/{i}").status_code == 200
    assert client.get("/v1/experiments/987654").status_code == 404
    assert client.get("/no/such/page/42").status_code == 404
    assert client.get("/static/no-such-file.js").status_code == 404
    after = scrape(client)

    def delta(**labels: str) -> float:
        return count(after, **labels) - count(before, **labels)

    assert delta(method="GET", route=template, status="200") == 3
    assert delta(method="GET", route=template, status="404") == 1
    assert delta(method="POST", route="/v1/experiments", status="201") == 2
    assert delta(route="unmatched", status="404") == 1
    assert delta(route="/static/{path}", status="404") == 1
    assert delta(method="GET", route="/metrics", status="200") == 1  # the first scrape
    durations = [s for s in after["glidepath_http_request_duration_seconds_count"]
                 if s.labels == {"method": "GET", "route": template}]  # fmt: skip
    assert durations and durations[0].value >= 4


def test_each_request_is_one_request_event_reads_at_debug(
    client: TestClient, caplog: pytest.LogCaptureFixture
) -> None:
    """What uvicorn's access line said, as a structured event with the route: a successful read
    at DEBUG (a poller's every answer), a write and anything refused at INFO."""
    caplog.set_level(logging.DEBUG, logger=access_log.NAME)  # the level the event is asked at
    made = create(client, STOPS_EARLY)
    with structlog.testing.capture_logs() as logged:
        assert client.post("/v1/experiments", json=STOPS_EARLY).status_code == 201
        poll = client.get(f"/v1/experiments/{made}", headers={"X-Request-ID": "poll-1"})
        assert poll.status_code == 200
        assert client.get("/v1/experiments/987654").status_code == 404
    events = [e for e in logged if e["event"] == "request"]
    assert [(e["log_level"], e["method"], e["route"], e["status"]) for e in events] == [
        ("info", "POST", "/v1/experiments", 201),
        ("debug", "GET", "/v1/experiments/{experiment_id}", 200),
        ("info", "GET", "/v1/experiments/{experiment_id}", 404),
    ]
    assert events[1]["path"] == f"/v1/experiments/{made}" and events[1]["ms"] >= 0
    caplog.set_level(logging.INFO, logger=access_log.NAME)  # the default: reads not logged
    with structlog.testing.capture_logs() as logged:
        assert client.get(f"/v1/experiments/{made}").status_code == 200
        assert client.delete("/v1/experiments/987654").status_code == 404
    assert [(e["method"], e["status"]) for e in logged if e["event"] == "request"] == [
        ("DELETE", 404)
    ]
    # uvicorn's own line is off as a process configures its logs: no handler and not propagated,
    # so its protocol never formats it.
    root = logging.getLogger()
    saved = root.handlers[:], root.level
    try:
        configure()
        assert not logging.getLogger("uvicorn.access").hasHandlers()
    finally:
        root.handlers[:] = saved[0]
        root.setLevel(saved[1])
        structlog.reset_defaults()


def test_a_request_answered_before_routing_is_labelled_with_its_route(client: TestClient) -> None:
    """A 413 from a Content-Length past the limit is sent before the router runs."""
    scope = {"type": "http", "method": "POST", "root_path": "", "app": client.app}
    for path, template in (("/v1/datasets", "/v1/datasets"),
                           ("/v1/experiments/7/cancel", "/v1/experiments/{experiment_id}/cancel"),
                           ("/no/such/route", "unmatched")):  # fmt: skip
        assert http_metrics.route_of({**scope, "path": path}, "") == template


def test_an_epoch_committed_after_a_newer_one_is_still_counted(client: TestClient) -> None:
    """On PostgreSQL ids are handed out at insert, not at commit: a scrape can see row N+1
    before row N commits. Rows with chosen ids stand for that here, on both databases."""
    run = create(client, STOPS_EARLY)
    end_run(run, [0.5])  # one epoch, id 1
    assert value(scrape(client), "glidepath_epochs_total") == 1

    def epoch(row_id: int, n: int) -> None:
        with session_scope() as s:
            s.add(EpochRow(id=row_id, experiment_id=run, epoch=n, lr=0.1, duration_s=2.0,
                           attempt=1))  # fmt: skip

    epoch(10, 10)
    assert value(scrape(client), "glidepath_epochs_total") == 2
    epoch(7, 7)  # below the mark: found among the gaps
    epoch(12, 12)
    got = scrape(client)
    assert value(got, "glidepath_epochs_total") == 4
    assert value(got, "glidepath_epoch_duration_seconds_bucket", le="2.5") == 4
    assert value(scrape(client), "glidepath_epochs_total") == 4  # none counted twice
    figures = collector.figures_for(get_engine())
    assert 7 not in figures.epochs.gaps and {8, 9, 11} <= set(figures.epochs.gaps)


def test_a_long_history_is_summed_by_the_database_at_the_first_scrape(client: TestClient) -> None:
    """Past GAP_WINDOW rows, a first scrape sums the history in SQL and reads only the newest
    rows one by one: the same figures as reading them all, none counted twice at the seam."""
    with session_scope() as s:
        s.add_all(Experiment(spec={}, queue="gpu") for _ in range(4))
    n = GAP_WINDOW + 500
    # Durations on and around the bucket bounds: `le` means at or below, in SQL as in Python.
    durations = [EPOCH_BUCKETS[i % len(EPOCH_BUCKETS)] * (1, 0.999, 1.001)[i % 3] for i in range(n)]
    with get_engine().begin() as conn:
        conn.execute(insert(EpochRow), [{"experiment_id": 1 + i % 3, "epoch": i, "lr": 0.1,
                                         "duration_s": d, "attempt": 1}
                                        for i, d in enumerate(durations)])  # fmt: skip
        conn.execute(insert(Decision), [{"experiment_id": 1 + i % 3, "epoch": i,
                                         "kind": ("reduce_lr", "early_stop")[i % 2], "reason": ""}
                                        for i in range(n)])  # fmt: skip
    got = scrape(client)
    assert collector.figures_for(get_engine()).epochs.mark == n  # read past the summed part
    assert value(got, "glidepath_runs", status="queued") == 4
    assert value(got, "glidepath_queue_depth", queue="gpu") == 0  # no message was sent
    assert value(got, "glidepath_epochs_total") == n
    for bound in EPOCH_BUCKETS:
        below = sum(d <= bound for d in durations)
        assert value(got, "glidepath_epoch_duration_seconds_bucket", le=str(float(bound))) == below
    assert value(got, "glidepath_epoch_duration_seconds_sum") == pytest.approx(sum(durations))
    assert value(got, "glidepath_decisions_total", kind="reduce_lr") == (n + 1) // 2
    assert value(got, "glidepath_decisions_total", kind="early_stop") == n // 2
    end_run(4, [0.5, 0.4])  # two more epochs, a scrape later
    assert value(scrape(client), "glidepath_epochs_total") == n + 2


def test_runs_a_sweeps_pruner_stops_are_counted_as_pruned_decisions(client: TestClient) -> None:
    """`glidepath_decisions_total{kind="pruned"}`: one per run a sweep's pruner stopped, at a
    synchronous rung (no worker holds those runs) as by ASHA; a late process agrees, and
    deleting a pruned run un-counts nothing (a counter). It stayed at 0: a pruner's stop is no
    row of the runs' decisions."""
    base = {"dataset": "iris", "model": {"type": "mlp", "hidden": [8]}, "epochs": 4,
            "batch_size": 64, "device": "cpu"}  # fmt: skip
    pruned = 0
    for rule in ("successive_halving", "asha"):
        body = {"base": base, "strategy": "grid", "pruner": {"type": rule},
                "parameters": {"base_lr": [0.003, 0.03, 0.3, 0.001, 0.01, 0.1]}}  # fmt: skip
        r = client.post("/v1/sweeps", json=body)
        assert r.status_code == 201, r.text
        drain(client, r.json()["sweep_id"])
        counts = client.get(f"/v1/sweeps/{r.json()['sweep_id']}").json()["counts"]
        assert counts.get("pruned", 0) > 0  # each rule stops some of the six
        pruned += counts["pruned"]
    got = scrape(client)
    assert value(got, "glidepath_runs", status="pruned") == pruned
    assert value(got, "glidepath_decisions_total", kind="pruned") == pruned
    collector._figures.clear()  # a process that starts now reads the same
    assert value(scrape(client), "glidepath_decisions_total", kind="pruned") == pruned
    victim = client.get("/v1/experiments", params={"status": "pruned"}).json()["items"][0]["id"]
    assert client.delete(f"/v1/experiments/{victim}").status_code == 204
    after = scrape(client)
    assert value(after, "glidepath_runs", status="pruned") == pruned - 1
    assert value(after, "glidepath_decisions_total", kind="pruned") == pruned


def test_a_long_history_of_pruned_runs_is_summed_at_the_first_scrape(client: TestClient) -> None:
    """Past GAP_WINDOW ledger rows, a first scrape sums the runs that entered `pruned` in SQL
    (runs deleted since still counted) and reads the newest rows one by one."""
    n = GAP_WINDOW + 300
    with get_engine().begin() as conn:
        conn.execute(insert(Experiment), [{"spec": {}, "name": f"r{i}"} for i in range(n)])
        conn.execute(update(Experiment).where(Experiment.id % 3 == 0).values(status="pruned"))
        conn.execute(delete(Experiment).where(Experiment.id % 6 == 0))
        conn.execute(update(Experiment).where(Experiment.id == n - 2).values(status="pruned"))
    got = scrape(client)
    assert value(got, "glidepath_runs", status="pruned") == n // 3 - n // 6 + 1
    assert value(got, "glidepath_decisions_total", kind="pruned") == n // 3 + 1


def runs_by_status() -> dict[str, int]:
    """What counting the runs says (what the gauge must say)."""
    with get_engine().connect() as conn:
        stmt = select(Experiment.status, func.count()).group_by(Experiment.status)
        return {str(status): int(n) for status, n in conn.execute(stmt)}


def gauge(samples: dict[str, list[Sample]]) -> dict[str, int]:
    return {s.labels["status"]: int(s.value) for s in samples["glidepath_runs"] if s.value}


def test_runs_by_status_follow_every_writer_and_a_late_process_agrees(client: TestClient) -> None:
    """The gauge is summed from the ledger the database's triggers keep, not counted: it follows
    runs inserted in bulk, moved between statuses by raw SQL and deleted over the API, past
    GAP_WINDOW changes; a process that starts later (summing the history in SQL) agrees."""
    n = GAP_WINDOW + 300
    with get_engine().begin() as conn:
        conn.execute(insert(Experiment), [{"spec": {}, "name": f"r{i}"} for i in range(n)])
    assert gauge(scrape(client)) == {"queued": n} == runs_by_status()
    with get_engine().begin() as conn:
        conn.execute(update(Experiment).where(Experiment.id % 3 == 0).values(status="running"))
        conn.execute(update(Experiment).where(Experiment.id % 5 == 0).values(status="cancelled"))
        # Not a change of status: neither counted nor uncounted.
        conn.execute(update(Experiment).where(Experiment.id % 7 == 0).values(epochs_run=1))
        conn.execute(update(Experiment).where(Experiment.id == 10).values(status="cancelled"))
    moved = scrape(client)
    assert gauge(moved) == runs_by_status() and gauge(moved)["cancelled"] == n // 5
    for run_id in (5, 10, 15):  # cancelled runs: they have ended, so they can be deleted
        assert client.delete(f"/v1/experiments/{run_id}").status_code == 204
    with get_engine().begin() as conn:
        conn.execute(delete(Experiment).where(Experiment.id > n - 10))
    after = scrape(client)
    assert gauge(after) == runs_by_status()
    assert sum(gauge(after).values()) == n - 13
    collector._figures.clear()
    assert gauge(scrape(client)) == gauge(after)


@pytest.mark.postgres
def test_queue_depth_is_read_from_redis(redis_url: str, monkeypatch: pytest.MonkeyPatch) -> None:
    """The production broker: kombu's lists in Redis, one per queue and priority step."""
    monkeypatch.setattr(settings, "broker_url", redis_url)
    sender = broker.make_celery()
    for queue, n in (("gpu", 2), ("auto.model.tiny_resnet", 1)):
        for i in range(n):
            sender.send_task(RUN_TASK, args=[i], queue=queue)
    sender.send_task(RUN_TASK, args=[9], queue="gpu", priority=5)  # its own list
    wanted = {"gpu", "auto.model.tiny_resnet", "cpu"}
    assert queues.depths(wanted) == {"gpu": 3, "auto.model.tiny_resnet": 1, "cpu": 0}
    monkeypatch.setattr(settings, "broker_url", "redis://127.0.0.1:1/0")  # nothing listens
    assert queues.depths(wanted) is None


def test_metrics_need_a_token_with_the_read_role_once_tokens_exist(client: TestClient) -> None:
    assert client.get("/metrics").status_code == 200  # open while no token exists
    admin = client.post("/v1/tokens", json={"name": "root", "role": "admin"}).json()["token"]
    made = client.post("/v1/tokens", json={"name": "prometheus", "role": "read"},
                       headers={"Authorization": f"Bearer {admin}"})  # fmt: skip
    assert made.status_code == 201, made.text
    r = client.get("/metrics")
    assert r.status_code == 401 and r.json()["detail"][0]["type"] == "unauthorized"
    r = client.get("/metrics", headers={"Authorization": f"Bearer {made.json()['token']}"})
    assert r.status_code == 200 and "glidepath_runs{" in r.text

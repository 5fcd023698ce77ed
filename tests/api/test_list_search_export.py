"""GET /v1/experiments with `q` (name search) and `sort` (keyset-paged in every order), and a
run's metrics as CSV (GET /v1/experiments/{id}/metrics.csv)."""

from __future__ import annotations

import base64
import csv
import io
import json
from typing import Any

import pytest
from fastapi.testclient import TestClient

from service.experiments.listing import ListSort
from service.experiments.models import EpochRow
from service.experiments.repository import ExperimentRepository
from service.kit.db import session_scope
from tests.support.runs import end_run

SPEC: dict[str, Any] = {"dataset": "iris", "model": {"type": "mlp", "hidden": [4]}, "epochs": 3}


def submit(client: TestClient, name: str, base_lr: float, **extra: Any) -> int:
    r = client.post("/v1/experiments", json={**SPEC, "name": name, "base_lr": base_lr, **extra})
    assert r.status_code == 201, r.text
    return int(r.json()["id"])


def finish_with_best(experiment_id: int, best: float) -> None:
    """End a run as its worker would, with `best` as its best value (at epoch 1)."""
    with session_scope() as s:
        repo = ExperimentRepository(s)
        attempt = repo.claim(experiment_id, "test-worker", 60)
        assert attempt is not None
        repo.write_epoch({"experiment_id": experiment_id, "epoch": 1, "lr": 0.1,
                          "duration_s": 0.01, "decision": None, "attempt": attempt,
                          "state": None, "train_loss": best, "val_loss": best}, [])  # fmt: skip
        assert repo.finish(experiment_id, attempt, "succeeded", best_value=best, best_epoch=1,
                           epochs_run=1)  # fmt: skip


def listed(client: TestClient, **params: Any) -> list[int]:
    r = client.get("/v1/experiments", params=params)
    assert r.status_code == 200, r.text
    return [e["id"] for e in r.json()["items"]]


def paged(client: TestClient, limit: int, cursor: str | None = None, **params: Any) -> list[int]:
    """Every run from `cursor` on, following `next_cursor` page by page."""
    ids: list[int] = []
    while True:
        r = client.get("/v1/experiments", params={**params, "limit": limit, "cursor": cursor})
        assert r.status_code == 200, r.text
        body = r.json()
        assert len(body["items"]) <= limit
        ids += [e["id"] for e in body["items"]]
        cursor = body["next_cursor"]
        if cursor is None:
            return ids


@pytest.fixture
def runs(client: TestClient) -> dict[str, int]:
    """Seven runs: names that sort apart from their ids, base_lrs with a tie, bests on four
    (two tied) and none on three (queued)."""
    made = {
        "delta": submit(client, "delta", 0.1),
        "Alpha": submit(client, "Alpha", 0.001),
        "charlie": submit(client, "charlie", 0.1),
        "bravo": submit(client, "bravo", 0.03),
        "echo": submit(client, "echo", 0.5),
        "foxtrot": submit(client, "foxtrot", 0.0003),
        "golf": submit(client, "golf", 0.03),
    }
    for name, best in {"delta": 0.4, "Alpha": 0.2, "bravo": 0.4, "echo": 0.9}.items():
        finish_with_best(made[name], best)
    return made


def test_every_sort_orders_and_pages_without_gaps_or_repeats(
    client: TestClient, runs: dict[str, int]
) -> None:
    names = ("delta", "Alpha", "charlie", "bravo", "echo", "foxtrot", "golf")
    d, a, c, b, e, f, g = (runs[n] for n in names)
    expected = {
        "-created": [g, f, e, b, c, a, d],
        "created": [d, a, c, b, e, f, g],
        "id": [d, a, c, b, e, f, g],
        "-id": [g, f, e, b, c, a, d],
        "name": [a, b, c, d, e, f, g],  # case ignored: Alpha first
        "-name": [g, f, e, d, c, b, a],
        # ties by id in the sort's direction; runs with no best yet last either way
        "best": [a, d, b, e, c, f, g],
        "-best": [e, b, d, a, g, f, c],
        "base_lr": [f, a, b, g, d, c, e],
        "-base_lr": [e, c, d, g, b, a, f],
        "status": [c, f, g, d, a, b, e],  # queued before succeeded, by id
        "-status": [e, b, a, d, g, f, c],
    }
    assert set(expected) == {s.value for s in ListSort}
    for sort, order in expected.items():
        assert listed(client, sort=sort) == order, sort
        for limit in (1, 2, 3):
            assert paged(client, limit, sort=sort) == order, (sort, limit)
    assert listed(client) == expected["-created"]  # the default


def test_a_page_boundary_holds_while_runs_are_added(
    client: TestClient, runs: dict[str, int]
) -> None:
    first = client.get("/v1/experiments", params={"sort": "base_lr", "limit": 3}).json()
    assert [e["spec"]["base_lr"] for e in first["items"]] == [0.0003, 0.001, 0.03]
    newer = submit(client, "hotel", 0.0001)  # sorts before the page already read
    later = submit(client, "india", 0.2)  # sorts after it
    rest = paged(client, 2, sort="base_lr", cursor=first["next_cursor"])
    assert newer not in rest and later in rest
    assert len(rest) == len(runs) - 3 + 1


def test_search_by_name_ignores_case_and_takes_wildcards_literally(
    client: TestClient, runs: dict[str, int]
) -> None:
    pct = submit(client, "lr_100%", 0.1)
    under = submit(client, "lrx100", 0.1)
    assert listed(client, q="ALPHA") == [runs["Alpha"]]
    assert listed(client, q="o", sort="name") == [runs["bravo"], runs["echo"], runs["foxtrot"],
                                                  runs["golf"]]  # fmt: skip
    assert listed(client, q="%") == [pct]
    assert listed(client, q="r_1") == [pct]  # `_` is no wildcard: lrx100 does not match
    assert under in listed(client, q="lrx")
    assert listed(client, q="nothing-like-it") == []
    # Beyond ASCII too, on both backends (SQLite's own lower() folds ASCII only).
    accented = submit(client, "Élan Ω-run", 0.1)
    assert listed(client, q="élan") == listed(client, q="ÉLAN ω") == [accented]
    # with the other filters and a sort, paged
    assert paged(client, 1, q="a", status="succeeded", sort="-best") == [
        runs["bravo"], runs["delta"], runs["Alpha"]
    ]  # fmt: skip
    assert listed(client, q="") == listed(client)  # empty: no filter


def test_list_items_carry_the_hyper_parameter_columns(client: TestClient) -> None:
    spec = {"solver": {"type": "SGD", "params": {"momentum": 0.9}}, "batch_size": 16,
            "scheduler": {"type": "StepLR", "params": {"step_size": 2}}}  # fmt: skip
    i = submit(client, "cols", 0.0123, **spec)
    (item,) = client.get("/v1/experiments").json()["items"]
    assert item["id"] == i
    assert item["spec"]["base_lr"] == 0.0123
    assert item["spec"]["solver"]["type"] == "SGD"
    assert item["spec"]["scheduler"]["type"] == "StepLR"
    assert item["spec"]["batch_size"] == 16


def cursor_of(body: dict[str, Any]) -> str:
    return base64.urlsafe_b64encode(json.dumps(body).encode()).decode()


def test_bad_sort_q_and_cursor_are_422_with_their_field(
    client: TestClient, runs: dict[str, int]
) -> None:
    def error(**params: Any) -> list[Any]:
        r = client.get("/v1/experiments", params=params)
        assert r.status_code == 422, r.text
        return list(r.json()["detail"][0]["loc"])

    assert error(sort="best_lr") == ["query", "sort"]
    assert error(sort="") == ["query", "sort"]
    assert error(q="x" * 201) == ["query", "q"]
    assert len(listed(client, q="x" * 200)) == 0
    by_name = client.get("/v1/experiments", params={"sort": "name", "limit": 2}).json()
    assert error(sort="-name", cursor=by_name["next_cursor"]) == ["query", "cursor"]
    assert error(cursor=by_name["next_cursor"]) == ["query", "cursor"]
    malformed: list[tuple[str, Any]] = [
        ("name", {"sort": "name", "key": [5, 1]}),
        ("best", {"sort": "best", "key": ["x", 1]}),
        ("id", {"sort": "id", "key": [1, 2**40]}),
        ("-created", {"sort": "nope", "key": [1, 1]}),
        ("best", {"sort": "best", "key": [1.0]}),
        ("base_lr", {"sort": "base_lr", "key": [10**400, 1]}),  # no float holds it
        ("-created", {"before": "1"}),
        ("id", [1, 2]),
    ]
    for sort, body in malformed:
        assert error(sort=sort, cursor=cursor_of(body)) == ["query", "cursor"], body
    assert error(cursor="not base64!") == ["query", "cursor"]
    assert error(cursor=base64.urlsafe_b64encode(b"[" * 1400).decode()) == ["query", "cursor"]
    assert error(cursor="x" * 2001) == ["query", "cursor"]
    # a cursor from before `sort` existed still pages newest first
    old = cursor_of({"before": runs["charlie"]})
    assert listed(client, cursor=old) == [runs["Alpha"], runs["delta"]]


def test_metrics_csv_is_an_attachment_with_a_row_per_epoch(client: TestClient) -> None:
    i = submit(client, "csv", 0.1)
    end_run(i, [1.0, 0.75, 0.5], lrs=[0.1, 0.1, 0.05],
            decisions={2: {"kind": "reduce_lr", "monitor": "val_loss", "value": 0.75,
                           "best": 0.75, "best_epoch": 2, "old_lr": 0.1, "new_lr": 0.05,
                           "reason": "plateau"}})  # fmt: skip
    r = client.get(f"/v1/experiments/{i}/metrics.csv")
    assert r.status_code == 200, r.text
    assert r.headers["content-type"] == "text/csv; charset=utf-8"
    assert r.headers["content-disposition"] == f'attachment; filename="experiment-{i}-metrics.csv"'
    rows = list(csv.DictReader(io.StringIO(r.text)))
    assert list(rows[0]) == ["epoch", "lr", "lr_min", "lr_max", "train_loss", "val_loss",
                             "val_accuracy", "duration_s", "decision"]  # fmt: skip
    assert [int(row["epoch"]) for row in rows] == [1, 2, 3]
    assert [float(row["val_loss"]) for row in rows] == [1.0, 0.75, 0.5]
    assert [float(row["lr"]) for row in rows] == [0.1, 0.1, 0.05]
    assert [row["decision"] for row in rows] == ["", "reduce_lr", ""]
    assert rows[0]["lr_min"] == ""  # null: an empty cell
    # the same numbers as the JSON export (the metrics page)
    page = client.get(f"/v1/experiments/{i}/metrics").json()
    assert [e["train_loss"] for e in page["epochs"]] == [float(r["train_loss"]) for r in rows]


def test_metrics_csv_of_a_run_that_diverged_at_once_has_both_validation_columns(
    client: TestClient,
) -> None:
    """Its only row has neither accuracy nor MAE (a NaN MAE is stored as null on SQLite): the
    column a regression reader looks for is there, empty, rather than missing."""
    i = submit(client, "diverged", 0.1)
    with session_scope() as session:
        session.add(EpochRow(experiment_id=i, epoch=1, lr=0.1, duration_s=0.01, attempt=1,
                             decision="diverged"))  # fmt: skip
    rows = list(csv.DictReader(io.StringIO(client.get(f"/v1/experiments/{i}/metrics.csv").text)))
    assert [(r["val_accuracy"], r["val_mae"]) for r in rows] == [("", "")]


def test_metrics_csv_of_a_run_without_epochs_and_of_none(client: TestClient) -> None:
    i = submit(client, "empty", 0.1)
    r = client.get(f"/v1/experiments/{i}/metrics.csv")
    assert r.status_code == 200
    assert r.text.splitlines() == ["epoch,lr,lr_min,lr_max,train_loss,val_loss,duration_s,decision"]
    missing = client.get("/v1/experiments/999999/metrics.csv")
    assert missing.status_code == 404
    assert missing.json()["detail"][0]["loc"] == ["path", "experiment_id"]
    huge = client.get(f"/v1/experiments/{2**40}/metrics.csv")
    assert huge.status_code == 422
    assert huge.json()["detail"][0]["loc"] == ["path", "experiment_id"]


def test_compare_gives_what_the_time_and_step_axes_need(client: TestClient) -> None:
    i = submit(client, "axes", 0.1)
    end_run(i, [1.0, 0.5])
    (series,) = client.get("/v1/experiments/compare", params={"ids": str(i)}).json()["series"]
    assert series["duration_s"] == [0.01, 0.01]
    assert "steps_per_epoch" in series  # null here: written by a worker when the run starts


def test_a_sorted_searched_page_costs_the_same_queries_for_one_run_and_for_five(
    client: TestClient, runs: dict[str, int], statements: list[str]
) -> None:
    params = {"sort": "-base_lr", "q": "o", "limit": 1}
    statements.clear()
    one = client.get("/v1/experiments", params=params)
    few = len(statements)
    statements.clear()
    five = client.get("/v1/experiments", params={**params, "limit": 5})
    assert one.status_code == five.status_code == 200
    assert len(five.json()["items"]) == 4  # bravo, echo, foxtrot, golf
    assert len(statements) == few  # no query per run

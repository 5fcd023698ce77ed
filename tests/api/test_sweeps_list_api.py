"""GET /v1/sweeps on SQLite and PostgreSQL: each line names the sweep's metric, its swept fields,
its pruner and its best run among those that finished well, as the sweep's detail does. Runs end
through the repository calls a worker makes (tests/support/runs.py), so the scores are known."""

from __future__ import annotations

import math
from typing import Any

from fastapi.testclient import TestClient
from sqlalchemy import event

from service.kit.db import session_scope
from service.sweeps import service
from tests.support.runs import end_run

BASE: dict[str, Any] = {
    "dataset": "digits",
    "model": {"type": "mlp", "hidden": [16]},
    "epochs": 3,
}


def create(client: TestClient, **body: Any) -> dict[str, Any]:
    r = client.post("/v1/sweeps", json={"base": BASE, "strategy": "grid", **body})
    assert r.status_code == 201, r.text
    created: dict[str, Any] = r.json()
    return created


def listed(client: TestClient, sweep_id: int) -> dict[str, Any]:
    r = client.get("/v1/sweeps")
    assert r.status_code == 200, r.text
    [line] = [s for s in r.json()["items"] if s["id"] == sweep_id]
    return line


def test_a_line_names_metric_params_pruner_and_the_best_finished_run(client: TestClient) -> None:
    created = create(
        client,
        name="lrs",
        parameters={"base_lr": [0.3, 0.1, 0.03, 0.01], "solver.type": ["SGD", "Adam"]},
        pruner={"type": "asha"},
    )
    sweep_id, ids = created["sweep_id"], created["ids"]
    line = listed(client, sweep_id)
    assert (line["metric"], line["mode"], line["pruner"]) == ("val_loss", "min", "asha")
    assert line["parameters"] == ["base_lr", "solver.type"]
    assert line["best"] is None and line["counts"] == {"queued": 8}

    # The lowest val_loss of all belongs to a diverged run and the next to a pruned one: the
    # best is the lowest among runs that finished well, at any epoch of theirs.
    end_run(ids[0], [0.9, 0.05, math.inf], status="diverged")
    end_run(ids[1], [0.8, 0.07], status="pruned")
    end_run(ids[2], [0.6, 0.2, 0.4])
    end_run(ids[3], [0.5, 0.3, 0.25], status="early_stopped")
    line = listed(client, sweep_id)
    assert line["best"] == {"experiment_id": ids[2], "score": 0.2}
    assert line["counts"] == {"queued": 4, "diverged": 1, "pruned": 1, "succeeded": 1,
                              "early_stopped": 1}  # fmt: skip
    detail = client.get(f"/v1/sweeps/{sweep_id}").json()
    assert detail["best"]["experiment_id"] == line["best"]["experiment_id"]
    assert detail["best"]["score"] == line["best"]["score"]


def test_max_metrics_rank_highest_first_and_ties_go_to_the_lower_id(client: TestClient) -> None:
    # tests/support/runs.py records val_accuracy 0.5 at every epoch: a tie between all runs.
    created = create(client, parameters={"base_lr": [0.1, 0.01, 0.001]}, metric="val_accuracy")
    sweep_id, ids = created["sweep_id"], created["ids"]
    end_run(ids[2], [0.4])
    end_run(ids[1], [0.3])
    line = listed(client, sweep_id)
    assert (line["metric"], line["mode"], line["pruner"]) == ("val_accuracy", "max", None)
    assert line["best"] == {"experiment_id": ids[1], "score": 0.5}


def test_lr_coarse_to_fine_sweeps_base_lr(client: TestClient) -> None:
    r = client.post("/v1/sweeps", json={"base": BASE, "strategy": "lr_coarse_to_fine",
                                        "min_lr": 0.01})  # fmt: skip
    assert r.status_code == 201, r.text
    assert listed(client, r.json()["sweep_id"])["parameters"] == ["base_lr"]


def test_the_list_costs_the_same_queries_for_one_sweep_or_many(client: TestClient) -> None:
    """No query per sweep or per run: the counts and the best runs are read for the whole page,
    one query per metric and mode among its sweeps."""
    first = create(client, parameters={"base_lr": [0.1, 0.01]})
    end_run(first["ids"][0], [0.5, 0.4])

    def statements() -> tuple[int, int]:
        with session_scope() as session:
            seen: list[str] = []
            connection = session.connection()
            event.listen(connection, "before_cursor_execute", lambda *a: seen.append(a[2]))
            page = service.list_page(session, 500)
        return len(seen), len(page.items)

    few, n_few = statements()
    for i in range(4):
        more = create(client, parameters={"base_lr": [0.1, 0.01, 0.001]})
        end_run(more["ids"][i % 3], [0.3 + i / 10])
    many, n_many = statements()
    assert n_many == n_few + 4
    assert few >= 3 and many == few  # the sweeps, their counts, their best runs


def test_limit_is_bounded(client: TestClient) -> None:
    for bad in ("0", "501", "x"):
        r = client.get("/v1/sweeps", params={"limit": bad})
        assert r.status_code == 422, r.text
        assert r.json()["detail"][0]["loc"] == ["query", "limit"]

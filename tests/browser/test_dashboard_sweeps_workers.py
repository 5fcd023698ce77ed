"""The sweeps list, a sweep's charts and the workers page in a real browser, against the real API
and worker of the embedded stack: a grid over base_lr (three decades: a log axis) and the solver
(strings: categories), trained by the worker to the end."""

from __future__ import annotations

import time
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import timedelta
from typing import Any
from urllib.parse import urlsplit

import httpx
import pytest
from sqlalchemy import create_engine
from sqlalchemy.orm import Session

from service.kit.time import utcnow
from service.workers.models import WorkerRow
from service.workers.repository import WorkerRepository
from tests.browser.conftest import Console
from tests.support.stack import Stack

pytestmark = pytest.mark.integration

BASE: dict[str, Any] = {"dataset": "iris", "model": {"type": "mlp", "hidden": [8]},
                        "epochs": 3, "batch_size": 32, "seed": 0}  # fmt: skip
LRS = [0.001, 0.01, 0.1]
SOLVERS = ["SGD", "Adam"]


OLD_MODEL = {"params": [{"name": "width", "required": False, "default": 8, "kind": "integer"}],
             "var_keyword": False, "package": "oldpkg", "version": "0.9.1"}  # fmt: skip


@contextmanager
def older_worker(stack: Stack) -> Iterator[str]:
    """A registry row as an older worker wrote it (no `datasets` in its manifest), last seen five
    minutes ago, stored through the repository in the stack's database; removed afterwards."""
    engine = create_engine(stack.backend.database_url)
    worker_id = "old-host:4242"
    try:
        with Session(engine) as session, session.begin():
            WorkerRepository(session).register(
                worker_id, host="old-host", pid=4242, queues=["cpu"],
                devices=[{"name": "cpu", "kind": "cpu"}], plugins={"models": {"wide": OLD_MODEL}},
            )  # fmt: skip
            row = session.get(WorkerRow, worker_id)
            assert row is not None
            row.last_seen = utcnow() - timedelta(minutes=5)
        yield worker_id
    finally:
        with Session(engine) as session, session.begin():
            row = session.get(WorkerRow, worker_id)
            if row is not None:
                session.delete(row)
        engine.dispose()


def finished_sweep(stack: Stack) -> dict[str, Any]:
    with stack.client() as c:
        c.timeout = httpx.Timeout(60)  # a sweep's specs are checked with torch: slow under load
        created = c.post("/v1/sweeps", json={
            "name": "browser-grid", "base": BASE, "strategy": "grid",
            "parameters": {"base_lr": LRS, "solver.type": SOLVERS},
        }).json()  # fmt: skip
        deadline = time.monotonic() + 120
        while (sweep := c.get(f"/v1/sweeps/{created['sweep_id']}").json())["status"] == "running":
            assert time.monotonic() < deadline, f"{sweep['counts']}\n{stack.logs()}"
            time.sleep(0.2)
    assert sweep["counts"] == {"succeeded": 6}, sweep["counts"]
    return sweep


@pytest.mark.parametrize("stack", ["embedded"], indirect=True)
def test_sweeps_list_charts_and_workers(stack: Stack, page: Any, shot: Any) -> None:
    sweep = finished_sweep(stack)
    sweep_id, best = sweep["id"], sweep["best"]

    # /sweeps: the sweep with its counts, its swept fields and its best run, the metric named.
    page.goto(f"{stack.url}/sweeps")
    line = page.locator(f'#sweeps tr[data-id="{sweep_id}"]')
    line.locator('[data-status="finished"]').wait_for()
    cells = line.locator("td").all_inner_texts()
    assert cells[:5] == [f"#{sweep_id}", "browser-grid", "grid", "—", "finished"]
    assert cells[5] == "6 succeeded" and cells[7] == "base_lr, solver.type"
    score = f"{best['score']:.4g}"
    assert cells[6] == f"best val_loss {float(score):g} #{best['experiment_id']}", cells[6]
    shot("sweeps")

    # /sweeps/{id}: one point per run against each swept field, one line per run.
    line.locator(f'a[href="/sweeps/{sweep_id}"]').click()
    lr_chart = page.locator("#score-vs-base_lr")
    lr_chart.wait_for()
    assert lr_chart.get_attribute("data-points") == "6"
    assert lr_chart.get_attribute("data-axis") == "log"  # three decades of an LR
    assert "val_loss against base_lr" in lr_chart.inner_text()
    assert lr_chart.locator("circle[data-id]").count() == 6
    xs = {lr_chart.locator("circle[data-id]").nth(i).get_attribute("data-x") for i in range(6)}
    assert xs == {"0.001", "0.01", "0.1"}
    solver_chart = page.locator("#score-vs-solver-type")
    assert solver_chart.get_attribute("data-axis") == "category"
    assert solver_chart.get_attribute("data-points") == "6"
    assert solver_chart.locator("text", has_text="Adam").count() == 1

    # Categories are evenly spaced: every SGD run left of every Adam run.
    def xs_of(solver: str) -> list[float]:
        marks = solver_chart.locator(f'circle[data-x="{solver}"]').all()
        return [float(m.get_attribute("cx")) for m in marks]

    sgd, adam = xs_of("SGD"), xs_of("Adam")
    assert len(sgd) == len(adam) == 3 and max(sgd) < min(adam)
    lines = page.locator("#parallel-coords path[data-id]")
    assert lines.count() == 6
    ids = {int(lines.nth(i).get_attribute("data-id")) for i in range(6)}
    assert ids == {r["experiment_id"] for r in sweep["experiments"]}
    assert page.locator("#parallel-coords [data-axis]").count() == 3  # base_lr, solver, score
    legend = page.locator("#pc-legend").text_content() or ""  # the colour scale's ends named
    assert "colour: val_loss" in legend and f"best {float(score):g}" in legend
    # Hovering a point names its run and its value at once.
    point = lr_chart.locator(f'circle[data-id="{best["experiment_id"]}"]')
    point.hover()
    tip = lr_chart.locator(".sweep-tip")
    tip.wait_for()
    assert tip.inner_text().startswith(f"#{best['experiment_id']} base_lr=")
    assert f"val_loss {float(score):g}" in tip.inner_text()
    # The tables are still there, below the charts.
    assert page.locator("#leaderboard tbody tr").count() == 6
    shot("sweep-charts")

    # /workers: the stack's worker, its host and when it was last seen.
    with stack.client() as c:
        alive = [w for w in c.get("/v1/workers").json()["items"] if w["state"] == "alive"]
    assert alive, stack.logs()
    with older_worker(stack) as old_id:
        page.goto(f"{stack.url}/workers")
        row = page.locator(f'#workers tr[data-id="{alive[0]["id"]}"]')
        row.wait_for()
        assert row.get_attribute("data-state") == "alive"
        assert row.locator("td.host").inner_text() == alive[0]["host"]
        assert row.locator("td.last-seen").inner_text().endswith(" s ago")
        assert "cpu" in row.locator("td.queues").inner_text()
        # Not seen for five minutes: stale, and its plugin with package@version, params on hover.
        old = page.locator(f'#workers tr[data-id="{old_id}"]')
        assert old.get_attribute("data-state") == "stale"
        assert old.locator("td.last-seen").inner_text() == "5 min ago"
        plugin = old.locator('.plugin[data-kind="models"][data-name="wide"]')
        assert plugin.inner_text() == "model wide oldpkg@0.9.1"
        assert plugin.get_attribute("title") == "params: width=8"
        shot("workers")


@pytest.mark.parametrize("stack", ["embedded"], indirect=True)
def test_sweeps_list_shows_a_sweep_submitted_after_it_opened(stack: Stack, page: Any) -> None:
    """With no sweep running the list still polls (every 10 s): a sweep submitted later
    appears without a reload. The list's first answer is emptied, so no sweep another test left
    running keeps it polling fast."""
    answered: list[str] = []

    def first_empty(route: Any) -> None:
        if not answered:
            answered.append(route.request.url)
            route.fulfill(json={"items": []})
        else:
            route.continue_()

    # The list asks /v1/sweeps?limit=100: matched on the path (a glob matches the query too).
    page.route(lambda url: urlsplit(url).path == "/v1/sweeps", first_empty)
    page.goto(f"{stack.url}/sweeps")
    page.locator("#no-sweeps").wait_for()
    assert answered, "the list's first answer was not the emptied one"
    with stack.client() as c:
        c.timeout = httpx.Timeout(60)
        r = c.post("/v1/sweeps", json={
            "name": "late-sweep", "base": {**BASE, "epochs": 1}, "strategy": "grid",
            "parameters": {"base_lr": [0.01]},
        })  # fmt: skip
        assert r.status_code == 201, r.text
    page.locator(f'#sweeps tr[data-id="{r.json()["sweep_id"]}"]').wait_for(timeout=20_000)


@pytest.mark.parametrize("stack", ["embedded"], indirect=True)
def test_a_page_whose_id_the_api_refuses_stops_asking(
    stack: Stack, page: Any, console: Console
) -> None:
    """An id past the database's integers is a 422 that asking again will not change: the page
    shows it once and stops, as it does for an unknown id's 404 (a sweep's page kept reading
    the sweep every 2 s). The experiment's and the range test's pages likewise."""
    console.allow(r"status of 422")  # each page's one refused call, on purpose
    big = 99_999_999_999
    asked: list[str] = []
    page.on("request", lambda r: asked.append(urlsplit(r.url).path))
    for shown, read in [
        (f"/sweeps/{big}", f"/v1/sweeps/{big}"),
        (f"/experiments/{big}", f"/v1/experiments/{big}"),
        (f"/range-tests/{big}", f"/v1/lr-range-tests/{big}"),
    ]:
        asked.clear()
        page.goto(f"{stack.url}{shown}")
        page.locator(".error-box").wait_for()
        page.wait_for_timeout(4_500)  # past two of the pages' 2 s polls
        # Once, and nothing after (no event stream, no poll); the top bar's identity aside.
        api = [p for p in asked if p.startswith("/v1/") and p != "/v1/tokens/me"]
        assert api == [read], shown

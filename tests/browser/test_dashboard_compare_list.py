"""Ten runs in a real browser, trained by the real worker: compared in ten distinct colours with
their best and last values and the one spec key that sets them apart; the runs table sorted by
base LR, searched by name, and a run's metrics exported as CSV and JSON."""

from __future__ import annotations

import csv
import io
import json
import time
from typing import Any

import httpx
import pytest

from tests.support.stack import Stack

pytestmark = pytest.mark.integration

LRS = [0.001, 0.2, 0.003, 0.05, 0.0005, 0.1, 0.02, 0.3, 0.007, 0.01]
BASE: dict[str, Any] = {"dataset": "iris", "model": {"type": "mlp", "hidden": [8]},
                        "epochs": 2, "batch_size": 32, "seed": 0}  # fmt: skip
# Names no other test's runs share: the list is searched by this prefix.
PREFIX = "tenlr"


def names() -> list[str]:
    return [f"{PREFIX}-{k:02d}" for k in range(len(LRS))]


def rows_order(page: Any) -> list[int]:
    return [int(i) for i in page.locator("#experiments tbody tr[data-id]").evaluate_all(
        "rows => rows.map((r) => r.dataset.id)")]  # fmt: skip


# A page in a browser: the backend changes nothing, so the embedded stack alone.
@pytest.mark.parametrize("stack", ["embedded"], indirect=True)
def test_ten_runs_compared_and_listed(stack: Stack, page: Any, shot: Any, tmp_path: Any) -> None:
    with stack.client() as c:
        specs = [{**BASE, "name": n, "base_lr": lr} for n, lr in zip(names(), LRS, strict=True)]
        # A loaded machine (the whole suite on two cores) can take long over the first calls.
        c.timeout = httpx.Timeout(60)
        r = c.post("/v1/batches", json={"name": "ten", "experiments": specs})
        assert r.status_code == 201, r.text
        ids: list[int] = r.json()["ids"]
        # A small sweep too, for the list's swept-value columns.
        r = c.post("/v1/sweeps", json={
            "name": "sweepcols", "base": {**BASE, "epochs": 1}, "strategy": "grid",
            "parameters": {"base_lr": [0.01, 0.1], "solver.params.momentum": [0.0, 0.9]},
        })  # fmt: skip
        assert r.status_code == 201, r.text
        sweep_id = r.json()["sweep_id"]
        deadline = time.monotonic() + 120
        while True:
            runs = [c.get(f"/v1/experiments/{i}").json() for i in ids]
            if not any(e["status"] in ("queued", "running") for e in runs):
                break
            assert time.monotonic() < deadline, f"{[e['status'] for e in runs]}\n{stack.logs()}"
            time.sleep(0.2)
    assert [e["status"] for e in runs] == ["succeeded"] * 10, stack.logs()
    by_id = dict(zip(ids, LRS, strict=True))

    # Compare all ten on val_loss: ten series in ten colours.
    page.goto(f"{stack.url}/compare?ids={','.join(map(str, ids))}&metric=val_loss")
    page.locator("#compare-runs tbody tr").nth(9).wait_for()
    page.wait_for_function("document.querySelector('#compare-chart').dataset.points === '2'")
    swatches = page.locator("#compare-runs svg.swatch")
    colours = [swatches.nth(k).get_attribute("data-color") for k in range(swatches.count())]
    assert len(colours) == 10 and len(set(colours)) == 10
    # uPlot's own legend draws each series' marker in its stroke colour: ten, all different.
    strokes = page.locator(".u-legend .u-series .u-marker").evaluate_all(
        "ms => ms.map((m) => getComputedStyle(m).borderColor)"
    )
    assert len(strokes) == 11  # the x series first
    assert len(set(strokes[1:])) == 10
    # Best (lowest val_loss, with its epoch) and last (epoch 2) of each run.
    for k in range(10):
        row = page.locator("#compare-runs tbody tr").nth(k)
        best, last = row.locator("td.best"), row.locator("td.last")
        assert float(best.get_attribute("data-value") or "nan") <= float(
            last.get_attribute("data-value") or "nan"
        )
        assert "@ epoch" in best.inner_text() and "(min)" in best.inner_text()
        assert last.inner_text().endswith("@ epoch 2")
    # The specs differ in base_lr alone (names aside); one column per run.
    diff = page.locator("#spec-diff tbody tr")
    assert diff.evaluate_all("rows => rows.map((r) => r.dataset.key)") == ["base_lr"]
    assert page.locator("#spec-diff thead th").count() == 11
    shown_lrs = diff.first.locator("td").all_inner_texts()[1:]
    assert [float(v) for v in shown_lrs] == LRS
    shot("compare-ten")

    # The x axis by optimizer step (each run knows its steps per epoch) and smoothing in the URL.
    page.select_option("#x-axis", "step")
    page.wait_for_url("**x=step**")
    page.locator("#compare-chart .u-legend").wait_for()
    assert page.locator("#compare-chart").get_attribute("data-axis") == "step"
    page.locator("#smoothing").evaluate(
        "el => { el.value = '0.5'; el.dispatchEvent(new Event('input')); }"
    )
    page.wait_for_url("**smooth=0.5**")

    # The runs table: newest first, then by base LR when its header is clicked.
    page.goto(f"{stack.url}/?q={PREFIX}")
    page.locator("#experiments tbody tr[data-id]").nth(9).wait_for()
    assert rows_order(page) == sorted(ids, reverse=True)
    page.locator('#experiments th[data-sort="base_lr"] a').click()
    page.wait_for_url("**sort=base_lr**")
    page.wait_for_function(
        "document.querySelector('#experiments th[data-sort=\"base_lr\"]')"
        ".getAttribute('aria-sort') === 'ascending'"
    )
    page.locator("#experiments tbody tr[data-id]").nth(9).wait_for()
    assert rows_order(page) == sorted(ids, key=lambda i: by_id[i])
    cells = page.locator("#experiments td.base-lr").all_inner_texts()
    assert cells[:3] == ["5.00e-4", "0.001", "0.003"]  # 3 significant digits
    shot("runs-table")
    # Clicked again: descending.
    page.locator('#experiments th[data-sort="base_lr"] a').click()
    page.wait_for_url("**sort=-base_lr**")
    page.locator("#experiments tbody tr[data-id]").nth(9).wait_for()
    assert rows_order(page) == sorted(ids, key=lambda i: -by_id[i])

    # Search by name narrows the table (and keeps the sort).
    page.fill("#search", f"{PREFIX}-03")
    page.press("#search", "Enter")
    page.wait_for_url(f"**q={PREFIX}-03**")
    page.wait_for_function("document.querySelectorAll('#experiments tr[data-id]').length === 1")
    assert rows_order(page) == [ids[3]]
    assert "sort=-base_lr" in page.url

    # The run's metrics as CSV (header and a row per epoch) and JSON.
    row = page.locator(f'#experiments tr[data-id="{ids[3]}"]')
    with page.expect_download() as got:
        row.locator("a.export-csv").click()
    download = got.value
    assert download.suggested_filename == f"experiment-{ids[3]}-metrics.csv"
    path = tmp_path / "m.csv"
    download.save_as(path)
    table = list(csv.reader(io.StringIO(path.read_text())))
    assert table[0][:6] == ["epoch", "lr", "lr_min", "lr_max", "train_loss", "val_loss"]
    assert [r[0] for r in table[1:]] == ["1", "2"]
    with page.expect_download() as got:
        row.locator("a.export-json").click()
    path = tmp_path / "m.json"
    got.value.save_as(path)
    body = json.loads(path.read_text())
    assert body["experiment_id"] == ids[3] and [e["epoch"] for e in body["epochs"]] == [1, 2]
    # With a token set, the CSV is fetched with it (a link cannot send the header) and saved.
    page.evaluate("localStorage.setItem('glidepath.token', 'browser-test')")
    page.reload()
    row.locator("a.export-csv").wait_for()
    with page.expect_request("**/metrics.csv") as sent, page.expect_download() as got:
        row.locator("a.export-csv").click()
    assert sent.value.headers.get("authorization") == "Bearer browser-test"
    assert got.value.suggested_filename == f"experiment-{ids[3]}-metrics.csv"
    got.value.save_as(tmp_path / "t.csv")
    assert (tmp_path / "t.csv").read_text() == path.with_name("m.csv").read_text()
    page.evaluate("localStorage.removeItem('glidepath.token')")

    # Filtered by the sweep: a column per swept field with each run's value.
    with stack.client() as c:
        c.timeout = httpx.Timeout(60)
        while (sweep := c.get(f"/v1/sweeps/{sweep_id}").json())["status"] == "running":
            assert time.monotonic() < deadline, f"{sweep['counts']}\n{stack.logs()}"
            time.sleep(0.2)
    page.goto(f"{stack.url}/?sweep={sweep_id}")
    page.locator("#experiments tbody tr[data-id]").nth(3).wait_for()
    params = page.locator("#experiments thead th[data-param]").evaluate_all(
        "ths => ths.map((th) => th.dataset.param)"
    )
    assert params == ["base_lr", "solver.params.momentum"]
    for run in sweep["experiments"]:
        cells = page.locator(f'#experiments tr[data-id="{run["experiment_id"]}"] td[data-param]')
        expected = [run["params"]["base_lr"], run["params"]["solver.params.momentum"]]
        assert [float(v) for v in cells.all_inner_texts()] == expected


@pytest.mark.parametrize("stack", ["embedded"], indirect=True)
def test_compare_title_follows_the_smoothing_slider(stack: Stack, page: Any) -> None:
    """The chart's title says "(smoothed)" as soon as the slider leaves 0, and not once it is
    back, without a reload."""
    with stack.client() as c:
        c.timeout = httpx.Timeout(60)
        r = c.post("/v1/experiments", json={**BASE, "name": "smooth-title", "epochs": 1})
        assert r.status_code == 201, r.text
    run_id = r.json()["id"]
    page.goto(f"{stack.url}/compare?ids={run_id}&metric=val_loss")
    title = page.locator("#compare-chart .chart-title")
    title.wait_for()
    assert "smoothed" not in title.inner_text()
    slide = "(el, v) => { el.value = v; el.dispatchEvent(new Event('input', { bubbles: true })); }"
    page.locator("#smoothing").evaluate(slide, "0.5")
    assert title.inner_text().endswith("(smoothed)")
    page.locator("#smoothing").evaluate(slide, "0")
    assert "smoothed" not in title.inner_text()
    with stack.client() as c:
        c.post(f"/v1/experiments/{run_id}/cancel")  # the page is all this test needs

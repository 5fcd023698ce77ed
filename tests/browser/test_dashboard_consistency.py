"""What a page shows agrees with itself, with the API and with what it is about to send: the
form's preview text with its chart and an emptied base LR with the submit, the compare page's
spec differences, a running run's summary with its charts, a live row of the runs table with a
reloaded one, the list's filters with the URL, tag chips from the keyboard, and two layouts (a
sweep's colour legend at 1280 px, a run's title at 390 px), each in a real browser against the
embedded stack's API and worker."""

from __future__ import annotations

import json
import re
import time
from typing import Any
from urllib.parse import parse_qs, urlsplit

import httpx
import pytest

from tests.browser.conftest import Console
from tests.support.stack import Stack

pytestmark = pytest.mark.integration

TINY: dict[str, Any] = {"dataset": "iris", "model": {"type": "mlp", "hidden": [4]},
                        "epochs": 2, "batch_size": 32, "seed": 0}  # fmt: skip
FINAL = ("succeeded", "early_stopped", "diverged", "failed", "cancelled")


def finished(stack: Stack, *specs: dict[str, Any]) -> list[dict[str, Any]]:
    """Each spec created and trained to its end by the stack's worker."""
    with httpx.Client(base_url=stack.url, timeout=60) as c:
        ids = []
        for spec in specs:
            r = c.post("/v1/experiments", json=spec)
            assert r.status_code == 201, r.text
            ids.append(r.json()["id"])
        deadline = time.monotonic() + 120
        while True:
            runs = [c.get(f"/v1/experiments/{i}").json() for i in ids]
            if all(run["status"] in FINAL for run in runs):
                return runs
            assert time.monotonic() < deadline, stack.logs()
            time.sleep(0.1)


def field(page: Any, loc: str, control: str = "input") -> Any:
    return page.locator(f'[data-loc="{loc}"] > {control}')


def is_preview(predicate: Any = lambda body: True) -> Any:
    return lambda r: (
        r.url.endswith("/v1/schedules/preview") and predicate(r.request.post_data_json or {})
    )


@pytest.mark.parametrize("stack", ["embedded"], indirect=True)
def test_preview_text_ends_where_the_per_step_chart_does(
    stack: Stack, page: Any, console: Console
) -> None:
    """OneCycleLR (iris, 10 epochs in batches of 16, max_lr 0.1) is previewed per step; the text
    under the chart goes from its first step to its last (4e-7), not to the last epoch's first."""
    console.allow(r"status of 422")  # OneCycleLR before its max_lr is filled in
    page.goto(f"{stack.url}/new")
    page.locator("#preview-chart[data-points]").wait_for()
    field(page, "dataset", "select").select_option("iris")
    field(page, "epochs").fill("10")
    field(page, "batch_size").fill("16")
    field(page, "scheduler.type", "select").select_option("OneCycleLR")
    # The preview of this max_lr (not the 422 of OneCycleLR without one, debounced until now).
    max_lr = lambda b: ((b.get("scheduler") or {}).get("params") or {}).get("max_lr") == 0.1  # noqa: E731
    with page.expect_response(is_preview(max_lr)) as answer:
        field(page, "scheduler.params.max_lr").fill("0.1")
    out = answer.value.json()
    page.locator('#preview-chart[data-resolution="step"]').wait_for()
    text = page.locator("#preview-notes > div").first.inner_text()
    start, end = (float(v) for v in re.findall(r"LR (\S+) → (\S+)$", text)[0])
    assert start == pytest.approx(out["steps"][0]["lr"], rel=0.01)  # max_lr / 25
    assert end == pytest.approx(out["steps"][-1]["lr"], rel=0.01)  # max_lr / 25 / 1e4
    assert end < 1e-6 < out["lr"][-1]


@pytest.mark.parametrize("stack", ["embedded"], indirect=True)
def test_an_emptied_base_lr_is_the_default_for_preview_and_submit(stack: Stack, page: Any) -> None:
    """An emptied base LR is left out, as every emptied number is, and the API takes its default:
    the placeholder names it, the preview uses it (no "Field required") and says so, and the
    submit sends the spec the preview checked."""
    page.goto(f"{stack.url}/new")
    page.locator("#preview-chart[data-points]").wait_for()
    base_lr = field(page, "base_lr")
    with page.expect_response(is_preview()) as answer:
        base_lr.fill("")
    assert answer.value.ok and answer.value.request.post_data_json["base_lr"] == 0.01
    assert base_lr.get_attribute("placeholder") == "default 0.01"
    page.locator("#preview-default-lr").wait_for()
    assert "the default 0.01" in page.locator("#preview-default-lr").inner_text()
    assert page.locator('[data-loc="base_lr"].has-error').count() == 0
    creates = lambda r: r.url.endswith("/v1/experiments") and r.method == "POST"  # noqa: E731
    with page.expect_request(creates) as sent:
        page.locator("#submit").click()
    assert "base_lr" not in sent.value.post_data_json
    page.wait_for_url(re.compile(r"/experiments/\d+$"))
    run_id = int(page.url.rsplit("/", 1)[1])
    with stack.client() as c:
        assert c.get(f"/v1/experiments/{run_id}").json()["spec"]["base_lr"] == 0.01
        c.post(f"/v1/experiments/{run_id}/cancel")  # the page is all this test needs


@pytest.mark.parametrize("stack", ["embedded"], indirect=True)
def test_spec_differences_leave_out_empty_objects(stack: Stack, page: Any) -> None:
    """One run with no solver params and no tags, one with momentum and a tag: the differences
    are the keys inside (the first run reads "—"), not rows for the empty objects."""
    bare, full = finished(
        stack,
        {**TINY, "name": "diff-bare"},
        {**TINY, "name": "diff-full", "solver": {"type": "SGD", "params": {"momentum": 0.9}},
         "tags": {"kind": "full"}},
    )  # fmt: skip
    assert bare["spec"]["solver"]["params"] == {} and bare["spec"]["tags"] == {}
    page.goto(f"{stack.url}/compare?ids={bare['id']},{full['id']}&metric=val_loss")
    rows = page.locator("#spec-diff tbody tr")
    rows.first.wait_for()
    keys = rows.evaluate_all("rows => rows.map((r) => r.dataset.key)")
    assert sorted(keys) == ["solver.params.momentum", "tags.kind"]
    cells = page.locator('#spec-diff tr[data-key="tags.kind"] td').all_inner_texts()
    assert cells[1:] == ["—", "full"]


@pytest.mark.parametrize("stack", ["embedded"], indirect=True)
def test_a_running_runs_summary_keeps_up_with_its_charts(stack: Stack, page: Any) -> None:
    """Progress and best are redrawn with each epoch, in the frame that draws the charts: never
    the "3/300" of the last read of the run while the charts and the mean duration show more."""
    with stack.client() as c:
        r = c.post("/v1/experiments", json={**TINY, "name": "live-summary", "epochs": 3000,
                                            "batch_size": 16})  # fmt: skip
        assert r.status_code == 201, r.text
    run_id = r.json()["id"]
    try:
        page.goto(f"{stack.url}/experiments/{run_id}")
        page.wait_for_function("Number(document.querySelector('#loss-chart').dataset.points) >= 3")
        samples = []
        for _ in range(10):
            samples.append(
                page.evaluate("""() => ({
                points: Number(document.querySelector('#loss-chart').dataset.points),
                progress: document.querySelector('#summary .progress-cell').textContent.trim(),
                best: document.querySelector('#best').textContent,
                mean: document.querySelector('#durations').textContent,
            })""")
            )
            page.wait_for_timeout(250)
        assert samples[-1]["points"] > samples[0]["points"], "no epochs arrived while sampling"
        for s in samples:
            assert s["progress"] == f"{s['points']}/3000", s
            assert f"(mean of {s['points']})" in s["mean"], s
            best = re.fullmatch(r"val_loss \S+ at epoch (\d+)", s["best"])
            assert best and int(best[1]) <= s["points"], s
    finally:
        with stack.client() as c:
            c.post(f"/v1/experiments/{run_id}/cancel")


@pytest.mark.parametrize("stack", ["embedded"], indirect=True)
def test_a_live_row_names_its_best_metric(stack: Stack, page: Any) -> None:
    """A row the list loaded without a best (early stopping's baseline never beaten), then given
    one by a status event, reads as a reload would: the metric (the spec's monitor) named."""
    (run,) = finished(stack, {**TINY, "name": "live-best-row", "early_stopping": {
        "monitor": "val_accuracy", "mode": "max", "baseline": 1.0, "patience": 5}})  # fmt: skip
    assert run["best"] is None and run["best_value"] is None
    # The stream as the API sends it (docs/events.md), with a best this run never had: the event
    # that updates a shown row in place.
    event = {"experiment_id": run["id"], "status": run["status"], "epochs_run": 2, "epochs": 2,
             "attempt": 1, "best_epoch": 1, "best_value": 0.9, "stop_reason": None,
             "error": None, "cancel_requested": False}  # fmt: skip
    page.route("**/v1/events", lambda route: route.fulfill(
        status=200, headers={"Content-Type": "text/event-stream"},
        body=f"event: status\ndata: {json.dumps(event)}\n\n"))  # fmt: skip
    page.goto(f"{stack.url}/?q=live-best-row")
    best = page.locator(f'#experiments tr[data-id="{run["id"]}"] td.best')
    page.wait_for_function(
        f"document.querySelector('#experiments tr[data-id=\"{run['id']}\"] td.best')"
        ".textContent.includes('@')"
    )
    assert best.inner_text() == "val_accuracy 0.9 @1"


@pytest.mark.parametrize("stack", ["embedded"], indirect=True)
def test_list_filters_from_the_url_stay(stack: Stack, page: Any, console: Console) -> None:
    """Several statuses (a comma list, as the API takes) show in the status select and stay in
    the URL a name search makes; a sweep that does not exist is named as such and stays too."""
    page.goto(f"{stack.url}/?status=succeeded,cancelled")
    status = page.locator('select[name="status"]')
    status.wait_for()
    assert status.evaluate("s => s.selectedOptions[0].textContent") == "succeeded or cancelled"
    page.fill("#search", "zz-no-run-has-this-name")
    page.press("#search", "Enter")
    page.wait_for_url("**q=zz-no-run-has-this-name**")
    query = parse_qs(urlsplit(page.url).query)
    assert query["status"] == ["succeeded,cancelled"] and query["q"] == ["zz-no-run-has-this-name"]

    console.allow(r"status of 404")  # GET /v1/sweeps/999999
    page.goto(f"{stack.url}/?sweep=999999")
    page.locator("#sweep-note .error-box").wait_for()
    assert page.locator("#sweep-note").inner_text() == "There is no sweep #999999."
    sweep = page.locator('select[name="sweep"]')
    assert sweep.evaluate("s => s.selectedOptions[0].textContent") == "#999999"
    page.fill("#search", "anything")
    page.press("#search", "Enter")
    page.wait_for_url("**q=anything**")
    assert parse_qs(urlsplit(page.url).query)["sweep"] == ["999999"]


@pytest.mark.parametrize("stack", ["embedded"], indirect=True)
def test_tag_chips_from_the_keyboard(stack: Stack, page: Any) -> None:
    """Tab reaches a row's tag right after its name; Enter filters by it, Space too."""
    (run,) = finished(stack, {**TINY, "name": "kbd-tags", "tags": {"kbd": "one"}})
    page.goto(f"{stack.url}/?q=kbd-tags")
    row = page.locator(f'#experiments tr[data-id="{run["id"]}"]')
    row.locator("td.name a").focus()
    page.keyboard.press("Tab")
    assert page.evaluate("document.activeElement.textContent") == "kbd=one"
    page.keyboard.press("Enter")
    page.wait_for_url("**tag=kbd%3Aone**")
    page.goto(f"{stack.url}/?q=kbd-tags")
    row.locator("td.name a").focus()
    page.keyboard.press("Tab")
    page.keyboard.press("Space")
    page.wait_for_url("**tag=kbd%3Aone**")
    filtered = page.locator(f'#experiments tr[data-id="{run["id"]}"]')
    filtered.wait_for()  # the list filtered by the tag is read after the URL changes
    assert filtered.count() == 1


def outside(inner: dict[str, float], outer: dict[str, float]) -> bool:
    # Half a pixel of slack for subpixel layout.
    return (
        inner["left"] < outer["left"] - 0.5
        or inner["right"] > outer["right"] + 0.5
        or inner["top"] < outer["top"] - 0.5
        or inner["bottom"] > outer["bottom"] + 0.5
    )


BOX = "el => { const b = el.getBoundingClientRect(); return {left: b.left, right: b.right, top: b.top, bottom: b.bottom}; }"  # noqa: E501


@pytest.mark.parametrize("stack", ["embedded"], indirect=True)
def test_sweep_colour_legend_fits_at_1280(stack: Stack, page: Any) -> None:
    """The parallel coordinates' colour legend, "colour: val_accuracy" included, lies inside
    its chart at 1280 px."""
    with stack.client() as c:
        c.timeout = httpx.Timeout(60)
        r = c.post("/v1/sweeps", json={"name": "legend-fit", "base": {**TINY, "epochs": 1},
                                       "strategy": "grid", "metric": "val_accuracy",
                                       "parameters": {"base_lr": [0.01, 0.1]}})  # fmt: skip
        assert r.status_code == 201, r.text
    page.set_viewport_size({"width": 1280, "height": 900})
    page.goto(f"{stack.url}/sweeps/{r.json()['sweep_id']}")
    legend = page.locator("#pc-legend")
    legend.wait_for()
    assert "colour: val_accuracy" in (legend.text_content() or "")
    chart = page.locator("#parallel-coords svg").evaluate(BOX)
    texts = legend.locator("text").evaluate_all(f"els => els.map({BOX})")
    assert texts and not [t for t in texts if outside(t, chart)], (chart, texts)


@pytest.mark.parametrize("stack", ["embedded"], indirect=True)
def test_run_title_wraps_beside_its_buttons_at_390(stack: Stack, page: Any) -> None:
    """On a phone the title of a finished run (with *Download model* and *Clone*) stays clear of
    the buttons: they wrap below it and a long name breaks inside its own box."""
    (run,) = finished(stack, {**TINY, "name": "a-rather-long-experiment-name-seen-on-a-phone"})
    page.set_viewport_size({"width": 390, "height": 844})
    page.goto(f"{stack.url}/experiments/{run['id']}")
    page.locator("#download-model").wait_for(state="visible")
    title = page.locator("#title")
    # Every line of the title's text, as laid out (a Range: text that overflows its box counts).
    lines = title.evaluate(
        "el => { const r = document.createRange(); r.selectNodeContents(el);"
        " return [...r.getClientRects()].map((b) => ({left: b.left, right: b.right,"
        " top: b.top, bottom: b.bottom})); }"
    )
    box = title.evaluate(BOX)
    assert not [line for line in lines if outside(line, box)], (box, lines)
    for button in ("#download-model", "#clone"):
        b = page.locator(button).evaluate(BOX)
        overlapping = [ln for ln in lines if ln["left"] < b["right"] and b["left"] < ln["right"]
                       and ln["top"] < b["bottom"] and b["top"] < ln["bottom"]]  # fmt: skip
        assert not overlapping, (button, b, overlapping)


@pytest.mark.parametrize("stack", ["embedded"], indirect=True)
def test_no_page_scrolls_sideways_at_390(stack: Stack, page: Any) -> None:
    """On a phone the top bar wraps (its links ran past the screen's edge, unseen, white on the
    page's background, and every page scrolled sideways), a run's right-hand column takes the
    screen's width, and a wide table scrolls inside its own box."""
    (run,) = finished(stack, {**TINY, "name": "a-rather-long-experiment-name-seen-on-a-phone"})
    page.set_viewport_size({"width": 390, "height": 844})
    for path, ready in [
        (f"/experiments/{run['id']}", "#attempt-list td"),
        ("/", "#experiments td"),
        (f"/compare?ids={run['id']}", "#compare-runs td"),
        ("/sweeps", "h1"),
        ("/range-tests", "h1"),
        ("/workers", "h1"),
        ("/new", "h1"),
    ]:
        page.goto(f"{stack.url}{path}")
        page.locator(ready).first.wait_for()
        width = page.evaluate("() => [document.documentElement.scrollWidth, innerWidth]")
        assert width[0] <= width[1], (path, width)
        links = page.locator(".topbar nav a").evaluate_all(f"els => els.map({BOX})")
        assert links and all(link["right"] <= width[1] for link in links), (path, links)

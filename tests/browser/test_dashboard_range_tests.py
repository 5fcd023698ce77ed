"""LR range tests in a real browser, the test run by the real worker: the list with its
suggestion, the test's page with its loss-versus-LR curve and the suggestion marked with its rule,
"Train with this LR" opening the form at that LR, and the experiment URL of a range test landing
on its own page."""

from __future__ import annotations

import math
import re
import time
from typing import Any

import httpx
import pytest

from service.training.status import RangeTestStatus
from tests.support.stack import Stack

pytestmark = pytest.mark.integration

BODY: dict[str, Any] = {
    "spec": {"name": "iris-range", "dataset": "iris", "model": {"type": "mlp", "hidden": [8]},
             "solver": {"type": "SGD", "params": {"momentum": 0.9}}, "batch_size": 16, "seed": 0},
    "min_lr": 1e-4, "max_lr": 10.0, "steps": 40,
}  # fmt: skip


def client(stack: Stack) -> httpx.Client:
    """The stack's API with room for a loaded machine: the first request of a fresh API process
    (a spec's torch checks) can take more than the 10 s `stack.client()` allows when the CPUs
    are shared; this test is about the pages, not the API's latency."""
    return httpx.Client(base_url=stack.url, timeout=60)


def three_digits(x: float) -> float:
    """The LR as the pages show it and the form is filled: 3 significant digits."""
    return float(f"{x:.3g}")


# A page in a browser: the backend changes nothing, so the embedded stack alone.
@pytest.mark.parametrize("stack", ["embedded"], indirect=True)
def test_range_test_pages(stack: Stack, page: Any, shot: Any) -> None:
    with client(stack) as c:
        created = c.post("/v1/lr-range-tests", json=BODY)
        assert created.status_code == 201, created.text
        test_id = created.json()["id"]
        deadline = time.monotonic() + 90
        while (test := c.get(f"/v1/lr-range-tests/{test_id}").json())["status"] in {
            "queued",
            "running",
        }:
            assert time.monotonic() < deadline, stack.logs()
            time.sleep(0.2)
    assert test["status"] == "succeeded" and test["suggested_lr"] is not None, test["rule"]
    suggested = three_digits(test["suggested_lr"])

    # The list: the test's row, its LR span and steps, and the suggestion rounded.
    page.goto(f"{stack.url}/range-tests")
    row = page.locator(f'#range-tests tr[data-id="{test_id}"]')
    row.wait_for()
    cells = row.locator("td").all_inner_texts()
    assert cells[1] == "iris-range" and cells[3] == "iris · mlp"
    assert row.locator('[data-status="succeeded"]').count() == 1
    assert "40/40" in cells[5]
    assert float(row.locator("td.suggested-lr").inner_text()) == suggested
    assert row.locator("td.suggested-lr").get_attribute("title") == test["rule"]
    shot("range-tests")

    # Its page: every point on the log-LR chart, the suggestion marked with its rule.
    row.locator("a").first.click()
    page.wait_for_url(f"**/range-tests/{test_id}")
    page.locator('#status [data-status="succeeded"]').wait_for()
    chart = page.locator("#range-chart")
    page.wait_for_function(
        "n => document.querySelector('#range-chart').dataset.points === String(n)",
        arg=test["steps_run"],
    )
    assert chart.locator("canvas").count() == 1
    marker = chart.locator('.decision-marker[data-kind="suggested"]')
    assert marker.get_attribute("title") == test["rule"]
    assert float(marker.get_attribute("data-x") or "nan") == test["suggested_lr"]
    assert marker.is_visible()  # inside the plot: the LR axis spans min_lr..max_lr
    assert chart.locator('.decision-marker[data-kind="min_loss"]').count() == 1
    assert chart.locator('.decision-marker[data-kind="steepest"]').count() == 1
    assert float(page.locator("#suggested-lr").inner_text()) == suggested
    assert page.locator("#rule").inner_text() == test["rule"]
    assert page.locator("#stopped").inner_text() == test["stopped"]
    trains = page.locator("#spec-line").inner_text()
    assert "iris · mlp [8] · SGD (momentum=0.9) · batch 16" in trains
    # The x axis is the LR on a log scale: the suggestion sits where log10 puts it between
    # min_lr and max_lr (on a linear axis it would be at the left edge, under 1 %).
    plot, at = chart.locator(".u-over").bounding_box(), marker.bounding_box()
    across = (at["x"] + at["width"] / 2 - plot["x"]) / plot["width"]
    expected = math.log10(test["suggested_lr"] / 1e-4) / math.log10(10.0 / 1e-4)
    assert abs(across - expected) < 0.05, (across, expected)
    assert "learning rate" in chart.inner_text()
    shot("range-test")
    # The diverging tail is cropped by default; the whole axis is a deep link of its own.
    page.locator("#crop-tail").uncheck()
    assert page.url.endswith(f"/range-tests/{test_id}?full=1")
    page.reload()
    page.locator("#range-chart canvas").wait_for()
    assert not page.locator("#crop-tail").is_checked()
    shot("range-test-full")

    # "Train with this LR": the create form with the test's spec at the suggestion.
    page.locator("#train-with-lr").click()
    page.wait_for_url(re.compile(rf"/new\?from_range_test={test_id}$"))
    base_lr = page.locator('[data-loc="base_lr"] > input').first
    page.wait_for_function(
        "() => document.querySelector('[data-loc=\"base_lr\"] > input')?.value !== ''"
    )
    assert float(base_lr.input_value()) == suggested
    assert page.locator('[data-loc="batch_size"] > input').first.input_value() == "16"
    shot("train-with-lr")

    # The range test's experiment URL lands on its own page, not on an empty training run's.
    page.goto(f"{stack.url}/experiments/{test_id}")
    page.wait_for_url(f"**/range-tests/{test_id}")
    page.locator("#range-chart canvas").wait_for()


@pytest.mark.parametrize("stack", ["embedded"], indirect=True)
def test_a_running_range_test_fills_in_live_and_cancels(stack: Stack, page: Any) -> None:
    # Long enough to be watched, and to be cancelled before it ends whatever the machine's
    # speed: 10,000 steps of a wide MLP on digits (tens of seconds), an LR range that cannot
    # diverge (with max_lr 10 it stopped itself at step ~6,000, 3 s in, and once ended
    # `succeeded` 20 ms after the Cancel). The page's Cancel ends it.
    spec = {
        **BODY["spec"],
        "name": "digits-live",
        "dataset": "digits",
        "model": {"type": "mlp", "hidden": [512, 512]},
        "batch_size": 256,
    }
    body = {**BODY, "spec": spec, "max_lr": 1e-3, "diverge_factor": 1000.0,
            "steps": 10_000}  # fmt: skip
    with client(stack) as c:
        test_id = c.post("/v1/lr-range-tests", json=body).json()["id"]
    page.goto(f"{stack.url}/range-tests/{test_id}")
    page.locator('#status [data-status="running"]').wait_for(timeout=60_000)
    points = "Number(document.querySelector('#range-chart').dataset.points || 0)"
    page.wait_for_function(f"() => {points} > 0", timeout=30_000)
    first = page.evaluate(f"() => {points}")
    # More points arrive without a reload, and the steps count follows them.
    page.wait_for_function(f"() => {points} > {first}", timeout=30_000)
    assert page.locator("#train-with-lr").is_hidden()  # no suggestion while it runs
    page.locator("#cancel").click()
    page.locator('#status [data-status="cancelled"]').wait_for(timeout=30_000)
    with client(stack) as c:
        ended = c.get(f"/v1/lr-range-tests/{test_id}").json()
    assert ended["status"] == "cancelled" and 0 < ended["steps_run"] < 10_000
    # Every recorded point is on the chart, and the steps say how far it got.
    page.wait_for_function(f"() => {points} === {ended['steps_run']}")
    assert f"{ended['steps_run']}/10000" in page.locator("#steps").inner_text()
    assert page.locator("#stopped").inner_text() == ended["stopped"]


@pytest.mark.parametrize("stack", ["embedded"], indirect=True)
def test_the_status_filter_offers_only_a_range_tests_statuses(stack: Stack, page: Any) -> None:
    """No `waiting`, `early_stopped`, `diverged` or `pruned`: the API refuses them for range
    tests with 422. A status offered filters without an error."""
    page.goto(f"{stack.url}/range-tests")
    page.locator("#status-filter").wait_for()
    options = page.locator("#status-filter option").evaluate_all("os => os.map((o) => o.value)")
    assert options == ["", *RangeTestStatus]
    with page.expect_response(lambda r: "/v1/lr-range-tests?status=cancelled" in r.url) as got:
        page.select_option("#status-filter", "cancelled")
    assert got.value.status == 200
    page.locator("#range-tests tbody tr").first.wait_for()
    assert page.locator(".error-box").count() == 0


@pytest.mark.parametrize("stack", ["embedded"], indirect=True)
def test_a_cancelled_range_test_says_why_it_has_no_suggestion(stack: Stack, page: Any) -> None:
    """A test cancelled before it could suggest an LR says so on its page: it has no rule to
    point to."""
    with client(stack) as c:
        test_id = c.post("/v1/lr-range-tests", json={**BODY, "steps": 10_000}).json()["id"]
        ended = c.post(f"/v1/lr-range-tests/{test_id}/cancel").json()
        deadline = time.monotonic() + 60
        while ended["status"] != "cancelled":  # cancelled at once while queued, else soon
            assert time.monotonic() < deadline, stack.logs()
            time.sleep(0.2)
            ended = c.get(f"/v1/lr-range-tests/{test_id}").json()
    assert ended["suggested_lr"] is None and ended["rule"] is None

    page.goto(f"{stack.url}/range-tests/{test_id}")
    page.locator('#status [data-status="cancelled"]').wait_for()
    said = page.locator("#suggested-lr").inner_text()
    assert said.startswith("none: it was cancelled before suggesting one"), said
    if ended["stopped"]:
        assert ended["stopped"] in said
    assert page.locator("#rule").count() == 0

"""The dashboard in a real browser against real processes (API + worker), on both stacks
(one stack per backend for the module: see `stack` in conftest.py).

Each test drives what a person does: fill the create form, watch the run's charts and its
plateau decision, read a field's error, compare runs from a sweep, cancel and clone.
"""

from __future__ import annotations

import re
from itertools import pairwise
from typing import Any

import httpx
import pytest

from tests.browser.conftest import Console
from tests.support.stack import Stack

# Pages in a browser: the backend changes nothing a page shows, so the embedded stack alone (the
# PostgreSQL paths under them, LISTEN/NOTIFY included, are tested in tests/api and
# tests/integration).
pytestmark = [
    pytest.mark.integration,
    pytest.mark.parametrize("stack", ["embedded"], indirect=True),
]

# ReduceLROnPlateau on digits: SGD with momentum at 0.1 plateaus within ~8 epochs, so with
# patience 1 a reduce_lr decision comes well inside 15 epochs (about 2 s of training).
PLATEAU = {"factor": "0.5", "patience": "1"}


def field(page: Any, loc: str, control: str = "input, select") -> Any:
    return page.locator(f'[data-loc="{loc}"] > :is({control})').first


def test_create_through_the_form_and_watch_the_plateau(stack: Stack, page: Any, shot: Any) -> None:
    page.goto(f"{stack.url}/new")
    field(page, "name").fill("form-plateau")
    field(page, "dataset").select_option("digits")
    field(page, "solver.params.momentum").fill("0.9")
    field(page, "base_lr").fill("0.1")
    field(page, "scheduler.type").select_option("ReduceLROnPlateau")
    # Exactly ReduceLROnPlateau's own kwargs, prefilled with torch's defaults.
    assert field(page, "scheduler.params.factor").input_value() == "0.1"
    assert page.locator('[data-loc="scheduler.params.gamma"]').count() == 0
    for name, value in PLATEAU.items():
        field(page, f"scheduler.params.{name}").fill(value)
    field(page, "epochs").fill("15")
    field(page, "tags", "textarea").fill("suite=browser")
    # The preview follows the edits (debounced): 15 epochs of a flat LR without monitor values.
    page.wait_for_function(
        "document.querySelector('#preview-chart').dataset.points === '15'", timeout=10_000
    )
    shot("form")

    requested: list[str] = []
    page.on("request", lambda r: requested.append(r.url))
    page.click("#submit")
    page.wait_for_url(re.compile(r"/experiments/\d+$"))
    experiment_id = int(page.url.rsplit("/", 1)[1])

    # The form sent only what differs from torch's defaults.
    spec = httpx.get(f"{stack.url}/v1/experiments/{experiment_id}").json()["spec"]
    assert spec["scheduler"]["type"] == "ReduceLROnPlateau"
    assert spec["scheduler"]["params"] == {"factor": 0.5, "patience": 1}
    assert spec["solver"] == {"type": "SGD", "params": {"momentum": 0.9}}
    assert spec["base_lr"] == 0.1 and spec["epochs"] == 15
    assert spec["tags"] == {"suite": "browser"}

    # The charts fill in as epochs arrive, and the plateau decision is marked with its sentence.
    page.wait_for_function(
        "document.querySelector('#lr-chart').dataset.points === '15'", timeout=90_000
    )
    marker = page.locator('#lr-chart .decision-marker[data-kind="reduce_lr"]').first
    marker.wait_for(state="attached")
    reason = marker.get_attribute("title") or ""
    assert "has not improved" in reason and "lr 0.1 → 0.05" in reason
    assert page.locator('#loss-chart .decision-marker[data-kind="reduce_lr"]').count() >= 1
    assert page.locator("#metric-chart").get_attribute("data-points") == "15"
    listed = page.locator('#decision-list tr[data-kind="reduce_lr"]').first
    assert "has not improved" in listed.inner_text()
    page.locator('#title [data-status="succeeded"]').wait_for()
    # "best" names its metric: the plateau's monitor.
    assert re.fullmatch(r"val_loss \d\.\d+ at epoch \d+", page.locator("#best").inner_text())
    marker.hover()
    tip = page.locator("#lr-chart .decision-tip")
    tip.wait_for(state="visible")
    assert "has not improved" in tip.inner_text()
    shot("experiment")
    # Followed over its event stream (docs/events.md), not by polling its metrics.
    assert f"{stack.url}/v1/experiments/{experiment_id}/events" in requested
    assert not [u for u in requested if "/metrics" in u]

    # The list shows it with its status, progress and tag; the status filter keeps it.
    page.goto(f"{stack.url}/?status=succeeded")
    row = page.locator(f'#experiments tr[data-id="{experiment_id}"]')
    row.wait_for()
    assert "15/15" in row.inner_text() and "suite=browser" in row.inner_text()
    shot("list")
    page.goto(f"{stack.url}/?status=failed")
    page.locator("#experiments tbody td", has_text="No experiments match").wait_for()


def test_early_stopping_mode_follows_the_monitor_until_chosen(stack: Stack, page: Any) -> None:
    page.goto(f"{stack.url}/new")
    page.locator('input[name="early_stopping.enabled"]').check()
    mode = field(page, "early_stopping.mode", "select")
    assert mode.input_value() == "min"
    field(page, "early_stopping.monitor", "select").select_option("val_accuracy")
    assert mode.input_value() == "max"  # accuracy improves upwards
    field(page, "early_stopping.monitor", "select").select_option("val_loss")
    assert mode.input_value() == "min"
    mode.select_option("max")  # the person's own choice sticks
    field(page, "early_stopping.monitor", "select").select_option("train_loss")
    assert mode.input_value() == "max"


def test_api_errors_show_on_their_fields(
    stack: Stack, page: Any, console: Console, shot: Any
) -> None:
    console.allow(r"status of 422")  # the refused submits, on purpose
    ids = lambda: [e["id"] for e in httpx.get(f"{stack.url}/v1/experiments").json()["items"]]  # noqa: E731
    before = ids()
    page.goto(f"{stack.url}/new")
    field(page, "base_lr").fill("-1")
    field(page, "scheduler.type").select_option("StepLR")
    field(page, "scheduler.params.step_size").fill("5")
    field(page, "scheduler.params.gamma").fill("-0.5")
    page.click("#submit")
    # Pydantic refuses the shape first: base_lr.
    error = page.locator('[data-loc="base_lr"] > .field-error')
    error.wait_for()
    page.wait_for_function(
        "document.querySelector('[data-loc=\"base_lr\"] > .field-error').textContent !== ''"
    )
    assert "greater than 0" in error.inner_text()

    field(page, "base_lr").fill("0.1")
    page.click("#submit")
    gamma = page.locator('[data-loc="scheduler.params.gamma"]')
    page.wait_for_function(
        "document.querySelector('[data-loc=\"scheduler.params.gamma\"] > .field-error')"
        ".textContent.includes('must be > 0')"
    )
    assert "has-error" in (gamma.get_attribute("class") or "")
    # Only that field is marked, and nothing was created.
    marked = page.locator(".has-error").evaluate_all("els => els.map(e => e.dataset.loc)")
    assert marked == ["scheduler.params.gamma"]
    assert page.url.endswith("/new")
    assert ids() == before
    shot("field-error")


def test_sweep_page_and_compare(stack: Stack, page: Any, shot: Any) -> None:
    base = {
        "dataset": "digits",
        "solver": {"type": "SGD", "params": {"momentum": 0.9}},
        "scheduler": {"type": "ReduceLROnPlateau", "params": {"factor": 0.5, "patience": 1}},
        "epochs": 12,
    }
    with stack.client() as c:
        created = c.post(
            "/v1/sweeps",
            json={
                "name": "browser-sweep",
                "strategy": "grid",
                "parameters": {"base_lr": [0.1, 0.3]},
                "metric": "val_loss",
                "base": base,
            },
        ).json()
    for experiment_id in created["ids"]:
        stack.wait_final(experiment_id)

    page.goto(f"{stack.url}/sweeps/{created['sweep_id']}")
    page.locator('#title [data-status="finished"]').wait_for()
    assert page.locator("#leaderboard tbody tr").count() == 2
    assert "best val_loss" in (page.locator("#leaderboard thead").text_content() or "")
    assert "val_loss" in page.locator("#rule").inner_text()
    shot("sweep")

    page.click("#compare-link")
    page.wait_for_url(re.compile(r"/compare\?ids="))
    page.locator("#compare-runs tbody tr").nth(1).wait_for()
    assert page.locator("#compare-runs tbody tr").count() == 2
    page.wait_for_function("document.querySelector('#compare-chart').dataset.points === '12'")
    # Choose the LR: log axis, each run's plateau decisions marked.
    page.select_option("#metric", "lr")
    page.wait_for_url(re.compile(r"metric=lr"))
    page.wait_for_function("document.querySelector('#compare-chart').dataset.points === '12'")
    markers = page.locator('#compare-chart .decision-marker[data-kind="reduce_lr"]')
    markers.first.wait_for(state="attached")
    marked = set(markers.evaluate_all("els => els.map(e => e.dataset.experiment)"))
    assert marked <= {str(i) for i in created["ids"]} and marked
    shot("compare")


def test_cancel_and_clone(stack: Stack, page: Any, shot: Any) -> None:
    with stack.client() as c:
        long_run = c.post(
            "/v1/experiments",
            json={"name": "long", "dataset": "digits", "epochs": 5000,
                  "scheduler": {"type": "StepLR", "params": {"step_size": 7, "gamma": 0.5}}},
        ).json()  # fmt: skip
    page.goto(f"{stack.url}/experiments/{long_run['id']}")
    page.wait_for_function("Number(document.querySelector('#lr-chart').dataset.points) > 0")
    page.click("#cancel")
    page.locator('#title [data-status="cancelled"]').wait_for(timeout=30_000)
    assert page.locator("#cancel").is_hidden()
    # A run that ended says why it stopped, and that it took no decisions (not "None yet").
    stopped = page.locator("#stopped").inner_text()
    assert re.fullmatch(r"stopped at epoch \d+ of 5000: cancelled while running", stopped)
    page.locator("#no-decisions").wait_for()

    page.click("#clone")
    page.wait_for_url(re.compile(rf"/new\?clone={long_run['id']}$"))
    assert field(page, "name").input_value() == "long (clone)"
    assert field(page, "epochs").input_value() == "5000"
    assert field(page, "scheduler.type").input_value() == "StepLR"
    assert field(page, "scheduler.params.step_size").input_value() == "7"
    assert field(page, "scheduler.params.gamma").input_value() == "0.5"
    page.wait_for_function("Number(document.querySelector('#preview-chart').dataset.points) > 0")
    shot("clone")


def test_a_lambda_schedule_is_typed_as_an_expression(
    stack: Stack, page: Any, console: Console
) -> None:
    """lr_lambda is sent as the string typed (its commas are no list, "0.95" no number), the
    preview draws it, and the stored spec holds it."""
    # LambdaLR chosen before its expression is typed: if the preview fires in between, the
    # empty expression is a 422 shown on its field (what the form is for), not a failure.
    console.allow(r"status of 422")
    page.goto(f"{stack.url}/new")
    field(page, "name").fill("form-lambda")
    field(page, "dataset").select_option("digits")
    field(page, "epochs").fill("6")
    field(page, "scheduler.type").select_option("LambdaLR")
    field(page, "scheduler.params.lr_lambda").fill("min(1, (epoch + 1) / 3)")
    page.wait_for_function(
        "document.querySelector('#preview-chart').dataset.points === '6'", timeout=10_000
    )
    page.click("#submit")
    page.wait_for_url(re.compile(r"/experiments/\d+$"))
    experiment_id = int(page.url.rsplit("/", 1)[1])
    spec = httpx.get(f"{stack.url}/v1/experiments/{experiment_id}").json()["spec"]
    assert spec["scheduler"]["params"] == {"lr_lambda": "min(1, (epoch + 1) / 3)"}


def preview_of(scheduler_type: str) -> Any:
    """A predicate for page.expect_response: the schedule preview of that scheduler type."""

    def matches(response: Any) -> bool:
        body = response.request.post_data_json or {}
        return bool(
            response.url.endswith("/v1/schedules/preview")
            and (body.get("scheduler") or {}).get("type") == scheduler_type
        )

    return matches


def test_a_composed_schedule_from_the_warmup_stable_decay_preset(
    stack: Stack, page: Any, console: Console, shot: Any
) -> None:
    """The preset fills a SequentialLR the preview draws as warmup, flat, decay; an element's
    422 shows on that element's field; the run is accepted with the composition as sent."""
    console.allow(r"status of 422")  # the invalid element's preview, on purpose
    page.goto(f"{stack.url}/new")
    field(page, "name").fill("form-wsd")
    field(page, "dataset").select_option("digits")
    field(page, "base_lr").fill("0.1")
    field(page, "epochs").fill("40")
    # A composition chosen afresh starts from one that runs (torch's ChainedScheduler example).
    with page.expect_response(preview_of("ChainedScheduler")) as chained:
        field(page, "scheduler.type").select_option("ChainedScheduler")
    assert chained.value.ok, chained.value.text()
    # 40 epochs: a 2-epoch warmup (5%), 30 flat, an 8-epoch decay (20%): 7 steps to 1%.
    with page.expect_response(preview_of("SequentialLR")) as preview:
        page.click('button[data-preset="wsd"]')
    sent = preview.value.request.post_data_json["scheduler"]
    assert [e["type"] for e in sent["schedulers"]] == ["LinearLR", "ConstantLR", "LinearLR"]
    assert sent["params"] == {"milestones": [2, 32]}
    lr = preview.value.json()["lr"]
    assert len(lr) == 40 and lr[0] < lr[1] < lr[2]  # warmup
    assert all(abs(x - 0.1) < 1e-12 for x in lr[2:33])  # stable at base_lr
    assert all(a > b for a, b in pairwise(lr[32:])) and lr[-1] == pytest.approx(0.001)  # to 1%
    page.wait_for_function("document.querySelector('#preview-chart').dataset.points === '40'")
    assert field(page, "scheduler.params.milestones").input_value() == "2, 32"
    third = page.locator('[data-loc="scheduler.schedulers.2"] > legend')
    assert third.inner_text() == "3. LinearLR · from epoch 32"
    shot("wsd")

    # Elements are added and removed; the rest keep their values and indices.
    page.click("#add-scheduler")
    assert page.locator(".composite-element").count() == 4
    page.locator('[data-loc="scheduler.schedulers.3"] button[data-action="remove"]').click()
    assert page.locator(".composite-element").count() == 3

    # An element's invalid param: the preview's 422 lands on that element's field alone.
    decay_iters = "scheduler.schedulers.2.params.total_iters"
    field(page, decay_iters).fill("0")
    page.wait_for_function(
        f"document.querySelector('[data-loc=\"{decay_iters}\"] > .field-error')"
        ".textContent.includes('≥ 1')"
    )
    marked = page.locator(".has-error").evaluate_all("els => els.map(e => e.dataset.loc)")
    assert marked == [decay_iters]
    shot("element-error")
    field(page, decay_iters).fill("7")

    page.click("#submit")
    page.wait_for_url(re.compile(r"/experiments/\d+$"))
    experiment_id = int(page.url.rsplit("/", 1)[1])
    with stack.client() as c:
        scheduler = c.get(f"/v1/experiments/{experiment_id}").json()["spec"]["scheduler"]
        c.post(f"/v1/experiments/{experiment_id}/cancel")  # accepted is all this test needs
    assert scheduler["type"] == "SequentialLR"
    assert scheduler["params"] == {"milestones": [2, 32]}
    assert [(e["type"], e["params"]) for e in scheduler["schedulers"]] == [
        ("LinearLR", {"start_factor": 0.01, "total_iters": 2}),
        ("ConstantLR", {"factor": 1.0, "total_iters": 30}),
        ("LinearLR", {"start_factor": 1.0, "end_factor": 0.01, "total_iters": 7}),
    ]

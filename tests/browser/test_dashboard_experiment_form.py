"""The experiment page and the create form in a real browser, runs trained by the real worker
(#17): a OneCycleLR run's LR drawn per optimizer step with its peak, whole-epoch ticks, the best
epoch named by its metric, durations, the loss chart's log axis kept in the URL; the form's
float inputs, selects for choices, every mistake of a spec shown after one submit, a per-step
preview, and a default form that creates a run."""

from __future__ import annotations

import hashlib
import json
import re
import struct
import time
from pathlib import Path
from typing import Any

import httpx
import pytest

from service.kit.db import session_scope
from service.tokens import service as tokens
from service.tokens.schemas import TokenIn
from tests.browser.conftest import Console
from tests.browser.test_dashboard_tokens import served  # noqa: F401 (a fixture)
from tests.support.stack import Stack
from worker.runs.lifecycle import run_experiment

pytestmark = pytest.mark.integration

EPOCHS = 4
# iris: 150 samples, 120 to train in batches of 16: 8 steps an epoch, 32 in all.
ONECYCLE: dict[str, Any] = {
    "name": "browser-onecycle", "dataset": "iris", "model": {"type": "mlp", "hidden": [8]},
    "base_lr": 0.01, "scheduler": {"type": "OneCycleLR", "params": {"max_lr": 0.5}},
    "epochs": EPOCHS, "batch_size": 16, "seed": 0,
}  # fmt: skip


def finished(stack: Stack, spec: dict[str, Any]) -> dict[str, Any]:
    # A longer timeout than stack.client()'s: the first submit builds torch objects on a
    # machine the other tests load.
    with httpx.Client(base_url=stack.url, timeout=60) as c:
        created = c.post("/v1/experiments", json=spec)
        assert created.status_code == 201, created.text
        run_id = created.json()["id"]
        deadline = time.monotonic() + 120
        while (run := c.get(f"/v1/experiments/{run_id}").json())["status"] in ("queued", "running"):
            assert time.monotonic() < deadline, stack.logs()
            time.sleep(0.1)
    assert run["status"] == "succeeded", run
    return run


def ticks(page: Any, chart: str) -> list[str]:
    return (page.locator(chart).get_attribute("data-x-ticks") or "").split(",")


@pytest.mark.parametrize("stack", ["embedded"], indirect=True)
def test_onecycle_run_page(stack: Stack, page: Any, shot: Any) -> None:
    run = finished(stack, ONECYCLE)
    page.goto(f"{stack.url}/experiments/{run['id']}")
    lr = page.locator('#lr-chart[data-resolution="step"]')
    lr.wait_for()
    # Drawn per optimizer step: 32 points for 4 epochs, and the peak (max_lr) inside an epoch,
    # at pct_start 0.3 of the steps (step 8.6: epoch 2.08), where no epoch's first LR has it.
    assert int(lr.get_attribute("data-points") or 0) == EPOCHS * 8
    peak = float(lr.get_attribute("data-peak-epoch") or 0)
    assert 2.0 < peak < 2.2
    assert "per optimizer step" in page.locator("#lr-chart .chart-title").inner_text()
    # The epoch axes show whole epochs only, the per-step chart's included.
    for chart in ("#lr-chart", "#loss-chart"):
        shown = [t for t in ticks(page, chart) if t]
        assert shown and all(re.fullmatch(r"\d+", t) for t in shown), (chart, shown)
    # "best val_loss 0.1445 at epoch N": the metric named.
    best = page.locator("#best")
    dt = best.evaluate("el => el.previousElementSibling.textContent")
    assert f"{dt} {best.inner_text()}" == (
        f"best val_loss {best.inner_text().split()[1]} at epoch {run['best']['epoch']}"
    )
    assert run["best"]["metric"] == "val_loss" and best.get_attribute("data-metric") == "val_loss"
    durations = page.locator("#durations").inner_text()
    assert re.search(r" wall · .+ per epoch \(mean of 4\)$", durations), durations
    shot("experiment-onecycle")

    # The loss chart's log axis: a checkbox in its title, kept in the URL across a reload.
    loss = page.locator("#loss-chart")
    assert loss.get_attribute("data-log") == "0"
    loss.locator("[data-log-toggle]").check()
    page.wait_for_url(re.compile(r"[?&]log=1"))
    assert loss.get_attribute("data-log") == "1"
    page.reload()
    page.locator('#loss-chart[data-log="1"][data-points="4"]').wait_for()
    assert page.locator("#loss-chart [data-log-toggle]").is_checked()


def field(page: Any, loc: str, control: str = "input") -> Any:
    return page.locator(f'[data-loc="{loc}"] > {control}')


@pytest.mark.parametrize("stack", ["embedded"], indirect=True)
def test_form_inputs_selects_and_per_step_preview(
    stack: Stack, page: Any, console: Console
) -> None:
    # OneCycleLR is previewed once before its max_lr is filled in: the preview's 422 marks it.
    console.allow(r"Failed to load resource: the server responded with a status of 422")
    page.goto(f"{stack.url}/new")
    momentum = field(page, "solver.params.momentum")
    momentum.fill("0.9")
    assert momentum.get_attribute("step") == "any"
    assert momentum.evaluate("el => el.matches(':valid')")
    assert field(page, "batch_size").get_attribute("step") == "1"
    # Choices are selects: early stopping's mode (the schema's enum) and the scheduler's (torch's).
    page.locator('input[name="early_stopping.enabled"]').check()
    mode = field(page, "early_stopping.mode", "select")
    assert mode.locator("option").all_inner_texts() == ["min", "max"]
    field(page, "scheduler.type", "select").select_option("ReduceLROnPlateau")
    assert field(page, "scheduler.params.mode", "select").locator("option").all_inner_texts() == [
        "min", "max"]  # fmt: skip
    threshold_mode = field(page, "scheduler.params.threshold_mode", "select")
    assert threshold_mode.locator("option").all_inner_texts() == ["rel", "abs"]
    page.locator('#preview-chart[data-resolution="epoch"]').wait_for()
    # OneCycleLR steps per batch: the preview draws every step, so its peak shows.
    page.locator('input[name="early_stopping.enabled"]').uncheck()
    field(page, "scheduler.type", "select").select_option("OneCycleLR")
    field(page, "scheduler.params.max_lr").fill("0.5")
    preview = page.locator('#preview-chart[data-resolution="step"]')
    preview.wait_for()
    # digits, 1,437 training samples in batches of 64: 23 steps an epoch, 20 epochs.
    assert int(preview.get_attribute("data-points") or 0) == 20 * 23
    shown = [t for t in ticks(page, "#preview-chart") if t]
    assert shown and all(re.fullmatch(r"\d+", t) for t in shown), shown


@pytest.mark.parametrize("stack", ["embedded"], indirect=True)
def test_every_mistake_after_one_submit(
    stack: Stack, page: Any, console: Console, shot: Any
) -> None:
    console.allow(r"Failed to load resource: the server responded with a status of 422")
    page.goto(f"{stack.url}/new")
    field(page, "base_lr").fill("-0.1")  # the schema's
    field(page, "epochs").fill("0")  # the schema's
    field(page, "solver.params.momentum").fill("-0.5")  # torch's
    field(page, "dataset", "select").select_option("iris")
    field(page, "model.type", "select").select_option("cnn")  # iris is tabular: the dataset's
    page.locator("#submit").click()
    summary = page.locator("#error-summary")
    summary.wait_for()
    assert summary.get_attribute("data-count") == "4"
    wrong = page.locator(".field.has-error, fieldset.has-error")
    places = sorted(wrong.evaluate_all("els => els.map((el) => el.dataset.loc)"))
    assert places == ["base_lr", "epochs", "model.type", "solver.params.momentum"]
    assert "greater than 0" in page.locator('[data-loc="base_lr"] > .field-error').inner_text()
    # torch's refusal is at the kwarg it names, beside its field
    momentum = page.locator('[data-loc="solver.params.momentum"] > .field-error').inner_text()
    assert "Invalid momentum value: -0.5" in momentum, momentum
    shot("form-errors")
    assert page.url.endswith("/new")


@pytest.mark.parametrize("stack", ["embedded"], indirect=True)
def test_the_default_form_creates_a_run(stack: Stack, page: Any, shot: Any) -> None:
    page.goto(f"{stack.url}/new")
    page.locator("#preview-chart[data-points]").wait_for()
    shot("form-default")
    page.locator("#submit").click()
    page.wait_for_url(re.compile(r"/experiments/\d+$"))
    run_id = int(page.url.rsplit("/", 1)[1])
    with stack.client() as c:
        assert c.get(f"/v1/experiments/{run_id}").status_code == 200


@pytest.mark.parametrize("backend", ["embedded"], indirect=True)
def test_download_model_with_a_token(
    served: str,  # noqa: F811 (the fixture imported above)
    page: Any,
    console: Console,
) -> None:
    """With tokens on, *Download model* fetches the file with the token (a plain link cannot
    send it) and saves the very bytes the API verified."""
    with session_scope() as session:
        token = tokens.create(session, TokenIn(name="trainer", role="submit")).token
    auth = {"Authorization": f"Bearer {token}"}
    spec = {"dataset": "iris", "model": {"type": "linear"}, "epochs": 1}
    r = httpx.post(f"{served}/v1/experiments", json=spec, headers=auth, timeout=120)
    assert r.status_code == 201, r.text
    run_id = r.json()["id"]
    assert run_experiment(run_id, owner="test:0").status == "succeeded"  # trained in-process
    model = httpx.get(f"{served}/v1/experiments/{run_id}", headers=auth).json()["model"]

    console.allow(r"status of 401")  # the page's first calls, before the token is stored
    page.goto(served)
    page.evaluate("t => localStorage.setItem('glidepath.token', t)", token)
    page.goto(f"{served}/experiments/{run_id}")
    button = page.locator("#download-model")
    button.wait_for(state="visible")
    with page.expect_download() as download:
        button.click()
    assert download.value.suggested_filename == f"experiment-{run_id}.safetensors"
    data = Path(download.value.path()).read_bytes()
    assert len(data) == model["size"] and hashlib.sha256(data).hexdigest() == model["sha256"]
    (header_len,) = struct.unpack("<Q", data[:8])  # safetensors: a JSON header, then tensors
    assert json.loads(data[8 : 8 + header_len])


def preview_response(predicate: Any = lambda body: True) -> Any:
    """For page.expect_response: a schedule preview whose request body satisfies `predicate`."""
    return lambda r: (
        r.url.endswith("/v1/schedules/preview") and predicate(r.request.post_data_json or {})
    )


@pytest.mark.parametrize("stack", ["embedded"], indirect=True)
def test_early_stopping_mode_follows_a_monitor_the_dataset_resets(stack: Stack, page: Any) -> None:
    """A regression dataset has no val_accuracy: the monitor goes back to val_loss in code (no
    change event), and the mode must go back to min with it, or the run stops while its loss
    improves."""
    page.goto(f"{stack.url}/new")
    page.locator('input[name="early_stopping.enabled"]').check()
    monitor = field(page, "early_stopping.monitor", "select")
    mode = field(page, "early_stopping.mode", "select")
    monitor.select_option("val_accuracy")
    assert mode.input_value() == "max"
    with page.expect_response(
        preview_response(lambda b: (b.get("early_stopping") or {}).get("mode") == "min")
    ):
        field(page, "dataset", "select").select_option("diabetes")
    assert monitor.input_value() == "val_loss" and mode.input_value() == "min"
    # A mode the person chose stays, whatever the dataset does to the monitor.
    field(page, "dataset", "select").select_option("digits")
    monitor.select_option("val_accuracy")
    mode.select_option("min")
    field(page, "dataset", "select").select_option("diabetes")
    assert monitor.input_value() == "val_loss" and mode.input_value() == "min"
    field(page, "dataset", "select").select_option("digits")
    monitor.select_option("val_accuracy")
    assert mode.input_value() == "min"


@pytest.mark.parametrize("stack", ["embedded"], indirect=True)
def test_plateau_mode_follows_its_monitor(stack: Stack, page: Any) -> None:
    """ReduceLROnPlateau watching val_accuracy is sent with mode max (torch's default min would
    cut the LR while accuracy improves), in a SequentialLR's last element too; a mode the person
    chose stays."""
    page.goto(f"{stack.url}/new")
    field(page, "scheduler.type", "select").select_option("ReduceLROnPlateau")
    mode = field(page, "scheduler.params.mode", "select")
    assert mode.input_value() == "min"
    sends = lambda m: preview_response(  # noqa: E731
        lambda b: ((b.get("scheduler") or {}).get("params") or {}).get("mode") == m
    )
    with page.expect_response(sends("max")):
        field(page, "scheduler.monitor", "select").select_option("val_accuracy")
    assert mode.input_value() == "max"
    # Back to a loss: min again, which is torch's default, so not sent.
    field(page, "scheduler.monitor", "select").select_option("val_loss")
    assert mode.input_value() == "min"
    # The person's own choice stays.
    mode.select_option("max")
    field(page, "scheduler.monitor", "select").select_option("train_loss")
    assert mode.input_value() == "max"

    # Chosen afresh after the monitor: the mode starts from it.
    field(page, "scheduler.type", "select").select_option("StepLR")
    field(page, "scheduler.type", "select").select_option("ReduceLROnPlateau")
    field(page, "scheduler.monitor", "select").select_option("val_accuracy")
    field(page, "scheduler.type", "select").select_option("StepLR")
    field(page, "scheduler.type", "select").select_option("ReduceLROnPlateau")
    assert field(page, "scheduler.params.mode", "select").input_value() == "max"

    # A SequentialLR whose last element is ReduceLROnPlateau: its own monitor and mode.
    field(page, "scheduler.type", "select").select_option("SequentialLR")
    last = page.locator(".composite-element").count() - 1
    element = f"scheduler.schedulers.{last}"
    field(page, f"{element}.type", "select").select_option("ReduceLROnPlateau")
    field(page, f"{element}.monitor", "select").select_option("val_accuracy")
    assert field(page, f"{element}.params.mode", "select").input_value() == "max"
    # The person's mode survives the list being redrawn (an element added after it).
    field(page, f"{element}.params.mode", "select").select_option("min")
    page.click("#add-scheduler")
    assert page.locator(".composite-element").count() == last + 2
    field(page, f"{element}.monitor", "select").select_option("train_loss")
    field(page, f"{element}.monitor", "select").select_option("val_accuracy")
    assert field(page, f"{element}.params.mode", "select").input_value() == "min"


@pytest.mark.parametrize("stack", ["embedded"], indirect=True)
def test_the_preview_keeps_the_submits_errors_and_the_page_still(
    stack: Stack, page: Any, console: Console
) -> None:
    """Four mistakes after a submit; the live preview, which checks the schedule alone (here
    base_lr), neither wipes the other three nor scrolls the page to the first error while the
    person types. Fixing base_lr clears its error alone."""
    console.allow(r"status of 422")
    page.goto(f"{stack.url}/new")
    page.locator("#preview-chart[data-points]").wait_for()
    field(page, "epochs").fill("0")
    field(page, "batch_size").fill("-5")
    field(page, "split.val").fill("1.5")
    field(page, "base_lr").fill("-1")
    page.locator("#submit").click()
    summary = page.locator("#error-summary")
    summary.wait_for()
    assert summary.get_attribute("data-count") == "4"
    marked = lambda: sorted(  # noqa: E731
        page.locator(".has-error").evaluate_all("els => els.map((el) => el.dataset.loc)")
    )
    assert marked() == ["base_lr", "batch_size", "epochs", "split.val"]

    # One character in Name: the preview (350 ms later) answers its own 422 on base_lr.
    with page.expect_response(preview_response()) as answer:
        field(page, "name").press_sequentially("x")
    assert answer.value.status == 422
    page.evaluate("() => new Promise((done) => setTimeout(done, 100))")  # its errors shown
    assert summary.get_attribute("data-count") == "4"
    assert marked() == ["base_lr", "batch_size", "epochs", "split.val"]

    # An edit far from the first error: the preview's 422 leaves the page where it is.
    page.evaluate("() => window.scrollTo(0, document.body.scrollHeight)")
    tags = field(page, "tags", "textarea")
    tags.click()
    before = page.evaluate("() => window.scrollY")
    assert before > 0
    with page.expect_response(preview_response()):
        tags.press_sequentially("a=b")
    page.evaluate("() => new Promise((done) => setTimeout(done, 100))")
    assert page.evaluate("() => window.scrollY") == before

    # base_lr fixed: its error goes (the preview passes); the submit's other three stay.
    with page.expect_response(preview_response()) as answer:
        field(page, "base_lr").fill("0.1")
    assert answer.value.ok
    page.wait_for_function("document.querySelector('#error-summary').dataset.count === '3'")
    assert marked() == ["batch_size", "epochs", "split.val"]


@pytest.mark.parametrize("stack", ["embedded"], indirect=True)
def test_presets_end_where_their_hint_says(stack: Stack, page: Any) -> None:
    """20 epochs at base_lr 0.01, as the API's own preview walks them: warmup-stable-decay's last
    epoch at 1% of base_lr, cosine's at 0."""
    page.goto(f"{stack.url}/new")
    page.locator("#preview-chart[data-points]").wait_for()
    field(page, "base_lr").fill("0.01")
    field(page, "epochs").fill("20")
    is_seq = lambda b: (b.get("scheduler") or {}).get("type") == "SequentialLR"  # noqa: E731
    with page.expect_response(preview_response(is_seq)) as wsd:
        page.click('button[data-preset="wsd"]')
    lr = wsd.value.json()["lr"]
    # 1 epoch of warmup, 15 flat, a 4-epoch decay down to 1%.
    assert len(lr) == 20 and lr[1:17] == [pytest.approx(0.01)] * 16
    assert lr[-1] == pytest.approx(0.01 * 0.01)
    with page.expect_response(preview_response(is_seq)) as cosine:
        page.click('button[data-preset="cosine"]')
    lr = cosine.value.json()["lr"]
    assert len(lr) == 20 and lr[1] == pytest.approx(0.01) and lr[-2] > 0
    assert lr[-1] == pytest.approx(0.0, abs=1e-12)

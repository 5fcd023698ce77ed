"""The create form with plugins, in a real browser against real processes: a stack whose only
worker has examples/plugin pip-installed on its PYTHONPATH (the API has none), so the form learns
the plugin models and datasets from `GET /v1/workers`, shows their factories' params, builds
`{"type": NAME, "params": {...}}` specs, and the run's page shows the plugins it trained with and
its parameter count. Also: a built-in model shows only the fields its type reads.
"""

from __future__ import annotations

import re
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest

from tests.support.stack import Stack, stack_fixture, wait_for

pytestmark = pytest.mark.integration

# No plain worker: the one worker (started below) offers the plugin, so every run lands on it.
# The form and the page read the registry and the detail over HTTP, whatever the backend: the
# embedded one is enough (tests/browser/test_dashboard.py covers both backends).
plugin_stack = stack_fixture(scope="module", workers=0, embedded_only=True)

PACKAGE = "glidepath-example-plugin 0.1.0"


@pytest.fixture(scope="module")
def offering(plugin_stack: Stack, plugin_path: Path) -> Iterator[Stack]:
    """The stack once its plugin worker is registered (alive) in the registry."""
    worker = plugin_stack.start_worker("plug", {"PYTHONPATH": str(plugin_path)})
    with plugin_stack.client() as c:

        def alive() -> bool:
            rows = c.get("/v1/workers").json()["items"]
            return any(w["pid"] == worker.pid and w["state"] == "alive" for w in rows)

        wait_for(alive, 60, plugin_stack.logs)
    yield plugin_stack


def open_form(page: Any, url: str) -> None:
    page.goto(url)
    page.locator('[data-loc="model.type"] > select').wait_for()  # the form is built


def field(page: Any, loc: str, control: str = "input, select") -> Any:
    return page.locator(f'[data-loc="{loc}"] > :is({control})').first


def shown(page: Any, prefix: str) -> list[str]:
    """The data-loc of every field under `prefix` ("model.") the form shows now."""
    locs: list[str] = page.locator("form.spec-form .field[data-loc]").evaluate_all(
        "els => els.filter(e => !e.closest('[hidden]')).map(e => e.dataset.loc)"
    )
    return [loc for loc in locs if loc.startswith(prefix)]


def created_id(page: Any) -> int:
    page.click("#submit")
    page.wait_for_url(re.compile(r"/experiments/\d+$"))
    return int(page.url.rsplit("/", 1)[1])


def test_plugin_model_from_the_registry(offering: Stack, page: Any, shot: Any) -> None:
    open_form(page, f"{offering.url}/new")
    model = field(page, "model.type", "select")
    labels = model.locator("option").all_inner_texts()
    assert f"tiny_resnet ({PACKAGE})" in labels
    assert {"linear", "mlp", "cnn", "resnet"} <= set(labels)

    model.select_option("tiny_resnet")
    # One input per factory param, prefilled with its default; no built-in fields.
    assert shown(page, "model.") == ["model.type", "model.params.width", "model.params.blocks"]
    width = field(page, "model.params.width")
    assert width.input_value() == "8"
    assert width.get_attribute("type") == "number"
    assert field(page, "model.params.blocks").input_value() == "1"
    width.fill("4")
    field(page, "name").fill("form-plugin-model")
    field(page, "epochs").fill("2")
    shot("form")

    experiment_id = created_id(page)
    spec = httpx.get(f"{offering.url}/v1/experiments/{experiment_id}").json()["spec"]
    assert spec["model"] == {"type": "tiny_resnet", "params": {"width": 4}}
    assert spec["dataset"] == "digits"

    # The run's page: its parameter count and the plugin it trained with (by package version).
    page.locator('#title [data-status="succeeded"]').wait_for(timeout=90_000)
    detail = httpx.get(f"{offering.url}/v1/experiments/{experiment_id}").json()
    assert detail["param_count"] and detail["plugins"]["model"]["version"] == "0.1.0"
    page.wait_for_function(
        "want => document.querySelector('#param-count').textContent === want",
        arg=f"{detail['param_count']:,}",
    )
    plugins = page.locator("#plugins").inner_text()
    assert f"model tiny_resnet · {PACKAGE}" in plugins
    assert "dataset" not in plugins  # digits is built in
    shot("experiment")


def test_plugin_dataset_with_params(offering: Stack, page: Any) -> None:
    open_form(page, f"{offering.url}/new")
    dataset = field(page, "dataset", "select")
    assert f"shapes ({PACKAGE})" in dataset.locator("option").all_inner_texts()
    assert shown(page, "dataset.") == []  # a built-in: no params
    dataset.select_option("shapes")
    assert shown(page, "dataset.") == [
        "dataset.params.n", "dataset.params.size", "dataset.params.noise", "dataset.params.seed",
    ]  # fmt: skip
    assert field(page, "dataset.params.n").input_value() == "600"
    assert field(page, "dataset.params.noise").get_attribute("step") == "any"
    field(page, "dataset.params.n").fill("300")
    field(page, "model.type", "select").select_option("tiny_resnet")
    field(page, "model.params.width").fill("16")  # > 1,000 weights: thousands separators
    field(page, "epochs").fill("1")

    experiment_id = created_id(page)
    with offering.client() as c:
        spec = c.get(f"/v1/experiments/{experiment_id}").json()["spec"]
        assert spec["dataset"] == {"type": "shapes", "params": {"n": 300}}
        assert spec["model"] == {"type": "tiny_resnet", "params": {"width": 16}}
        page.locator('#title [data-status="succeeded"]').wait_for(timeout=90_000)
        detail = c.get(f"/v1/experiments/{experiment_id}").json()
    assert detail["param_count"] >= 1000
    page.wait_for_function(
        "want => document.querySelector('#param-count').textContent === want",
        arg=f"{detail['param_count']:,}",
    )
    plugins = page.locator("#plugins").inner_text()
    assert f"model tiny_resnet · {PACKAGE}" in plugins
    assert f"dataset shapes · {PACKAGE}" in plugins

    # Unchanged params: the plain name. And a clone starts from the stored spec's params.
    open_form(page, f"{offering.url}/new?clone={experiment_id}")
    assert field(page, "dataset", "select").input_value() == "shapes"
    assert field(page, "dataset.params.n").input_value() == "300"
    assert field(page, "model.params.width").input_value() == "16"
    field(page, "dataset.params.n").fill("600")  # back to the factory's default
    field(page, "epochs").fill("1")
    clone_id = created_id(page)
    clone = httpx.get(f"{offering.url}/v1/experiments/{clone_id}").json()["spec"]
    assert clone["dataset"] == "shapes"
    assert clone["model"] == {"type": "tiny_resnet", "params": {"width": 16}}
    page.locator('#title [data-status="succeeded"]').wait_for(timeout=90_000)


def test_builtin_models_show_their_own_fields(offering: Stack, page: Any) -> None:
    open_form(page, f"{offering.url}/new")
    model = field(page, "model.type", "select")
    assert model.input_value() == "mlp"
    mlp = ["model.type", "model.hidden", "model.activation", "model.dropout", "model.norm"]
    assert shown(page, "model.") == mlp
    assert field(page, "model.norm").evaluate("e => e.tagName") == "SELECT"
    assert field(page, "model.activation").evaluate("e => e.tagName") == "SELECT"
    assert field(page, "model.dropout").get_attribute("step") == "any"

    model.select_option("resnet")
    assert shown(page, "model.") == ["model.type", "model.depth", "model.width"]
    assert field(page, "model.depth").input_value() == "20"
    assert page.locator('[data-loc="model.hidden"]').count() == 0

    model.select_option("cnn")
    assert shown(page, "model.") == [
        "model.type", "model.channels", "model.batchnorm", "model.pool",
        "model.hidden", "model.activation", "model.dropout",
    ]  # fmt: skip
    assert field(page, "model.batchnorm").get_attribute("type") == "checkbox"
    assert field(page, "model.pool").locator("option").all_inner_texts() == ["none", "max", "avg"]

    model.select_option("linear")
    assert shown(page, "model.") == ["model.type"]

    # A plugin model and back: its params go with it.
    model.select_option("tiny_resnet")
    model.select_option("mlp")
    assert shown(page, "model.") == mlp

    precision = field(page, "precision")
    assert precision.evaluate("e => e.tagName") == "SELECT"
    assert precision.locator("option").all_inner_texts() == ["fp32", "bf16", "fp16"]
    assert precision.input_value() == "fp32"

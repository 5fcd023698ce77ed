"""Plugin factories, as the worker calls them (worker/engine/plugins.py) and as the API checks a
spec against their description (service/training/plugins.py): what a factory does wrong becomes
an error a person reads; a spec's params are checked without importing anything."""

from __future__ import annotations

from typing import Any

import numpy as np
import pytest
import torch
from torch import nn

from service.training.datasets import DatasetInfo
from service.training.plugins import MODEL_RESERVED, check_params, describe
from worker.engine.plugins import Plugin, PluginError, build_model, load_dataset, param_count

TABULAR = DatasetInfo("t", "classification", 10, (4,), 3, None, "")
IMAGES = DatasetInfo("i", "classification", 10, (2, 3, 3), 3, (2, 3, 3), "")


def model_plugin(factory: Any) -> Plugin:
    return Plugin("models", "net", factory, "acme-models", "1.2.3")


def dataset_plugin(factory: Any) -> Plugin:
    return Plugin("datasets", "blobs", factory, "acme-data", "0.1")


def conv(input_shape: tuple[int, ...], n_outputs: int, width: int = 4) -> nn.Module:
    c = input_shape[0]
    return nn.Sequential(nn.Conv2d(c, width, 3, padding=1), nn.Flatten(),
                         nn.Linear(width * input_shape[1] * input_shape[2], n_outputs))  # fmt: skip


def test_a_model_gets_its_input_shape_and_keeps_its_own_state_dict_keys() -> None:
    model = build_model(model_plugin(conv), IMAGES, 3, {"width": 5})
    assert list(model.state_dict()) == ["0.weight", "0.bias", "2.weight", "2.bias"]
    out = model(torch.zeros(7, 18))  # flat on the device, (N, C, H, W) in the model
    assert out.shape == (7, 3)
    assert param_count(model) == 2 * 5 * 9 + 5 + 45 * 3 + 3


def test_the_probe_leaves_batch_norm_statistics_alone() -> None:
    def bn(input_shape: tuple[int, ...], n_outputs: int) -> nn.Module:
        return nn.Sequential(nn.BatchNorm1d(4), nn.Linear(4, n_outputs))

    model = build_model(model_plugin(bn), TABULAR, 3, {})
    assert int(model[0].num_batches_tracked) == 0 and model.training


@pytest.mark.parametrize(
    ("factory", "expected"),
    [
        (lambda input_shape, n_outputs: 1 / 0, "model plugin 'net' (acme-models 1.2.3) raised "
         "ZeroDivisionError: division by zero"),
        (lambda input_shape, n_outputs: "a model", "returned str, not a torch.nn.Module"),
        (lambda input_shape, n_outputs: nn.Linear(5, n_outputs),
         "its model fails on a batch of shape (2, 4): RuntimeError"),
        (lambda input_shape, n_outputs: nn.Linear(4, 7),
         "maps a batch of shape (2, 4) to (2, 7); expected (2, 3)"),
        (lambda input_shape: nn.Linear(4, 3), "TypeError"),
    ],
)  # fmt: skip
def test_a_model_factory_that_goes_wrong_says_how(factory: Any, expected: str) -> None:
    with pytest.raises(PluginError, match=None) as exc_info:
        build_model(model_plugin(factory), TABULAR, 3, {})
    assert expected in str(exc_info.value)


class Data:
    def __init__(self, x: Any, y: Any, task: str | None = None) -> None:
        self.x, self.y = x, y
        if task:
            self.task = task


def test_a_dataset_is_described_from_what_it_returns(tmp_path: Any) -> None:
    x = np.lib.format.open_memmap(tmp_path / "x.npy", mode="w+", dtype=np.float32,
                                  shape=(12, 1, 2, 2))  # fmt: skip
    x[:] = 1.0
    arrays, info = load_dataset(dataset_plugin(lambda: Data(x, np.arange(12) % 4)), {})
    assert isinstance(arrays.x, np.memmap)  # used in place, never copied whole
    assert (info.task, info.n_classes, info.n_samples) == ("classification", 4, 12)
    assert info.feature_shape == (1, 2, 2) and info.image_shape == (1, 2, 2)
    arrays, info = load_dataset(
        dataset_plugin(lambda n: Data(np.ones((n, 3)), np.linspace(0, 1, n))), {"n": 5}
    )
    assert (
        info.task == "regression" and arrays.x.dtype == np.float32 and arrays.y.dtype == np.float32
    )


@pytest.mark.parametrize(
    ("returned", "expected"),
    [
        (object(), "returned object without attribute(s) x, y"),
        (Data(np.ones((4, 2)), np.zeros(3, dtype=int)), "y has shape (3,); expected (4,)"),
        (Data(np.ones(4), np.zeros(4, dtype=int)), "x has shape (4,); expected (N, *features)"),
        (Data(np.array([["a"], ["b"]]), np.zeros(2, dtype=int)), "x has dtype <U1"),
        (Data(np.ones((2, 2)), np.array([0, -1])), "labels must be integers >= 0"),
        (Data(np.ones((2, 2)), np.array([0.5, 1.0]), "classification"), "labels must be integers"),
        (Data(np.ones((2, 2)), np.array([0.5, np.nan])), "targets must be finite"),
        (Data(np.ones((2, 2)), np.zeros(2, dtype=int), "ranking"), "task 'ranking'"),
    ],
)
def test_a_dataset_factory_that_returns_the_wrong_thing_says_what(
    returned: Any, expected: str
) -> None:
    with pytest.raises(PluginError) as exc_info:
        load_dataset(dataset_plugin(lambda: returned), {})
    assert "dataset plugin 'blobs' (acme-data 0.1)" in str(exc_info.value)
    assert expected in str(exc_info.value)


def factory(input_shape: Any, n_outputs: int, width: int = 8, scale: float = 1.0,
            bias: bool = True, act: str = "relu", sizes: tuple[int, ...] = (1, 2),
            *, depth: int) -> None:  # fmt: skip
    """A signature with every kind of param."""


def test_describe_reads_a_signature_as_json() -> None:
    described = describe(factory, MODEL_RESERVED)
    assert described == {
        "params": [
            {"name": "width", "required": False, "default": 8, "kind": "integer"},
            {"name": "scale", "required": False, "default": 1.0, "kind": "number"},
            {"name": "bias", "required": False, "default": True, "kind": "boolean"},
            {"name": "act", "required": False, "default": "relu", "kind": "string"},
            {"name": "sizes", "required": False, "default": [1, 2], "kind": None},
            {"name": "depth", "required": True, "default": None, "kind": "integer"},
        ],
        "var_keyword": False,
    }
    assert describe(lambda **kw: None)["var_keyword"] is True
    assert describe(lambda f=print: None)["params"][0]["default"].startswith("<built-in")


def test_check_params_names_each_problem_at_its_key() -> None:
    described = describe(factory, MODEL_RESERVED)
    errors = check_params("net", described, {"widht": 1, "scale": "big", "bias": 1,
                                             "width": True, "n_outputs": 3}, ["model", "params"],
                          MODEL_RESERVED)  # fmt: skip
    found = {tuple(e["loc"]): e["type"] for e in errors}
    assert found == {
        ("model", "params", "widht"): "unknown_param",
        ("model", "params", "scale"): "invalid_param",
        ("model", "params", "bias"): "invalid_param",
        ("model", "params", "width"): "invalid_param",  # a bool is not an integer here
        ("model", "params", "n_outputs"): "reserved_param",
        ("model", "params", "depth"): "missing_param",
    }
    assert check_params("net", described, {"depth": 2, "scale": 3, "sizes": [4]}, ["p"]) == []
    assert check_params("net", describe(lambda **kw: None), {"anything": 1}, ["p"]) == []

"""The built-in model zoo (issue #12): mlp norms, cnn batch norm and pooling, the CIFAR-style
ResNet; their submit-time checks; and defaults that build exactly the models they always have."""

from __future__ import annotations

import dataclasses
from typing import Any

import pytest
import torch
from torch import nn

from service.datasets import builtin
from service.training.checks import check_spec
from service.training.datasets import DatasetInfo
from service.training.spec import ExperimentSpec, ModelSpec
from tests.support.sinks import ListSink
from tests.unit.test_spec import errors_for, example, only_error
from worker.engine import program
from worker.engine.data import to_device
from worker.engine.model import BasicBlock, build_model

DIGITS = builtin.info("digits")  # 1×8×8, 10 classes
CIFAR = dataclasses.replace(
    DIGITS, name="cifar-like", feature_shape=(3 * 32 * 32,), image_shape=(3, 32, 32), n_classes=10
)


def n_params(model: nn.Module) -> int:
    return sum(p.numel() for p in model.parameters() if p.requires_grad)


def resnet_params(depth: int, width: int, c_in: int, n_out: int) -> int:
    """He et al.'s CIFAR ResNet with projection (1×1 conv + BN) shortcuts, convs without bias."""
    n = (depth - 2) // 6

    def conv_bn(a: int, b: int, k: int = 3) -> int:
        return k * k * a * b + 2 * b

    total = conv_bn(c_in, width)
    c = width
    for stage in range(3):
        out = width * 2**stage
        for _block in range(n):
            total += conv_bn(c, out) + conv_bn(out, out)
            if c != out:
                total += conv_bn(c, out, k=1)
            c = out
    return total + c * n_out + n_out


def flat(info: DatasetInfo, n: int = 5) -> torch.Tensor:
    assert info.image_shape is not None
    c, h, w = info.image_shape
    return torch.randn(n, c * h * w)


# --- resnet ------------------------------------------------------------------------------------


def test_resnet20_has_the_known_272474_parameters() -> None:
    model = build_model(ModelSpec(type="resnet", depth=20, width=16), CIFAR)
    assert n_params(model) == 272_474 == resnet_params(20, 16, 3, 10)


@pytest.mark.parametrize(
    ("depth", "width", "info"), [(8, 16, CIFAR), (20, 16, CIFAR), (8, 4, DIGITS), (14, 8, DIGITS)]
)
def test_resnet_params_follow_the_formula(depth: int, width: int, info: DatasetInfo) -> None:
    assert info.image_shape is not None and info.n_classes is not None
    model = build_model(ModelSpec(type="resnet", depth=depth, width=width), info)
    assert n_params(model) == resnet_params(depth, width, info.image_shape[0], info.n_classes)
    assert n_params(build_model(ModelSpec(type="resnet", depth=8, width=16), CIFAR)) == 78_042


@pytest.mark.parametrize("info", [DIGITS, CIFAR])
def test_resnet_output_shape_and_structure(info: DatasetInfo) -> None:
    model = build_model(ModelSpec(type="resnet", depth=20, width=4), info)
    assert model(flat(info)).shape == (5, 10)
    blocks = [m for m in model.modules() if isinstance(m, BasicBlock)]
    assert len(blocks) == 9  # 3 stages of n = 3
    projections = [b for b in blocks if not isinstance(b.shortcut, nn.Identity)]
    assert [blocks.index(b) for b in projections] == [3, 6]  # first blocks of stages 2 and 3
    assert [b.conv1.stride for b in blocks] == [(1, 1)] * 3 + [(2, 2), (1, 1), (1, 1)] * 2
    assert [b.conv2.out_channels for b in blocks] == [4] * 3 + [8] * 3 + [16] * 3
    # stem BN + 2 per block + 1 per projection
    assert sum(isinstance(m, nn.BatchNorm2d) for m in model.modules()) == 1 + 2 * 9 + 2
    assert all(m.bias is None for m in model.modules() if isinstance(m, nn.Conv2d))


def test_resnet_works_on_one_pixel_images() -> None:
    tiny = dataclasses.replace(DIGITS, feature_shape=(2,), image_shape=(2, 1, 1))
    model = build_model(ModelSpec(type="resnet", depth=8, width=2), tiny)
    assert model(torch.randn(3, 2)).shape == (3, 10)


# --- cnn ---------------------------------------------------------------------------------------


@pytest.mark.parametrize("pool", ["max", "avg"])
def test_cnn_pool_halves_each_block_and_sizes_the_head(pool: str) -> None:
    spec = ModelSpec(type="cnn", channels=[4, 8, 16], pool=pool, hidden=[12])
    model = build_model(spec, DIGITS)
    kind = nn.MaxPool2d if pool == "max" else nn.AvgPool2d
    assert sum(isinstance(m, kind) for m in model) == 3
    x = flat(DIGITS)
    sizes = []
    for layer in model:
        x = layer(x)
        if isinstance(layer, kind):
            sizes.append(tuple(x.shape[1:]))
    assert sizes == [(4, 4, 4), (8, 2, 2), (16, 1, 1)]
    head = next(m for m in model if isinstance(m, nn.Linear))
    assert head.in_features == 16 * 1 * 1
    assert x.shape == (5, 10)


def test_cnn_pool_floors_odd_sizes() -> None:
    odd = dataclasses.replace(DIGITS, feature_shape=(35,), image_shape=(1, 5, 7))
    model = build_model(ModelSpec(type="cnn", channels=[3, 3], pool="avg"), odd)
    assert next(m for m in model if isinstance(m, nn.Linear)).in_features == 3 * 1 * 1
    assert model(flat(odd)).shape == (5, 10)


def test_cnn_batchnorm_after_each_conv_without_conv_bias() -> None:
    model = build_model(ModelSpec(type="cnn", channels=[4, 8], batchnorm=True), DIGITS)
    kinds = [type(m) for m in model]
    assert kinds[:7] == [
        nn.Unflatten,
        nn.Conv2d,
        nn.BatchNorm2d,
        nn.ReLU,
        nn.Conv2d,
        nn.BatchNorm2d,
        nn.ReLU,
    ]
    assert all(m.bias is None for m in model if isinstance(m, nn.Conv2d))
    assert model(flat(DIGITS)).shape == (5, 10)


# --- mlp ---------------------------------------------------------------------------------------


@pytest.mark.parametrize(("norm", "kind"), [("batch", nn.BatchNorm1d), ("layer", nn.LayerNorm)])
def test_mlp_norm_after_each_hidden_linear(norm: str, kind: type[nn.Module]) -> None:
    spec = ModelSpec(type="mlp", hidden=[32, 16], norm=norm, activation="tanh", dropout=0.1)
    model = build_model(spec, DIGITS)
    assert [type(m) for m in model] == [
        nn.Flatten,
        nn.Linear,
        kind,
        nn.Tanh,
        nn.Dropout,
        nn.Linear,
        kind,
        nn.Tanh,
        nn.Dropout,
        nn.Linear,
    ]
    norms = [m for m in model if isinstance(m, kind)]
    assert [m.weight.shape[0] for m in norms] == [32, 16]  # type: ignore[union-attr]
    assert model(torch.randn(4, 64)).shape == (4, 10)


# --- defaults build exactly today's models -----------------------------------------------------


def assert_same(model: nn.Module, reference: nn.Module) -> None:
    got, want = model.state_dict(), reference.state_dict()
    assert list(got) == list(want)
    assert all(torch.equal(got[k], want[k]) for k in want)  # same init order under one seed


def test_default_mlp_is_unchanged() -> None:
    torch.manual_seed(3)
    model = build_model(ModelSpec(type="mlp", hidden=[32, 16], dropout=0.2), DIGITS)
    torch.manual_seed(3)
    reference = nn.Sequential(
        nn.Flatten(),
        nn.Linear(64, 32),
        nn.ReLU(),
        nn.Dropout(0.2),
        nn.Linear(32, 16),
        nn.ReLU(),
        nn.Dropout(0.2),
        nn.Linear(16, 10),
    )
    assert_same(model, reference)
    assert list(model.state_dict()) == [
        "1.weight",
        "1.bias",
        "4.weight",
        "4.bias",
        "7.weight",
        "7.bias",
    ]


def test_default_cnn_is_unchanged() -> None:
    torch.manual_seed(5)
    model = build_model(ModelSpec(type="cnn"), DIGITS)
    torch.manual_seed(5)
    reference = nn.Sequential(
        nn.Unflatten(1, (1, 8, 8)),
        nn.Conv2d(1, 16, kernel_size=3, padding=1),
        nn.ReLU(),
        nn.Conv2d(16, 32, kernel_size=3, padding=1),
        nn.ReLU(),
        nn.Flatten(),
        nn.Linear(32 * 8 * 8, 64),
        nn.ReLU(),
        nn.Linear(64, 10),
    )
    assert_same(model, reference)
    assert next(iter(model.state_dict())) == "1.weight"


# --- training through the engine ---------------------------------------------------------------


def test_resnet_learns_digits_through_the_engine() -> None:
    spec = ExperimentSpec.model_validate(
        {
            "dataset": "digits",
            "model": {"type": "resnet", "depth": 8, "width": 8},
            "solver": {"type": "SGD", "params": {"momentum": 0.9}},
            "base_lr": 0.05,
            "batch_size": 64,
            "epochs": 4,
            "seed": 0,
            "device": "cpu",
        }
    )
    assert errors_for(spec.model_dump()) == []
    device = torch.device("cpu")
    data = to_device(spec, builtin.load("digits"), DIGITS, device)
    state = program.build(spec, data, device)
    sink = ListSink(spec)
    result = program.train(spec, data, state, sink)
    assert result.epoch == 4 and result.status is not None and result.status.value == "succeeded"
    train_losses, val_losses = sink.metrics("train_loss"), sink.metrics("val_loss")
    assert train_losses[-1] < 0.5 * train_losses[0], train_losses  # type: ignore[operator]
    assert val_losses[-1] < val_losses[0], val_losses  # type: ignore[operator]
    assert sink.rows[-1][2]["val_accuracy"] > 0.8, sink.rows  # type: ignore[operator]


# --- submit-time checks ------------------------------------------------------------------------


def with_model(model: dict[str, Any], **overrides: Any) -> dict[str, Any]:
    return example(model=model, **overrides)


def test_resnet_needs_image_shaped_data() -> None:
    err = only_error(with_model({"type": "resnet", "depth": 8}), "iris")
    assert err["loc"] == ["model", "type"]
    assert err["msg"] == "resnet needs image-shaped data; 'iris' is tabular"
    assert only_error(with_model({"type": "cnn"}), "iris")["loc"] == ["model", "type"]


def test_the_zoo_on_digits_is_accepted() -> None:
    for model in (
        {"type": "resnet", "depth": 8, "width": 4},
        {"type": "cnn", "channels": [8, 8, 8], "pool": "max", "batchnorm": True},
        {"type": "mlp", "norm": "batch"},
        {"type": "mlp", "norm": "layer"},
    ):
        assert errors_for(with_model(model)) == [], model


def test_cnn_pooled_too_deep_is_an_error_at_model_pool() -> None:
    err = only_error(with_model({"type": "cnn", "channels": [4, 4, 4, 4], "pool": "avg"}))
    assert err["loc"] == ["model", "pool"]
    assert "1×8×8" in err["msg"] and "4 convolutions" in err["msg"]
    assert "at most 3" in err["msg"]
    assert errors_for(with_model({"type": "cnn", "channels": [4, 4, 4, 4]})) == []  # no pool


def test_batch_norm_on_a_last_batch_of_one_is_refused() -> None:
    # digits' default 0.8/0.2 split: 1438 training samples; batches of 479 leave one over
    raw = with_model({"type": "mlp", "norm": "batch"}, batch_size=479)
    assert only_error(raw)["loc"] == ["model", "norm"]
    assert errors_for(with_model({"type": "mlp", "norm": "layer"}, batch_size=479)) == []
    # a cnn's batch norm sees its conv's whole map (pools come after it): on digits never 1×1
    cnn = {"type": "cnn", "channels": [4, 4, 4], "batchnorm": True, "pool": "max"}
    assert errors_for(with_model(cnn, batch_size=479)) == []
    pixel = dataclasses.replace(DIGITS, feature_shape=(3,), image_shape=(3, 1, 1))
    spec = ExperimentSpec.model_validate(with_model({**cnn, "pool": "none"}, batch_size=479))
    [err] = check_spec(spec, pixel)
    assert err["loc"] == ["model", "batchnorm"] and "last batch of 1" in err["msg"]
    # resnet: digits' last stage is 2×2, so even a batch of one trains; 3×3 images end at 1×1
    assert errors_for(with_model({"type": "resnet", "depth": 8}, batch_size=479)) == []
    small = dataclasses.replace(DIGITS, feature_shape=(9,), image_shape=(1, 3, 3))
    spec = ExperimentSpec.model_validate(with_model({"type": "resnet", "depth": 8}, batch_size=479))
    [err] = check_spec(spec, small)
    assert err["loc"] == ["model", "type"]
    assert check_spec(spec.model_copy(update={"batch_size": 64}), small) == []

"""Models a spec can name: the built-ins `linear`, `mlp`, `cnn` (image-shaped data such as digits
as 1×8×8) and `resnet`, or a plugin's (`worker/engine/plugins.py`)."""

from __future__ import annotations

import math

import torch
from torch import nn

from service.training.datasets import DatasetInfo
from service.training.spec import ModelSpec
from worker.engine import plugins

ACTIVATIONS: dict[str, type[nn.Module]] = {
    "relu": nn.ReLU,
    "tanh": nn.Tanh,
    "gelu": nn.GELU,
    "sigmoid": nn.Sigmoid,
    "silu": nn.SiLU,
    "leaky_relu": nn.LeakyReLU,
    "elu": nn.ELU,
}


def output_size(info: DatasetInfo) -> int:
    return (info.n_classes or 2) if info.task == "classification" else 1


def _mlp(n_in: int, spec: ModelSpec, n_out: int, hidden: list[int]) -> list[nn.Module]:
    layers: list[nn.Module] = []
    for width in hidden:
        layers += [nn.Linear(n_in, width), ACTIVATIONS[spec.activation]()]
        if spec.dropout:
            layers.append(nn.Dropout(spec.dropout))
        n_in = width
    layers.append(nn.Linear(n_in, n_out))
    return layers


def build_model(
    spec: ModelSpec, info: DatasetInfo, plugin: plugins.Plugin | None = None
) -> nn.Module:
    """The spec's model for `info`'s data; a plugin model needs its `plugin` (the worker's)."""
    n_out = output_size(info)
    if spec.is_plugin:
        if plugin is None:
            raise plugins.PluginError(f"model plugin {spec.type!r} is not installed here")
        return plugins.build_model(plugin, info, n_out, spec.params)
    n_in = math.prod(info.feature_shape)
    if spec.type == "linear":
        return nn.Sequential(nn.Flatten(), nn.Linear(n_in, n_out))
    if spec.type == "mlp":
        return nn.Sequential(nn.Flatten(), *_mlp(n_in, spec, n_out, spec.hidden))
    assert info.image_shape is not None, "checked at submit time"
    c, h, w = info.image_shape
    layers: list[nn.Module] = [nn.Unflatten(1, (c, h, w))]
    for width in spec.channels:
        layers += [nn.Conv2d(c, width, kernel_size=3, padding=1), ACTIVATIONS[spec.activation]()]
        c = width
    layers.append(nn.Flatten())
    return nn.Sequential(*layers, *_mlp(c * h * w, spec, n_out, spec.hidden))


def pick_device(requested: str) -> torch.device:
    if requested == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    return torch.device(requested)

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


def _mlp(
    n_in: int, spec: ModelSpec, n_out: int, hidden: list[int], norm: str = "none"
) -> list[nn.Module]:
    """Linear layers of `hidden` widths, each [normed,] activated [and dropped out], then the
    output layer. `norm` "none" builds exactly the layers (and init order) it always has."""
    layers: list[nn.Module] = []
    for width in hidden:
        layers.append(nn.Linear(n_in, width, bias=norm != "batch"))  # BN's shift is the bias
        if norm == "batch":
            layers.append(nn.BatchNorm1d(width))
        elif norm == "layer":
            layers.append(nn.LayerNorm(width))
        layers.append(ACTIVATIONS[spec.activation]())
        if spec.dropout:
            layers.append(nn.Dropout(spec.dropout))
        n_in = width
    layers.append(nn.Linear(n_in, n_out))
    return layers


POOLS: dict[str, type[nn.Module]] = {"max": nn.MaxPool2d, "avg": nn.AvgPool2d}


def pooled_size(size: int, n_pools: int) -> int:
    """An image side after `n_pools` 2×2 pools of stride 2 (floor): 0 once it has vanished."""
    for _ in range(n_pools):
        size //= 2
    return size


def _cnn(spec: ModelSpec, image_shape: tuple[int, int, int], n_out: int) -> nn.Sequential:
    """3×3 convolutions (padding 1) of `spec.channels` widths, each [batch-normed,] activated
    [and 2×2-pooled], then the mlp head. Defaults build exactly the cnn it always has been."""
    c, h, w = image_shape
    layers: list[nn.Module] = [nn.Unflatten(1, (c, h, w))]
    for width in spec.channels:
        layers.append(nn.Conv2d(c, width, kernel_size=3, padding=1, bias=not spec.batchnorm))
        if spec.batchnorm:
            layers.append(nn.BatchNorm2d(width))
        layers.append(ACTIVATIONS[spec.activation]())
        if spec.pool != "none":
            layers.append(POOLS[spec.pool](kernel_size=2, stride=2))
        c = width
    n_pools = len(spec.channels) if spec.pool != "none" else 0
    h, w = pooled_size(h, n_pools), pooled_size(w, n_pools)
    layers.append(nn.Flatten())
    return nn.Sequential(*layers, *_mlp(c * h * w, spec, n_out, spec.hidden))


class BasicBlock(nn.Module):
    """Two 3×3 convolutions with batch norm and an identity shortcut; where the shape changes
    (stride 2, more channels) the shortcut is a 1×1 convolution + batch norm (projection)."""

    def __init__(self, c_in: int, c_out: int, stride: int) -> None:
        super().__init__()
        self.conv1 = nn.Conv2d(c_in, c_out, 3, stride=stride, padding=1, bias=False)
        self.bn1 = nn.BatchNorm2d(c_out)
        self.conv2 = nn.Conv2d(c_out, c_out, 3, stride=1, padding=1, bias=False)
        self.bn2 = nn.BatchNorm2d(c_out)
        self.relu = nn.ReLU()
        self.shortcut: nn.Module = nn.Identity()
        if stride != 1 or c_in != c_out:
            self.shortcut = nn.Sequential(
                nn.Conv2d(c_in, c_out, 1, stride=stride, bias=False), nn.BatchNorm2d(c_out)
            )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out = self.relu(self.bn1(self.conv1(x)))
        out = self.bn2(self.conv2(out))
        return self.relu(out + self.shortcut(x))


def _resnet(spec: ModelSpec, image_shape: tuple[int, int, int], n_out: int) -> nn.Sequential:
    """CIFAR-style ResNet (He et al. 2016, section 4.2): a 3×3 stem of `width` channels, three
    stages of n = (depth − 2) / 6 basic blocks of widths w, 2w, 4w (stages 2 and 3 start with
    stride 2), global average pooling and a linear layer. Works on images as small as 1×1."""
    c, h, w = image_shape
    n = (spec.depth - 2) // 6
    width = spec.width
    layers: list[nn.Module] = [
        nn.Unflatten(1, (c, h, w)),
        nn.Conv2d(c, width, kernel_size=3, padding=1, bias=False),
        nn.BatchNorm2d(width),
        nn.ReLU(),
    ]
    c_in = width
    for stage in range(3):
        c_out = width * 2**stage
        for block in range(n):
            stride = 2 if stage > 0 and block == 0 else 1
            layers.append(BasicBlock(c_in, c_out, stride))
            c_in = c_out
    layers += [nn.AdaptiveAvgPool2d(1), nn.Flatten(), nn.Linear(c_in, n_out)]
    model = nn.Sequential(*layers)
    for m in model.modules():
        if isinstance(m, nn.Conv2d):
            nn.init.kaiming_normal_(m.weight, mode="fan_out", nonlinearity="relu")
    return model


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
        return nn.Sequential(nn.Flatten(), *_mlp(n_in, spec, n_out, spec.hidden, spec.norm))
    assert info.image_shape is not None, "checked at submit time"
    c, h, w = info.image_shape
    if spec.type == "resnet":
        return _resnet(spec, (c, h, w), n_out)
    return _cnn(spec, (c, h, w), n_out)


def pick_device(requested: str) -> torch.device:
    if requested == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    return torch.device(requested)

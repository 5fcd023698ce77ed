"""A small residual network for image-shaped inputs: the model factory's contract is
`factory(input_shape=(C, H, W), n_outputs=K, **params) -> torch.nn.Module` mapping (N, C, H, W)
to (N, K)."""

from __future__ import annotations

import torch
from torch import nn


class Block(nn.Module):
    def __init__(self, width: int) -> None:
        super().__init__()
        self.conv1 = nn.Conv2d(width, width, 3, padding=1, bias=False)
        self.bn1 = nn.BatchNorm2d(width)
        self.conv2 = nn.Conv2d(width, width, 3, padding=1, bias=False)
        self.bn2 = nn.BatchNorm2d(width)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out = torch.relu(self.bn1(self.conv1(x)))
        return torch.relu(x + self.bn2(self.conv2(out)))


def tiny_resnet(
    input_shape: tuple[int, ...], n_outputs: int, width: int = 8, blocks: int = 1
) -> nn.Module:
    """A conv stem of `width` channels, `blocks` residual blocks, global average pooling and a
    linear head. Tabular input (F,) is read as a 1×1×F image."""
    if width < 1 or blocks < 0:
        raise ValueError(f"width must be >= 1 and blocks >= 0; got width={width}, blocks={blocks}")
    channels = input_shape[0] if len(input_shape) == 3 else 1
    layers: list[nn.Module] = []
    if len(input_shape) != 3:
        layers.append(nn.Unflatten(1, (1, 1, int(torch.tensor(input_shape).prod()))))
    layers += [
        nn.Conv2d(channels, width, 3, padding=1, bias=False),
        nn.BatchNorm2d(width),
        nn.ReLU(),
        *(Block(width) for _ in range(blocks)),
        nn.AdaptiveAvgPool2d(1),
        nn.Flatten(),
        nn.Linear(width, n_outputs),
    ]
    return nn.Sequential(*layers)

"""Entry-point plugins (CONTRACT.md, "Your own models and datasets"): the factories installed
packages declare under `glidepath.models` and `glidepath.datasets`, found once per process, and
the checks that turn whatever a factory does wrong into an error a person reads.

Only declared entry points are ever loaded; a spec names one by its entry-point name, which
cannot spell an import path (`service.training.spec`)."""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass, field
from functools import cache
from importlib.metadata import entry_points
from typing import Any

import numpy as np
import torch
from torch import nn

from service.training.datasets import Arrays, DatasetInfo
from service.training.plugins import MODEL_RESERVED, describe

GROUPS = {"models": "glidepath.models", "datasets": "glidepath.datasets"}


class PluginError(ValueError):
    """A plugin factory failed or returned the wrong thing; the message is the run's error."""


@dataclass(frozen=True)
class Plugin:
    kind: str  # "models" | "datasets"
    name: str
    factory: Callable[..., Any]
    package: str
    version: str

    def label(self) -> str:
        return f"{self.kind[:-1]} plugin {self.name!r} ({self.package} {self.version})"

    def manifest(self) -> dict[str, Any]:
        reserved = MODEL_RESERVED if self.kind == "models" else ()
        return {**describe(self.factory, reserved), "package": self.package,
                "version": self.version}  # fmt: skip

    def pinned(self) -> dict[str, str]:
        """What a run records of the plugin it trained with."""
        return {"name": self.name, "package": self.package, "version": self.version}


@dataclass
class Installed:
    models: dict[str, Plugin] = field(default_factory=dict)
    datasets: dict[str, Plugin] = field(default_factory=dict)
    errors: dict[str, str] = field(default_factory=dict)  # "models/NAME": why it is not offered

    def manifest(self) -> dict[str, Any]:
        return {
            "models": {n: p.manifest() for n, p in sorted(self.models.items())},
            "datasets": {n: p.manifest() for n, p in sorted(self.datasets.items())},
            "errors": dict(sorted(self.errors.items())),
        }


def discover(reserved: dict[str, tuple[str, ...]]) -> Installed:
    """Load every declared entry point of both groups. A plugin that fails to import, or whose
    name is a built-in's (`reserved[kind]`) or another package's, is left out and its reason
    kept, so one broken package does not take the worker down."""
    found = Installed()
    for kind, group in GROUPS.items():
        table: dict[str, Plugin] = getattr(found, kind)
        for ep in entry_points(group=group):
            key = f"{kind}/{ep.name}"
            package = ep.dist.name if ep.dist else "unknown"
            version = ep.dist.version if ep.dist else "unknown"
            if ep.name in reserved.get(kind, ()):
                found.errors[key] = f"{package}: {ep.name!r} is a built-in name; not offered"
                continue
            if ep.name in table:
                found.errors[key] = (f"{package}: {ep.name!r} is already offered by "
                                     f"{table[ep.name].package}; not offered")  # fmt: skip
                continue
            try:
                factory = ep.load()
                if not callable(factory):
                    raise TypeError(f"{ep.value} is not callable")
                plugin = Plugin(kind, ep.name, factory, package, version)
                plugin.manifest()  # its signature must be readable
            except Exception as exc:
                found.errors[key] = f"{package}: {type(exc).__name__}: {exc}"[:500]
                continue
            table[ep.name] = plugin
    return found


@cache
def installed(reserved_models: tuple[str, ...], reserved_datasets: tuple[str, ...]) -> Installed:
    """`discover`, once per process (entry points do not change while it runs)."""
    return discover({"models": reserved_models, "datasets": reserved_datasets})


def _call(plugin: Plugin, **kwargs: Any) -> Any:
    try:
        return plugin.factory(**kwargs)
    except Exception as exc:
        raise PluginError(f"{plugin.label()} raised {type(exc).__name__}: {exc}") from exc


def build_model(
    plugin: Plugin, info: DatasetInfo, n_outputs: int, params: dict[str, Any]
) -> nn.Module:
    """Call a model factory and check that it maps (N, *input_shape) to (N, n_outputs).

    input_shape is the data's image shape (C, H, W) where it has one, else its feature shape.
    The engine keeps samples flat on the device; a forward pre-hook gives the model its
    input_shape (a view, no copy) without wrapping it, so its state_dict keys stay its own."""
    shape = tuple(info.image_shape or info.feature_shape)
    model = _call(plugin, input_shape=shape, n_outputs=n_outputs, **params)
    if not isinstance(model, nn.Module):
        raise PluginError(
            f"{plugin.label()} returned {type(model).__name__}, not a torch.nn.Module"
        )

    def unflatten(_: nn.Module, args: tuple[Any, ...]) -> tuple[Any, ...]:
        return (args[0].reshape(args[0].shape[0], *shape), *args[1:])

    model.register_forward_pre_hook(unflatten)
    was_training = model.training
    model.eval()  # no batch-norm statistics updated, no dropout drawn: the run's seeds hold
    try:
        with torch.no_grad():
            out = model(torch.zeros((2, math.prod(shape))))
    except Exception as exc:
        raise PluginError(
            f"{plugin.label()}: its model fails on a batch of shape {(2, *shape)}: "
            f"{type(exc).__name__}: {exc}"
        ) from exc
    finally:
        model.train(was_training)
    if not isinstance(out, torch.Tensor) or tuple(out.shape) != (2, n_outputs):
        got = tuple(out.shape) if isinstance(out, torch.Tensor) else type(out).__name__
        raise PluginError(
            f"{plugin.label()}: its model maps a batch of shape {(2, *shape)} to {got}; "
            f"expected (2, {n_outputs})"
        )
    return model


def load_dataset(plugin: Plugin, params: dict[str, Any]) -> tuple[Arrays, DatasetInfo]:
    """Call a dataset factory and check what it returns: `x` (N, *shape) numbers, `y` (N,)
    class ids or targets, optional `task`. A float32 `x` (an np.memmap included) is used in
    place, not copied, so data larger than memory stays on disk until a batch reads it."""
    data = _call(plugin, **params)
    missing = [a for a in ("x", "y") if not hasattr(data, a)]
    if missing:
        raise PluginError(f"{plugin.label()} returned {type(data).__name__} without "
                          f"attribute(s) {', '.join(missing)}")  # fmt: skip
    x, y = data.x, data.y
    if not isinstance(x, np.ndarray):
        x = np.asarray(x)
    y = np.asarray(y)
    if x.ndim < 2 or len(x) == 0:
        raise PluginError(f"{plugin.label()}: x has shape {x.shape}; expected (N, *features) "
                          "with N > 0")  # fmt: skip
    if y.shape != (len(x),):
        raise PluginError(f"{plugin.label()}: y has shape {y.shape}; expected ({len(x)},), one "
                          "label or target per sample of x")  # fmt: skip
    if not (np.issubdtype(x.dtype, np.number) or x.dtype == np.bool_):
        raise PluginError(f"{plugin.label()}: x has dtype {x.dtype}; expected numbers")
    task = getattr(data, "task", None) or (
        "classification" if np.issubdtype(y.dtype, np.integer) else "regression"
    )
    if task not in ("classification", "regression"):
        raise PluginError(f"{plugin.label()}: task {task!r}; expected classification or "
                          "regression")  # fmt: skip
    if x.dtype != np.float32:
        x = x.astype(np.float32)
    n_classes = None
    if task == "classification":
        if not (np.issubdtype(y.dtype, np.integer) or np.all(np.mod(y, 1) == 0)) or y.min() < 0:
            raise PluginError(f"{plugin.label()}: classification labels must be integers >= 0")
        y = y.astype(np.int64)
        n_classes = int(y.max()) + 1
    else:
        y = y.astype(np.float32)
        if not np.all(np.isfinite(y)):
            raise PluginError(f"{plugin.label()}: regression targets must be finite")
    shape = tuple(int(d) for d in x.shape[1:])
    info = DatasetInfo(
        name=plugin.name,
        task=task,
        n_samples=len(x),
        feature_shape=shape,
        n_classes=n_classes,
        image_shape=(shape[0], shape[1], shape[2]) if len(shape) == 3 else None,
        description=f"{plugin.label()}: {len(x)} samples of shape {shape}",
    )
    return Arrays(x=x, y=y), info


def param_count(model: nn.Module) -> int:
    return sum(math.prod(p.shape) for p in model.parameters() if p.requires_grad)

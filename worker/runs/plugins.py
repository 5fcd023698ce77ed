"""The plugins installed on this worker, as its runs use them: the factories a spec names and the
package versions a run records (experiments.plugins)."""

from __future__ import annotations

from typing import Any

from service.datasets import builtin
from service.training.spec import BUILTIN_MODELS, ExperimentSpec
from worker.engine.plugins import Installed, Plugin, installed


def here() -> Installed:
    """This process's plugins (discovered once); built-in names are never a plugin's."""
    return installed(BUILTIN_MODELS, tuple(builtin.NAMES))


def model_plugin(spec: ExperimentSpec) -> Plugin | None:
    """The factory of the spec's plugin model (None for a built-in). A run reaches a worker only
    through a queue of workers that offer its plugins, so a miss is an installation changed
    under a running worker, and the run's error says so."""
    return here().models.get(spec.model.type) if spec.model.is_plugin else None


def pinned(spec: ExperimentSpec, dataset: Plugin | None) -> dict[str, Any] | None:
    """What the run records of the plugin packages it trains with; None when it uses none."""
    model = model_plugin(spec)
    out = {k: p.pinned() for k, p in (("model", model), ("dataset", dataset)) if p is not None}
    return out or None

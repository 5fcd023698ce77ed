"""Capability routing: a run that needs a plugin goes to a queue that only workers offering that
plugin consume, so it waits for one of them instead of being retried until it lands on one.

A run's queue is its device queue (`auto`, `cpu`, `gpu`) alone when it uses built-ins only, else
that queue suffixed with the plugins it needs: `auto.model.tiny_resnet`, `gpu.dataset.shapes`,
`auto.model.tiny_resnet.dataset.shapes`. A worker consumes, for each of its device queues, every
combination of what it offers (`consumed`). Plugin names cannot contain dots (spec.py), so a
queue name reads back unambiguously."""

from __future__ import annotations

from collections.abc import Iterable


def capability_queue(base: str, model: str | None, dataset: str | None) -> str:
    parts = [base]
    if model is not None:
        parts += ["model", model]
    if dataset is not None:
        parts += ["dataset", dataset]
    return ".".join(parts)


def consumed(bases: Iterable[str], models: Iterable[str], datasets: Iterable[str]) -> list[str]:
    """Every queue a worker with these device queues and plugins serves, its device queues
    first. (M + 1)(D + 1) per device queue: a handful for the plugins a worker carries."""
    model_options: list[str | None] = [None, *sorted(models)]
    dataset_options: list[str | None] = [None, *sorted(datasets)]
    out: list[str] = []
    for base in bases:
        for m in model_options:
            for d in dataset_options:
                q = capability_queue(base, m, d)
                if q not in out:
                    out.append(q)
    return out

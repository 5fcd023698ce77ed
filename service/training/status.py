"""The run-status vocabulary, in one place. The API publishes it as an OpenAPI enum; the client,
the CLI, the dashboard (through `GET /v1/catalog`) and the tests read it from here."""

from __future__ import annotations

from enum import StrEnum


class ExperimentStatus(StrEnum):
    QUEUED = "queued"
    RUNNING = "running"
    # At a rung of a synchronous pruner (successive halving, hyperband): its checkpoint written,
    # its worker freed, until the rung is decided; then queued again, or pruned.
    WAITING = "waiting"
    SUCCEEDED = "succeeded"
    EARLY_STOPPED = "early_stopped"
    DIVERGED = "diverged"
    FAILED = "failed"
    CANCELLED = "cancelled"
    PRUNED = "pruned"  # stopped by its sweep's pruner (service/training/pruning.py)


class RangeTestStatus(StrEnum):
    """The statuses an LR range test takes: no sweep waits or prunes it, and a diverging loss
    is how it ends (`succeeded`), not a verdict."""

    QUEUED = "queued"
    RUNNING = "running"
    SUCCEEDED = "succeeded"
    FAILED = "failed"
    CANCELLED = "cancelled"


# A run in one of these has ended and never changes status again.
FINAL: frozenset[ExperimentStatus] = frozenset(
    {
        ExperimentStatus.SUCCEEDED,
        ExperimentStatus.EARLY_STOPPED,
        ExperimentStatus.DIVERGED,
        ExperimentStatus.FAILED,
        ExperimentStatus.CANCELLED,
        ExperimentStatus.PRUNED,
    }
)
# Not ended yet: queued, running, or waiting at a pruner's rung.
LIVE: frozenset[ExperimentStatus] = frozenset(set(ExperimentStatus) - FINAL)
# Ended well: trained to the end, or stopped early by its own rule.
OK: frozenset[ExperimentStatus] = frozenset(
    {ExperimentStatus.SUCCEEDED, ExperimentStatus.EARLY_STOPPED}
)

"""Every table, imported in one place so Alembic's autogenerate and `metadata` see them all."""

from service.datasets.models import Dataset
from service.dispatch.models import OutboxMessage
from service.experiments.models import Decision, EpochRow, Experiment, ExperimentTag
from service.kit.db import Base

__all__ = [
    "Base",
    "Dataset",
    "Decision",
    "EpochRow",
    "Experiment",
    "ExperimentTag",
    "OutboxMessage",
]

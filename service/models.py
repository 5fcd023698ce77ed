"""Every table, imported in one place so Alembic's autogenerate and `metadata` see them all."""

from service.batches.models import Batch
from service.datasets.models import Dataset
from service.dispatch.models import OutboxMessage
from service.experiments.models import Decision, EpochRow, Experiment, ExperimentTag, RangePoint
from service.kit.db import Base
from service.sweeps.models import Sweep

__all__ = [
    "Base",
    "Batch",
    "Dataset",
    "Decision",
    "EpochRow",
    "Experiment",
    "ExperimentTag",
    "OutboxMessage",
    "RangePoint",
    "Sweep",
]

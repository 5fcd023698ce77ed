"""Every table, registered in one place so Alembic's autogenerate and `metadata` see them all,
and the keys between domains, declared here where both of their tables are known."""

from sqlalchemy import ForeignKeyConstraint

from service.artifacts.models import Artifact
from service.batches.models import Batch
from service.datasets.models import Dataset
from service.dispatch.models import OutboxMessage
from service.experiments.models import (
    Attempt,
    Decision,
    EpochRow,
    Experiment,
    ExperimentTag,
    RangePoint,
    RunStatusChange,
)
from service.kit.db import Base
from service.sweeps.models import Sweep
from service.tokens.models import Token
from service.workers.models import WorkerRow

# A sweep's runs. Declared here rather than on the column so that the experiments domain maps
# without the sweeps table (a worker flushes an Experiment without ever loading sweeps); the
# database has the key either way, from the migrations.
Base.metadata.tables["experiments"].append_constraint(
    ForeignKeyConstraint([Experiment.sweep_id], [Sweep.id], ondelete="SET NULL")
)

__all__ = [
    "Artifact",
    "Attempt",
    "Base",
    "Batch",
    "Dataset",
    "Decision",
    "EpochRow",
    "Experiment",
    "ExperimentTag",
    "OutboxMessage",
    "RangePoint",
    "RunStatusChange",
    "Sweep",
    "Token",
    "WorkerRow",
]

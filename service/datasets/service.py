"""Resolve a dataset name to what the spec checks and the worker need."""

from __future__ import annotations

from sqlalchemy import select
from sqlalchemy.orm import Session

from service.datasets import builtin
from service.datasets.builtin import DatasetInfo
from service.datasets.models import Dataset
from service.kit.errors import InvalidInput, item


def uploaded(session: Session) -> list[Dataset]:
    return list(session.scalars(select(Dataset).order_by(Dataset.name)))


def resolve(session: Session, name: str, loc: list[str | int]) -> DatasetInfo:
    if name in builtin.NAMES:
        return builtin.info(name)
    row = session.scalars(select(Dataset).where(Dataset.name == name)).first()
    if row is None:
        known = [*builtin.NAMES, *(d.name for d in uploaded(session))]
        raise InvalidInput.of(
            [
                item(
                    loc,
                    f"unknown dataset {name!r}; available: {', '.join(sorted(known))}",
                    "unknown_dataset",
                )
            ]
        )
    shape = tuple(row.feature_shape)
    return DatasetInfo(
        name=row.name,
        task=row.task,
        n_samples=row.n_samples,
        feature_shape=shape,
        n_classes=row.n_classes,
        image_shape=(shape[0], shape[1], shape[2]) if len(shape) == 3 else None,
        description=f"uploaded ({row.n_samples} samples)",
    )

"""Every query on `datasets` (uploaded and generated ones; built-ins are code, not rows)."""

from __future__ import annotations

from sqlalchemy import select
from sqlalchemy.orm import Session

from service.datasets.models import Dataset


class DatasetRepository:
    def __init__(self, session: Session) -> None:
        self.session = session

    def all(self) -> list[Dataset]:
        """By name."""
        return list(self.session.scalars(select(Dataset).order_by(Dataset.name)))

    def by_name(self, name: str) -> Dataset | None:
        return self.session.scalars(select(Dataset).where(Dataset.name == name)).first()

    def add(self, dataset: Dataset) -> Dataset:
        """Insert now (a flush), so a name taken meanwhile fails here with an IntegrityError."""
        self.session.add(dataset)
        self.session.flush()
        return dataset

"""Every query on `batches`. A batch's runs are experiments rows: `ExperimentRepository` reads
them."""

from __future__ import annotations

from sqlalchemy import select
from sqlalchemy.orm import Session

from service.batches.models import Batch


class BatchRepository:
    def __init__(self, session: Session) -> None:
        self.session = session

    def get(self, batch_id: str) -> Batch | None:
        return self.session.get(Batch, batch_id)

    def by_idempotency_key(self, key: str) -> Batch | None:
        return self.session.scalar(select(Batch).where(Batch.idempotency_key == key))

    def add(self, batch: Batch) -> Batch:
        """Insert now (a flush), so a key taken meanwhile fails here with an IntegrityError."""
        self.session.add(batch)
        self.session.flush()
        return batch

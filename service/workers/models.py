"""The registry's table: one row per worker process, written by the worker itself when it starts
and refreshed with its heartbeat (DESIGN.md, "Plugins and the worker registry")."""

from __future__ import annotations

from datetime import datetime
from typing import Any

from sqlalchemy import JSON, DateTime, Integer, String
from sqlalchemy.orm import Mapped, mapped_column

from service.kit.db import Base
from service.kit.time import utcnow


class WorkerRow(Base):
    __tablename__ = "workers"

    # host:pid, the name the worker also holds leases under (experiments.lease_owner)
    id: Mapped[str] = mapped_column(String(200), primary_key=True)
    host: Mapped[str] = mapped_column(String(200))
    pid: Mapped[int] = mapped_column(Integer)
    queues: Mapped[list[str]] = mapped_column(JSON)
    # [{"name": "cuda:0", "kind": "cuda", "model": "NVIDIA H200", "memory_mb": 143771}, ...]
    devices: Mapped[list[dict[str, Any]]] = mapped_column(JSON)
    # {"models": {NAME: {"params": [...], "package": ..., "version": ...}}, "datasets": {...}}
    plugins: Mapped[dict[str, Any]] = mapped_column(JSON)
    current_run: Mapped[int | None] = mapped_column(Integer, nullable=True)
    started_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), default=utcnow)
    last_seen: Mapped[datetime] = mapped_column(DateTime(timezone=True), default=utcnow)
    stopped_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True), nullable=True)

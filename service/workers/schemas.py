"""Response bodies of GET /v1/workers (CONTRACT.md, "Your own models and datasets")."""

from __future__ import annotations

from datetime import datetime
from typing import Any, Literal

from pydantic import BaseModel, Field, field_serializer

from service.kit.time import as_utc


class PluginParam(BaseModel):
    name: str
    required: bool
    default: Any = Field(description="the factory's default (JSON; a repr when not JSON)")
    kind: str | None = Field(description="integer, number, boolean or string when annotated")


class PluginOut(BaseModel):
    params: list[PluginParam]
    var_keyword: bool = Field(description="the factory takes **kwargs: any param is passed on")
    package: str
    version: str


class PluginsOut(BaseModel):
    models: dict[str, PluginOut]
    datasets: dict[str, PluginOut]
    errors: dict[str, str] = Field(
        default_factory=dict, description="entry points found but not offered, with the reason"
    )


class WorkerOut(BaseModel):
    id: str = Field(description="host:pid, as in an experiment's `worker`")
    host: str
    pid: int
    state: Literal["alive", "lost", "stopped"] = Field(
        description="alive: heartbeat recent; lost: none for 3 heartbeats; stopped: shut down"
    )
    queues: list[str]
    devices: list[dict[str, Any]]
    plugins: PluginsOut
    current_run: int | None
    started_at: datetime
    last_seen: datetime

    @field_serializer("started_at", "last_seen")
    def _times(self, dt: datetime) -> datetime | None:
        return as_utc(dt)


class WorkerList(BaseModel):
    items: list[WorkerOut]
    lost_after_s: float = Field(
        description="a worker not seen for longer than this is `lost` (three heartbeats)"
    )

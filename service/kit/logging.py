"""Structured logs (structlog over the standard library's logging), configured once per process.

Every logger renders through one formatter, ours and the libraries' alike (uvicorn, Celery,
SQLAlchemy): JSON objects with `GLIDEPATH_LOG_FORMAT=json`, readable console lines otherwise.
Events are short names with fields: `log.info("claimed", experiment_id=7, attempt=2)`. Fields
bound with `bound(...)` (a run's id, attempt and worker; a request's id) ride on every event
logged inside that block, on that thread or task only (context variables)."""

from __future__ import annotations

import logging
import sys
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

import structlog

from service.config import settings

_SHARED: list[Any] = [
    structlog.contextvars.merge_contextvars,
    structlog.stdlib.add_log_level,
    structlog.stdlib.add_logger_name,
    structlog.processors.TimeStamper(fmt="iso", utc=True),
]


def configure(fmt: str | None = None, level: str | None = None) -> None:
    """Route every log record of this process through structlog's formatter on stderr."""
    fmt = fmt or settings.log_format
    renderer: Any = (
        structlog.processors.JSONRenderer()
        if fmt == "json"
        # A plain traceback: Rich's (the default when Rich is installed) renders every frame's
        # locals, which took seconds per logged exception.
        else structlog.dev.ConsoleRenderer(
            colors=False, exception_formatter=structlog.dev.plain_traceback
        )
    )
    structlog.configure(
        processors=[
            *_SHARED,
            structlog.stdlib.PositionalArgumentsFormatter(),
            structlog.processors.StackInfoRenderer(),
            structlog.stdlib.ProcessorFormatter.wrap_for_formatter,
        ],
        logger_factory=structlog.stdlib.LoggerFactory(),
        wrapper_class=structlog.stdlib.BoundLogger,
        cache_logger_on_first_use=True,
    )
    formatter = structlog.stdlib.ProcessorFormatter(
        # Records from plain `logging` (uvicorn, Celery) get the same fields and rendering.
        foreign_pre_chain=[*_SHARED, structlog.stdlib.ExtraAdder()],
        processors=[
            structlog.stdlib.ProcessorFormatter.remove_processors_meta,
            structlog.processors.format_exc_info if fmt == "json" else _keep,
            renderer,
        ],
    )
    handler = logging.StreamHandler(sys.stderr)
    handler.setFormatter(formatter)
    root = logging.getLogger()
    root.handlers[:] = [handler]
    root.setLevel((level or settings.log_level).upper())
    for name in ("uvicorn", "uvicorn.error", "celery"):
        # Let their records reach the root handler instead of their own.
        logging.getLogger(name).handlers.clear()
        logging.getLogger(name).propagate = True
    # The API's `request` events (monitoring/access_log.py) say what uvicorn's access line says,
    # with the route and at DEBUG for a successful read: uvicorn's own is off (no handler, not
    # propagated, so its protocol skips formatting it).
    access = logging.getLogger("uvicorn.access")
    access.handlers.clear()
    access.propagate = False


def _keep(_: Any, __: str, event: Any) -> Any:
    return event  # the console renderer prints exceptions itself


def get_logger(name: str) -> structlog.stdlib.BoundLogger:
    logger: structlog.stdlib.BoundLogger = structlog.stdlib.get_logger(name)
    return logger


@contextmanager
def bound(**fields: Any) -> Iterator[None]:
    """Add `fields` to every event logged in this block (this thread or task only)."""
    with structlog.contextvars.bound_contextvars(**fields):
        yield

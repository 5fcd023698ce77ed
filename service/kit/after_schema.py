"""Checks a route runs on a body its schema refused, so that one 422 lists every mistake.

A spec's meaning (torch's kwargs, the dataset's size, the plugins the workers offer) is checked
only once Pydantic has accepted its shape, so a spec with a negative `base_lr` and a `momentum`
torch refuses took two submits to clear. A route registers a function here that is handed the
refused body and the schema's errors and returns what else it finds; the validation handler
(`exception_handlers`) adds those to the same 422."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any, TypeVar

from service.kit.errors import ErrorItem

Check = Callable[[Any, list[ErrorItem]], list[ErrorItem]]
Endpoint = TypeVar("Endpoint", bound=Callable[..., Any])

_CHECKS: dict[Callable[..., Any], Check] = {}


def after_schema(check: Check) -> Callable[[Endpoint], Endpoint]:
    """Register `check` for the endpoint it decorates (put it below the route's decorator)."""

    def register(endpoint: Endpoint) -> Endpoint:
        _CHECKS[endpoint] = check
        return endpoint

    return register


def check_for(endpoint: Callable[..., Any] | None) -> Check | None:
    return _CHECKS.get(endpoint) if endpoint is not None else None

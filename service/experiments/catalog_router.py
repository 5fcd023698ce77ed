"""GET /v1/catalog: the solvers and schedulers a spec may name, each with its kwargs and torch's
own defaults, so a form (the dashboard's) offers exactly a class's params, prefilled."""

from __future__ import annotations

import inspect
import json
from typing import Any

from fastapi import APIRouter
from pydantic import BaseModel, Field

from service.training import catalog
from service.training.hypergradient import SOLVERS as HYPERGRADIENT_SOLVERS

router = APIRouter(prefix="/v1/catalog", tags=["catalog"])


class ParamOut(BaseModel):
    name: str
    required: bool
    default: Any = Field(description="torch's default (JSON); null when required or not JSON")
    kind: str = Field(description="type of the default: number, integer, boolean, string, list…")


class ClassOut(BaseModel):
    type: str
    params: list[ParamOut]
    interval: str | None = Field(default=None, description="schedulers: the default interval")
    composite: bool = Field(
        default=False, description="SequentialLR, ChainedScheduler: composes `schedulers`"
    )


class CatalogOut(BaseModel):
    solvers: list[ClassOut]
    schedulers: list[ClassOut]
    constant_scheduler: str
    hypergradient_solvers: list[str]


def _kind(value: Any) -> str:
    if isinstance(value, bool):
        return "boolean"
    if isinstance(value, int):
        return "integer"
    if isinstance(value, float):
        return "number"
    if isinstance(value, list | tuple):
        return "list"
    return "string" if isinstance(value, str) else "null"


def _params(kwargs: dict[str, inspect.Parameter], required: list[str]) -> list[ParamOut]:
    out = []
    for name, p in kwargs.items():
        default = None if p.default is inspect.Parameter.empty else p.default
        try:
            json.dumps(default)
        except TypeError:  # a torch type or callable: nothing a form can prefill
            default = None
        if isinstance(default, tuple):
            default = list(default)
        out.append(ParamOut(name=name, required=name in required, default=default,
                            kind=_kind(default)))  # fmt: skip
    return out


@router.get("", response_model=CatalogOut)
def get_catalog() -> CatalogOut:
    return CatalogOut(
        solvers=[
            ClassOut(type=s, params=_params(catalog.solver_kwargs(s), [])) for s in catalog.SOLVERS
        ],
        schedulers=[
            ClassOut(
                type=s,
                params=_params(catalog.scheduler_kwargs(s), catalog.required_scheduler_kwargs(s)),
                interval="step" if s in catalog.STEP_INTERVAL_DEFAULT else "epoch",
                composite=s in catalog.COMPOSITES,
            )
            for s in catalog.SCHEDULERS
        ],
        constant_scheduler=catalog.CONSTANT,
        hypergradient_solvers=sorted(HYPERGRADIENT_SOLVERS),
    )

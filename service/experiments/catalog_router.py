"""GET /v1/catalog: the solvers and schedulers a spec may name, each with its kwargs and torch's
own defaults, so a form (the dashboard's) offers exactly a class's params, prefilled."""

from __future__ import annotations

import ast
import inspect
import json
import typing
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
    kind: str = Field(
        description="type of the default: number, integer, boolean, string, list…; number for "
        "a float param whose default is written as an int (SGD's `momentum=0`); a param without "
        "a default takes its annotation's (StepLR's `step_size: int`)"
    )
    choices: list[Any] | None = Field(
        default=None, description="the values torch allows, where its signature lists them"
    )


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


def _annotation_text(p: inspect.Parameter) -> str:
    a = p.annotation
    if a is inspect.Parameter.empty:
        return ""
    return a if isinstance(a, str) else getattr(a, "__name__", None) or str(a)


def _choices(p: inspect.Parameter) -> list[Any] | None:
    """A `Literal[...]` annotation's values (ReduceLROnPlateau's mode, threshold_mode), whether
    the annotation is the type itself or its text (a module with postponed annotations)."""
    a = p.annotation
    if typing.get_origin(a) is typing.Literal:
        return list(typing.get_args(a))
    if isinstance(a, str) and a.startswith("Literal[") and a.endswith("]"):
        try:
            values = ast.literal_eval(f"[{a[len('Literal[') : -1]}]")
        except (ValueError, SyntaxError):
            return None
        return list(values) if isinstance(values, list) else None
    return None


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
        kind = _kind(default)
        text = _annotation_text(p)
        if kind == "integer" and "float" in text:
            kind = "number"  # `momentum: float = 0`: a form must take 0.9
        elif kind == "null" and text in ("int", "float"):
            kind = "integer" if text == "int" else "number"  # required: `step_size: int`
        out.append(ParamOut(name=name, required=name in required, default=default,
                            kind=kind, choices=_choices(p)))  # fmt: skip
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

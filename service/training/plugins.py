"""What a plugin factory declares, as data: the workers describe each entry point's signature
in their manifest (`describe`), and the API checks a spec's `params` against that description
(`check_params`) without importing the plugin, which it need not even have installed."""

from __future__ import annotations

import inspect
import json
from collections.abc import Callable
from typing import Any

from service.training.errors import ErrorItem, item

# What the worker passes to a model factory itself (CONTRACT.md): never a spec's param.
MODEL_RESERVED = ("input_shape", "n_outputs")
_SIMPLE_TYPES = {"int": "integer", "float": "number", "bool": "boolean", "str": "string"}


def _json_default(value: Any) -> Any:
    if isinstance(value, tuple):
        value = list(value)
    try:
        json.dumps(value, allow_nan=False)
    except (TypeError, ValueError):  # an object or a callable: nothing a form can prefill
        return repr(value)[:200]
    return value


def _kind(p: inspect.Parameter) -> str | None:
    """The JSON type a param takes, when its annotation says plainly (int, float, bool, str)."""
    ann = p.annotation
    name = ann if isinstance(ann, str) else getattr(ann, "__name__", None)
    return _SIMPLE_TYPES.get(str(name)) if name else None


def describe(factory: Callable[..., Any], reserved: tuple[str, ...] = ()) -> dict[str, Any]:
    """A factory's keyword arguments: `{params: [{name, required, default, kind}], var_keyword}`
    (JSON), leaving out the arguments the worker passes itself (`reserved`)."""
    params = []
    var_keyword = False
    for p in inspect.signature(factory).parameters.values():
        if p.kind is p.VAR_KEYWORD:
            var_keyword = True
        elif p.kind in (p.VAR_POSITIONAL, p.POSITIONAL_ONLY) or p.name in reserved:
            continue
        else:
            required = p.default is p.empty
            params.append(
                {
                    "name": p.name,
                    "required": required,
                    "default": None if required else _json_default(p.default),
                    "kind": _kind(p),
                }
            )
    return {"params": params, "var_keyword": var_keyword}


def _type_ok(kind: str | None, value: Any) -> bool:
    if kind == "integer":
        return isinstance(value, int) and not isinstance(value, bool)
    if kind == "number":
        return isinstance(value, int | float) and not isinstance(value, bool)
    if kind == "boolean":
        return isinstance(value, bool)
    if kind == "string":
        return isinstance(value, str)
    return True  # unannotated or a richer type: the factory itself is the judge


def check_params(
    name: str, described: dict[str, Any], params: dict[str, Any], loc: list[str | int],
    reserved: tuple[str, ...] = (),
) -> list[ErrorItem]:  # fmt: skip
    """A spec's `params` against a factory's description: every key a parameter of the factory
    (unless it takes **kwargs), every required one given, simple annotations respected, and no
    key the worker passes itself."""
    by_name = {p["name"]: p for p in described.get("params", [])}
    allowed = ", ".join(sorted(by_name)) or "none"
    errors = []
    for key, value in params.items():
        if key in reserved:
            errors.append(item([*loc, key], f"{key!r} is passed by the worker from the data; it "
                               "is not settable here", "reserved_param"))  # fmt: skip
        elif key not in by_name:
            if not described.get("var_keyword"):
                errors.append(item([*loc, key], f"{name} has no parameter {key!r}; allowed: "
                                   f"{allowed}", "unknown_param"))  # fmt: skip
        elif not _type_ok(by_name[key]["kind"], value):
            errors.append(item([*loc, key], f"{name}'s {key!r} takes a {by_name[key]['kind']}; "
                               f"got {json.dumps(value)[:100]}", "invalid_param"))  # fmt: skip
    for p in by_name.values():
        if p["required"] and p["name"] not in params:
            errors.append(item([*loc, p["name"]], f"{name} requires {p['name']!r}",
                               "missing_param"))  # fmt: skip
    return errors

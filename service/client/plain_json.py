"""A parsed submit file made into what a JSON request body can carry, or the first place where
it cannot be (with its path in the document, as the user wrote it).

Python's JSON parser reads `NaN`, `Infinity` and `1e999`, and YAML has `.nan` and `.inf`, but
JSON has no such numbers: httpx refuses to send them (a traceback) and the API refuses every
non-finite number of a spec with a 422 anyway. Explicit YAML tags (`!!binary`, `!!set`,
`!!timestamp`) build objects JSON has no form for either.
"""

from __future__ import annotations

import datetime as dt
import math
from typing import Any

NON_FINITE_HINT = "is not a number the API accepts (JSON has no NaN or Infinity)"


class NotJson(ValueError):
    """A value with no JSON form; `path` is where it is (`experiments.1.base_lr`)."""

    def __init__(self, path: str, message: str) -> None:
        super().__init__(f"{path}: {message}" if path else message)
        self.path = path
        self.message = message


def non_finite_name(x: float) -> str:
    return "NaN" if math.isnan(x) else "Infinity" if x > 0 else "-Infinity"


def plain_json(doc: Any) -> Any:
    """`doc` with only JSON's types: a date (`!!timestamp`) becomes its ISO text; mapping keys
    become the strings JSON would write. Raises `NotJson` for anything else."""
    return _value(doc, "", set())


def _value(v: Any, path: str, seen: set[int]) -> Any:
    # bool before int, and str/int/None as they are: the API judges their range and type.
    if v is None or isinstance(v, bool | int | str):
        return v
    if isinstance(v, float):
        if not math.isfinite(v):
            raise NotJson(path, f"{non_finite_name(v)} {NON_FINITE_HINT}")
        return v
    if isinstance(v, dt.date):  # datetime is a date too
        return v.isoformat()
    if isinstance(v, dict | list | tuple):
        # A YAML alias inside its own anchor (`a: &x [*x]`) is a structure that holds itself.
        if id(v) in seen:
            raise NotJson(path, "refers to itself (a YAML alias inside its own anchor)")
        seen.add(id(v))
        try:
            if isinstance(v, dict):
                return _mapping(v, path, seen)
            return [_value(x, _join(path, str(i)), seen) for i, x in enumerate(v)]
        finally:
            seen.discard(id(v))
    if isinstance(v, set | frozenset):
        raise NotJson(path, "a set (!!set) is not a JSON value; write a list")
    what = "binary data (!!binary)" if isinstance(v, bytes) else f"a {type(v).__name__}"
    raise NotJson(path, f"{what} is not a JSON value")


def _mapping(d: dict[Any, Any], path: str, seen: set[int]) -> dict[str, Any]:
    out: dict[str, Any] = {}
    for k, x in d.items():
        key = _key(k, path)
        if key in out:  # YAML `1:` and `"1":` in one mapping are one JSON key
            raise NotJson(_join(path, key), "the key is given twice (as two different types)")
        out[key] = _value(x, _join(path, key), seen)
    return out


def _key(k: Any, path: str) -> str:
    # The strings json.dumps writes for these keys, so `1:` in YAML means "1", `true:` "true".
    if isinstance(k, str):
        return k
    if k is None or isinstance(k, bool):
        return "null" if k is None else "true" if k else "false"
    if isinstance(k, int):
        return str(k)
    if isinstance(k, float) and math.isfinite(k):
        return repr(k)
    if isinstance(k, dt.date):
        return k.isoformat()
    shown = non_finite_name(k) if isinstance(k, float) else type(k).__name__
    raise NotJson(path, f"a mapping key {shown} is not a JSON key; quote it")


def _join(path: str, key: str) -> str:
    return f"{path}.{key}" if path else key

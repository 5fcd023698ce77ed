"""Read a submit file (YAML or JSON) and tell what it holds.

| the document                                   | kind         | sent to               |
|------------------------------------------------|--------------|-----------------------|
| a mapping (one experiment spec)                | `experiment` | POST /v1/experiments  |
| a list of specs, or `{experiments: [...]}`     | `batch`      | POST /v1/batches      |
| `{base: spec, strategy: ..., ...}`             | `sweep`      | POST /v1/sweeps       |
| `{lr_range_test: {spec, min_lr, max_lr, ...}}` | `range_test` | POST /v1/lr-range-tests |

YAML is read with YAML 1.2 numbers: `1e-5` is a float (PyYAML's YAML 1.1 default reads it as a
string), and, as in YAML 1.2, `2024-01-01` is the string written, not a date. What JSON cannot
carry (NaN, Infinity, `!!binary`) is a `FileError` naming where it is (plain_json.py).
"""

from __future__ import annotations

import json
import re
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal, TextIO

import yaml

from service.client.plain_json import NotJson, plain_json

Kind = Literal["experiment", "batch", "sweep", "range_test"]
RANGE_TEST_KEY = "lr_range_test"
SWEEP_KEYS = ("base", "strategy")
ENDPOINTS: dict[str, str] = {
    "experiment": "/v1/experiments",
    "batch": "/v1/batches",
    "sweep": "/v1/sweeps",
    "range_test": "/v1/lr-range-tests",
}


class FileError(ValueError):
    """The file cannot be read, parsed, or classified (the CLI's exit code 2)."""


class _Loader(yaml.SafeLoader):
    """SafeLoader that reads `1e-5`, `5e3` and `-2E+4` as floats, and `2024-01-01` as a string
    (YAML 1.2 core schema)."""


# A date-like scalar (`name: 2024-01-01`, a tag's value) stays the text the user wrote: YAML 1.1
# made it a date, which JSON has no form for and whose ISO text can differ from what was written.
_TIMESTAMP = "tag:yaml.org,2002:timestamp"
_Loader.yaml_implicit_resolvers = {
    first: [(tag, regexp) for tag, regexp in resolvers if tag != _TIMESTAMP]
    for first, resolvers in yaml.SafeLoader.yaml_implicit_resolvers.items()
}

_Loader.add_implicit_resolver(
    "tag:yaml.org,2002:float",
    re.compile(
        r"""^(?:[-+]?(?:[0-9][0-9_]*)(?:\.[0-9_]*)?[eE][-+]?[0-9]+
        |[-+]?\.[0-9_]+(?:[eE][-+]?[0-9]+)?)$""",
        re.X,
    ),
    list("-+0123456789."),
)


@dataclass(frozen=True)
class Submission:
    """What a file asks for: its `kind` and the request `body` to POST."""

    kind: Kind
    body: dict[str, Any]
    source: str = ""

    @property
    def endpoint(self) -> str:
        return ENDPOINTS[self.kind]

    def specs(self) -> list[dict[str, Any]]:
        """Every experiment spec the file holds (a sweep's base, a range test's spec)."""
        if self.kind == "experiment":
            return [self.body]
        if self.kind == "batch":
            return [s for s in self.body.get("experiments", []) if isinstance(s, dict)]
        key = "base" if self.kind == "sweep" else "spec"
        spec = self.body.get(key)
        return [spec] if isinstance(spec, dict) else []


def parse_text(text: str, fmt: Literal["json", "yaml", "auto"], source: str) -> Any:
    """JSON or YAML text to a document; `auto` tries JSON first, then YAML."""
    if fmt in ("json", "auto"):
        try:
            return json.loads(text)
        except json.JSONDecodeError as exc:
            if fmt == "json":
                raise FileError(
                    f"{source}: invalid JSON at line {exc.lineno}, column {exc.colno}: {exc.msg}"
                ) from None
    try:
        return yaml.load(text, Loader=_Loader)  # a SafeLoader subclass: no arbitrary objects
    except yaml.YAMLError as exc:
        where = ""
        mark = getattr(exc, "problem_mark", None)
        if mark is not None:
            where = f" at line {mark.line + 1}, column {mark.column + 1}"
        problem = getattr(exc, "problem", None) or str(exc).splitlines()[0]
        raise FileError(f"{source}: invalid YAML{where}: {problem}") from None


def read_document(path: str | Path, stdin: TextIO | None = None) -> Any:
    """The parsed file, as plain JSON data: by extension (.json, .yaml/.yml), else JSON or YAML;
    `-` is stdin."""
    source = "<stdin>" if str(path) == "-" else str(path)
    try:
        return plain_json(_parse(path, stdin))
    except NotJson as exc:
        raise FileError(f"{source}: {exc}") from None
    except RecursionError:  # `[[[[…]]]]` thousands deep: both parsers recurse
        raise FileError(f"{source}: nested too deeply to read") from None


def _parse(path: str | Path, stdin: TextIO | None) -> Any:
    if str(path) == "-":
        try:
            text = (stdin or sys.stdin).read()
            # Bytes that are not UTF-8 raise, or (surrogateescape, as in the C locale) become
            # lone surrogates that the parsers would report as a strange character.
            text.encode("utf-8")
        except UnicodeError:
            raise FileError("<stdin>: cannot read: not UTF-8 text") from None
        return parse_text(text, "auto", "<stdin>")
    p = Path(path)
    try:
        text = p.read_text(encoding="utf-8")
    except UnicodeDecodeError as exc:
        at = f"byte {exc.object[exc.start]:#04x} at offset {exc.start}"
        raise FileError(f"{p}: cannot read: not UTF-8 text ({at})") from None
    except OSError as exc:
        raise FileError(f"{p}: cannot read: {exc.strerror or exc}") from None
    suffix = p.suffix.lower()
    fmt: Literal["json", "yaml", "auto"] = (
        "json" if suffix == ".json" else "yaml" if suffix in (".yaml", ".yml") else "auto"
    )
    return parse_text(text, fmt, str(p))


_SCALARS = {str: "a string", int: "a number", float: "a number", bool: "a boolean"}


def classify(doc: Any, source: str = "<input>") -> Submission:
    """Tell a single spec, a batch, a sweep and a range test apart (see the module doc)."""
    if isinstance(doc, list):
        return Submission("batch", {"experiments": _spec_list(doc, source, "")}, source)
    if not isinstance(doc, dict):
        got = "an empty document" if doc is None else _SCALARS.get(type(doc), "a scalar")
        raise FileError(
            f"{source}: expected a spec (a mapping), a list of specs, a sweep or an "
            f"{RANGE_TEST_KEY}; got {got}"
        )
    if RANGE_TEST_KEY in doc:
        others = sorted(str(k) for k in doc if k != RANGE_TEST_KEY)
        if others:
            raise FileError(
                f"{source}: a range-test file holds only the {RANGE_TEST_KEY!r} key; "
                f"move {', '.join(others)} inside it"
            )
        body = doc[RANGE_TEST_KEY]
        if not isinstance(body, dict):
            raise FileError(
                f"{source}: {RANGE_TEST_KEY} must be a mapping {{spec, min_lr, max_lr, steps}}"
            )
        return Submission("range_test", body, source)
    is_sweep = any(k in doc for k in SWEEP_KEYS)
    if "experiments" in doc:
        if is_sweep:
            raise FileError(
                f"{source}: has both 'experiments' (a batch) and 'base'/'strategy' (a sweep)"
            )
        specs = _spec_list(doc["experiments"], source, "experiments")
        return Submission("batch", {**doc, "experiments": specs}, source)
    if is_sweep:
        return Submission("sweep", doc, source)
    return Submission("experiment", doc, source)


def _spec_list(value: Any, source: str, where: str) -> list[dict[str, Any]]:
    label = f"{where}: " if where else ""
    if not isinstance(value, list) or not value:
        raise FileError(f"{source}: {label}expected a non-empty list of specs")
    for i, spec in enumerate(value):
        if not isinstance(spec, dict):
            path = f"{where}.{i}" if where else str(i)
            raise FileError(f"{source}: {path}: expected a spec (a mapping)")
    return value


def load_submission(path: str | Path, stdin: TextIO | None = None) -> Submission:
    """Read and classify a submit file (`-` = stdin). Raises `FileError`."""
    source = "<stdin>" if str(path) == "-" else str(path)
    return classify(read_document(path, stdin), source)

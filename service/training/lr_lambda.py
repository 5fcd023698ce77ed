"""`lr_lambda` for LambdaLR and MultiplicativeLR: an arithmetic expression in `epoch` (or `step`
with interval `step`), never Python a request could run (CONTRACT.md, "Schedules").

The grammar: numbers, `+ - * / ** %`, comparisons, `min max abs sqrt exp log cos sin pi`, and
`a if cond else b`. It is checked on the parsed tree against that whitelist (no names but the
variable and those functions, no attributes, subscripts, calls of anything else, lambdas or
comprehensions) and bounded in size; only then is the tree compiled and evaluated, with no
builtins. Every number is a float, so `**` can overflow (an error) but never build a huge
integer; a float `epoch ** 2` equals Python's `epoch ** 2` for the integers torch passes."""

from __future__ import annotations

import ast
import functools
import math
from collections.abc import Callable
from functools import cache
from types import CodeType
from typing import Any, cast

import numpy as np

MAX_LENGTH = 500
MAX_NODES = 200
FUNCTIONS: dict[str, Callable[..., float]] = {
    "min": min, "max": max, "abs": abs, "sqrt": math.sqrt, "exp": math.exp, "log": math.log,
    "cos": math.cos, "sin": math.sin,
}  # fmt: skip
CONSTANTS = {"pi": math.pi}
GRAMMAR = (
    "numbers, + - * / ** %, comparisons, min max abs sqrt exp log cos sin pi and `a if cond else b`"
)
_OPERATORS = (
    ast.Add, ast.Sub, ast.Mult, ast.Div, ast.Pow, ast.Mod, ast.USub, ast.UAdd,
    ast.Lt, ast.LtE, ast.Gt, ast.GtE, ast.Eq, ast.NotEq,
)  # fmt: skip
_NODES = (ast.Expression, ast.BinOp, ast.UnaryOp, ast.Compare, ast.IfExp, ast.Call, ast.Name,
          ast.Constant, ast.Load, *_OPERATORS)  # fmt: skip


class LambdaError(ValueError):
    """The expression is outside the grammar, or its value is not a usable factor."""


class _Floats(ast.NodeTransformer):
    def visit_Constant(self, node: ast.Constant) -> ast.Constant:
        value = cast(float, node.value)  # a number: _check let nothing else through
        return ast.copy_location(ast.Constant(float(value)), node)


class _Arrays(ast.NodeTransformer):
    """The same expression over a numpy array of counters: `a if c else b` → where(c, a, b),
    `a < b < c` → (a < b) & (b < c); the functions are numpy's (see `_ARRAY_NAMES`)."""

    def visit_IfExp(self, node: ast.IfExp) -> ast.AST:
        self.generic_visit(node)
        call = ast.Call(ast.Name("where", ast.Load()), [node.test, node.body, node.orelse], [])
        return ast.copy_location(call, node)

    def visit_Compare(self, node: ast.Compare) -> ast.AST:
        self.generic_visit(node)
        parts: list[ast.expr] = []
        left = node.left
        for op, right in zip(node.ops, node.comparators, strict=True):
            parts.append(ast.Compare(left, [op], [right]))
            left = right
        out = parts[0]
        for part in parts[1:]:
            out = ast.BinOp(out, ast.BitAnd(), part)
        return ast.copy_location(out, node)


def _fold(fn: Callable[..., Any]) -> Callable[..., Any]:
    return lambda *args: functools.reduce(fn, args)


_ARRAY_NAMES: dict[str, object] = {
    "min": _fold(np.minimum), "max": _fold(np.maximum), "abs": np.abs, "sqrt": np.sqrt,
    "exp": np.exp, "log": np.log, "cos": np.cos, "sin": np.sin, "where": np.where, **CONSTANTS,
}  # fmt: skip


def _check(tree: ast.Expression, variable: str) -> None:
    nodes = list(ast.walk(tree))
    if len(nodes) > MAX_NODES:
        raise LambdaError(f"too long: {len(nodes)} parts (at most {MAX_NODES})")
    for node in nodes:
        if not isinstance(node, _NODES):
            raise LambdaError(f"{type(node).__name__} is not allowed; allowed: {GRAMMAR}")
        if isinstance(node, ast.Constant) and (
            isinstance(node.value, bool) or not isinstance(node.value, int | float)
        ):
            raise LambdaError(f"only numbers are allowed, not {node.value!r}")
        if isinstance(node, ast.Name) and node.id not in {variable, *FUNCTIONS, *CONSTANTS}:
            other = "step" if variable == "epoch" else "epoch"
            hint = f"; `{other}` needs interval `{other}`" if node.id == other else ""
            raise LambdaError(f"unknown name {node.id!r}: the variable is `{variable}`{hint}")
        if isinstance(node, ast.Call) and (
            not isinstance(node.func, ast.Name) or node.func.id not in FUNCTIONS or node.keywords
        ):
            raise LambdaError(f"only {', '.join(FUNCTIONS)} may be called")
        if isinstance(node, ast.Call):
            name, n = node.func.id, len(node.args)  # type: ignore[attr-defined]
            if (name in ("min", "max") and n < 2) or (name not in ("min", "max") and n != 1):
                takes = "two or more arguments" if name in ("min", "max") else "one argument"
                raise LambdaError(f"{name} takes {takes}")
        if (
            isinstance(node, ast.Name)
            and node.id in FUNCTIONS
            and not any(isinstance(p, ast.Call) and p.func is node for p in nodes)
        ):
            raise LambdaError(f"{node.id} is a function: call it, e.g. {node.id}(...)")


@cache
def _compiled(expression: str, variable: str, arrays: bool = False) -> CodeType:
    if len(expression) > MAX_LENGTH:
        raise LambdaError(f"too long: {len(expression)} characters (at most {MAX_LENGTH})")
    try:
        tree = ast.parse(expression.strip(), mode="eval")
    except SyntaxError as exc:
        raise LambdaError(f"not an expression: {exc.msg}") from None
    _check(tree, variable)
    tree = _Floats().visit(tree)
    if arrays:
        tree = _Arrays().visit(tree)
    return compile(ast.fix_missing_locations(tree), "<lr_lambda>", "eval")


def compile_lambda(expression: str, variable: str = "epoch") -> Callable[[int], float]:
    """The expression as a function of the scheduler's counter; raises LambdaError when it is
    outside the grammar. Evaluating it may still raise (a division by zero, an overflow)."""
    code = _compiled(expression, variable)
    names: dict[str, object] = {**FUNCTIONS, **CONSTANTS}

    def lr_lambda(t: int) -> float:
        return float(eval(code, {"__builtins__": {}}, {**names, variable: float(t)}))

    return lr_lambda


CHUNK = 1 << 20  # counters evaluated at once by `check_factors`


@functools.lru_cache(maxsize=1024)
def check_factors(
    expression: str, variable: str, count: int, multiplicative: bool
) -> tuple[int, str] | None:
    """Evaluate the expression at 0..count, every value torch will ask for in the run (as numpy
    arrays, a million counters at a time: a long per-step run is checked in about a second); the
    first counter whose value is not a finite factor >= 0 (> 0 for MultiplicativeLR, which
    multiplies them), with the reason; None when all are. Raises LambdaError."""
    code = _compiled(expression, variable, arrays=True)
    need = "> 0" if multiplicative else ">= 0"
    for start in range(0, count + 1, CHUNK):
        t = np.arange(start, min(count + 1, start + CHUNK), dtype=np.float64)
        with np.errstate(all="ignore"):  # 1/0, overflow, log(0): non-finite values, found below
            try:
                values = np.broadcast_to(
                    np.asarray(eval(code, {"__builtins__": {}}, {**_ARRAY_NAMES, variable: t}),
                               dtype=np.float64), t.shape)  # fmt: skip
            except (ArithmeticError, ValueError, TypeError) as exc:
                return start, f"evaluating it fails: {type(exc).__name__}: {exc}"
        bad = ~np.isfinite(values) | (values < 0) | ((values == 0) if multiplicative else False)
        if bad.any():
            i = int(np.argmax(bad))
            return start + i, f"its value {float(values[i])!r} is not a finite factor {need}"
    return None

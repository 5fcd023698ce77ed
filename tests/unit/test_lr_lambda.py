"""`lr_lambda` (LambdaLR, MultiplicativeLR): the contract's grammar and nothing else, a factor
check over the whole run, and per-epoch LRs equal to plain torch with the same Python lambda."""

from __future__ import annotations

import math
from typing import Any

import pytest
import torch
from torch.optim.lr_scheduler import LambdaLR

from service.datasets import builtin
from service.training.checks import check_spec
from service.training.lr_lambda import LambdaError, check_factors, compile_lambda
from service.training.schedule import iter_epoch_lrs
from service.training.spec import ExperimentSpec
from tests.support.torch_reference import plain_torch_lrs

# (expression, the same as a Python lambda) in the contract's grammar
FORMS: list[tuple[str, Any]] = [
    ("0.95 ** epoch", lambda e: 0.95**e),
    ("1 / (1 + 0.1 * epoch)", lambda e: 1 / (1 + 0.1 * e)),
    ("min(1, (epoch + 1) / 4)", lambda e: min(1, (e + 1) / 4)),
    ("0.5 * (1 + cos(pi * epoch / 12))", lambda e: 0.5 * (1 + math.cos(math.pi * e / 12))),
    ("1 if epoch < 5 else 0.1", lambda e: 1 if e < 5 else 0.1),
    ("exp(-0.05 * epoch)", lambda e: math.exp(-0.05 * e)),
    ("max(0.01, 1 - epoch / 20)", lambda e: max(0.01, 1 - e / 20)),
    ("0.1 if epoch % 4 == 3 else 1", lambda e: 0.1 if e % 4 == 3 else 1),
    ("sqrt(1 / (epoch + 1))", lambda e: math.sqrt(1 / (e + 1))),
    ("abs(sin(epoch)) + 0.1", lambda e: abs(math.sin(e)) + 0.1),
]


def torch_lrs(kind: str, expression: str, epochs: int, warmup: int = 0) -> list[float]:
    """Plain torch with the expression as a Python lambda (tests/support/torch_reference.py)."""
    return plain_torch_lrs(
        base_lr=0.1, kind=kind, params={"lr_lambda": expression}, interval="epoch",
        warmup=warmup, start_factor=0.1, epochs=epochs, steps=1,
    )  # fmt: skip


def spec(kind: str, expression: str, **more: Any) -> ExperimentSpec:
    return ExperimentSpec.model_validate({
        "dataset": "digits", "base_lr": 0.1, "epochs": 16,
        "scheduler": {"type": kind, "params": {"lr_lambda": expression}}, **more,
    })  # fmt: skip


@pytest.mark.parametrize(("expression", "fn"), FORMS, ids=[f for f, _ in FORMS])
@pytest.mark.parametrize("warmup", [0, 3])
def test_lambda_lr_equals_plain_torch(expression: str, fn: Any, warmup: int) -> None:
    more = {"warmup": {"epochs": warmup}} if warmup else {}
    s = spec("LambdaLR", expression, **more)
    assert check_spec(s, builtin.info("digits")) == []
    ours = list(iter_epoch_lrs(s, 23))
    assert ours == torch_lrs("LambdaLR", expression, 16, warmup)  # the same floats


def test_multiplicative_lr_equals_plain_torch() -> None:
    s = spec("MultiplicativeLR", "0.9 if epoch < 5 else 0.99")
    assert list(iter_epoch_lrs(s, 23)) == torch_lrs(
        "MultiplicativeLR", "0.9 if epoch < 5 else 0.99", 16
    )


def test_per_step_lambda_uses_step() -> None:
    s = spec("LambdaLR", "min(1, (step + 1) / 50)", scheduler=None)
    s = ExperimentSpec.model_validate({**s.model_dump(), "scheduler": {
        "type": "LambdaLR", "params": {"lr_lambda": "min(1, (step + 1) / 50)"},
        "interval": "step"}})  # fmt: skip
    assert check_spec(s, builtin.info("digits")) == []
    p = torch.zeros(1, requires_grad=True)
    opt = torch.optim.SGD([p], lr=0.1)
    sched = LambdaLR(opt, lambda t: min(1, (t + 1) / 50))
    steps = 23  # digits, batch 64, train 1438
    expected = []
    for _ in range(16):
        expected.append(opt.param_groups[0]["lr"])
        for _ in range(steps):
            opt.step()
            sched.step()
    assert list(iter_epoch_lrs(s, steps)) == expected


@pytest.mark.parametrize(
    "hostile",
    [
        "__import__('os').system('id')", "epoch.real", "(lambda: 1)()", "[1][0]",
        "[e for e in (1,)]", "open('x')", "'text'", "True", "x", "epoch(1)", "min",
        "max(epoch)", "sqrt(1, 2)", "min(*(1, 2))", "(epoch := 3)", "f'{epoch}'", "1; 2",
        "import os", "epoch if epoch else", "1 + " * 300 + "1", "()", "{1: 2}", "...", "",
        "exp(x=1)", "globals()", "__builtins__",
    ],
)  # fmt: skip
def test_anything_outside_the_grammar_is_refused(hostile: str) -> None:
    with pytest.raises(LambdaError):
        compile_lambda(hostile)
    errors = check_spec(spec("LambdaLR", hostile), builtin.info("digits"))
    assert [e["loc"] for e in errors] == [["scheduler", "params", "lr_lambda"]]


@pytest.mark.parametrize(
    ("expression", "kind", "epoch", "why"),
    [
        ("1 - epoch / 10", "LambdaLR", 11, "-0.1"),
        ("1 / (epoch - 3)", "LambdaLR", 0, "-0.33"),
        ("log(epoch)", "LambdaLR", 0, "-inf"),
        ("10 ** (epoch * 50)", "LambdaLR", 7, "inf"),
        ("1 if epoch < 8 else 0", "MultiplicativeLR", 8, "0.0"),
    ],
)
def test_a_bad_factor_names_its_epoch(expression: str, kind: str, epoch: int, why: str) -> None:
    [error] = check_spec(spec(kind, expression), builtin.info("digits"))
    assert error["loc"] == ["scheduler", "params", "lr_lambda"]
    assert f"at epoch {epoch}:" in error["msg"] and why in error["msg"]


def test_a_long_per_step_run_is_checked_whole_and_quickly() -> None:
    # 20 million counters: the last one is the only bad factor.
    bad = check_factors("1 if step < 20000000 else -1", "step", 20_000_000, False)
    assert bad is not None and bad[0] == 20_000_000


@pytest.mark.parametrize(("expression", "fn"), FORMS, ids=[f for f, _ in FORMS])
def test_the_evaluator_is_the_python_expression(expression: str, fn: Any) -> None:
    f = compile_lambda(expression)
    assert [f(e) for e in range(40)] == [float(fn(e)) for e in range(40)]

"""Schedule-free optimizers (the `schedulefree` package): train()/eval() switched around
validation and checkpoints, the recorded LR is the one the epoch's first step used (their warmup
included), a resume is bit-identical, a scheduler or warmup beside them is a 422, and AdamW
schedule-free trains digits to at least 0.9 validation accuracy."""

from __future__ import annotations

from typing import Any

import pytest
import torch

from service.datasets import builtin
from service.training.checks import check_spec
from service.training.spec import ExperimentSpec
from tests.support.sinks import ListSink
from worker.engine import program
from worker.engine.data import DeviceData, to_device

CPU = torch.device("cpu")
STEPS = 23  # digits: 1438 training samples in batches of 64


def spec_for(
    solver: str, params: dict[str, Any], base_lr: float, epochs: int = 8
) -> ExperimentSpec:
    return ExperimentSpec.model_validate({
        "dataset": "digits", "model": {"type": "mlp", "hidden": [64], "dropout": 0.1},
        "solver": {"type": solver, "params": params}, "base_lr": base_lr, "epochs": epochs,
        "batch_size": 64, "seed": 2, "device": "cpu",
    })  # fmt: skip


def digits(spec: ExperimentSpec) -> DeviceData:
    return to_device(spec, builtin.load("digits"), builtin.info("digits"), CPU)


def run(spec: ExperimentSpec) -> tuple[ListSink, program.RunState]:
    data = digits(spec)
    state = program.build(spec, data, CPU)
    sink = ListSink(spec)
    assert program.train(spec, data, state, sink).status == "succeeded"
    return sink, state


def test_adamw_schedule_free_trains_digits_and_records_its_warmup() -> None:
    spec = spec_for("AdamWScheduleFree", {"warmup_steps": 40}, 0.01)
    assert check_spec(spec, builtin.info("digits")) == []
    sink, _ = run(spec)
    assert sink.rows[-1][2]["val_accuracy"] >= 0.9  # type: ignore[operator]
    # The LR of each epoch's first step: k steps taken before it, warmup (k + 1) / 40.
    expected = [0.01 * min(1.0, ((e - 1) * STEPS + 1) / 40) for e in range(1, 9)]
    assert [lr for _, lr, _ in sink.rows] == pytest.approx(expected, rel=1e-12)


@pytest.mark.parametrize(
    ("solver", "params", "base_lr"),
    [("SGDScheduleFree", {"warmup_steps": 10}, 0.5), ("RAdamScheduleFree", {}, 0.01),
     ("AdamWScheduleFree", {"warmup_steps": 30}, 0.01)],
)  # fmt: skip
def test_a_resume_is_bit_identical(solver: str, params: dict[str, Any], base_lr: float) -> None:
    spec = spec_for(solver, params, base_lr, epochs=5)
    straight, final = run(spec)
    data = digits(spec)
    head_state = program.build(spec, data, CPU)
    head = ListSink(spec, save_at=2)
    program.train(spec, data, head_state, head)
    ckpt = head.saved_checkpoint()
    assert ckpt["epoch"] == 2
    resumed = program.build(spec, data, CPU)  # a fresh worker
    resumed.load_state_dict(ckpt)
    tail = ListSink(spec, state=head.saved_state)
    program.train(spec, data, resumed, tail)
    assert head.rows[:2] + tail.rows == straight.rows
    pairs = zip(resumed.model.parameters(), final.model.parameters(), strict=True)
    assert all(torch.equal(a, b) for a, b in pairs)


def test_the_model_kept_is_the_averaged_one() -> None:
    """After training the weights are eval()'s (the average x), as validation saw them."""
    spec = spec_for("AdamWScheduleFree", {"warmup_steps": 40}, 0.01, epochs=2)
    _, state = run(spec)
    assert state.optimizer.param_groups[0]["train_mode"] is False


@pytest.mark.parametrize(
    ("extra", "loc"),
    [({"scheduler": {"type": "StepLR", "params": {"step_size": 2}}}, ["scheduler", "type"]),
     ({"warmup": {"epochs": 2}}, ["warmup"])],
)  # fmt: skip
def test_a_scheduler_or_warmup_beside_them_is_refused(
    extra: dict[str, Any], loc: list[str]
) -> None:
    spec = ExperimentSpec.model_validate(
        {"dataset": "digits", "solver": {"type": "SGDScheduleFree"}, **extra}
    )
    [error] = check_spec(spec, builtin.info("digits"))
    assert error["loc"] == loc and "SGDScheduleFree schedules the LR itself" in error["msg"]


def test_their_own_params_are_checked() -> None:
    spec = ExperimentSpec.model_validate(
        {"dataset": "digits", "solver": {"type": "AdamWScheduleFree", "params": {"warmup": 3}}}
    )
    [error] = check_spec(spec, builtin.info("digits"))
    assert error["loc"] == ["solver", "params", "warmup"] and "warmup_steps" in error["msg"]

"""Scheduler values torch accepts when built but fails on mid-run are refused at submit time."""

from __future__ import annotations

import pytest
import torch

from service.datasets.builtin import info
from service.training.checks import check_spec
from service.training.spec import ExperimentSpec


def test_onecycle_zero_length_phase_is_refused_before_torch_fails_mid_run() -> None:
    # three_phase, pct_start 0.6 over 5 steps: phases end at 2.0, 4.0, 4 -> the last is empty.
    p = torch.zeros(1, requires_grad=True)
    opt = torch.optim.SGD([p], lr=0.1, momentum=0.9)
    sched = torch.optim.lr_scheduler.OneCycleLR(opt, max_lr=1.0, total_steps=5, pct_start=0.6,
                                                three_phase=True)  # fmt: skip
    with pytest.raises(ZeroDivisionError):  # plain torch: fine when built, fails on step 5
        for _ in range(5):
            opt.step()
            sched.step()
    # iris: 120 training samples, batch 120 -> 1 step per epoch; 5 epochs -> 5 steps
    spec = ExperimentSpec.model_validate({
        "dataset": "iris", "epochs": 5, "batch_size": 120, "base_lr": 0.1,
        "solver": {"type": "SGD", "params": {"momentum": 0.9}},
        "scheduler": {"type": "OneCycleLR",
                      "params": {"max_lr": 1.0, "pct_start": 0.6, "three_phase": True}},
    })  # fmt: skip
    errors = check_spec(spec, info("iris"))
    assert [e["loc"] for e in errors] == [["scheduler", "params", "pct_start"]]
    assert "zero-length phase" in errors[0]["msg"]


@pytest.mark.parametrize("factor", [0, -1, 1, 1.5])
def test_plateau_factor_outside_0_1_is_refused(factor: float) -> None:
    # torch refuses factor >= 1 itself but accepts factor <= 0, which would send the LR straight
    # to min_lr at the first reduction.
    spec = ExperimentSpec.model_validate({
        "dataset": "digits", "epochs": 5,
        "scheduler": {"type": "ReduceLROnPlateau", "params": {"factor": factor}},
    })  # fmt: skip
    errors = check_spec(spec, info("digits"))
    assert [e["loc"] for e in errors] == [["scheduler", "params", "factor"]], errors

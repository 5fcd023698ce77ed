"""The per-step LR (service/training/per_step.py, the engine's StepLRs, the endpoint's
downsampling): which runs record it, its storage bytes, the walk of a per-step schedule against
plain torch, every step's LR as the engine sees it (schedule-free and fp16's skipped steps
included), and min/max downsampling."""

from __future__ import annotations

import struct
from typing import Any

import numpy as np
import pytest
import schedulefree
import torch

from service.datasets import builtin
from service.experiments.lr_trace import minmax_indices
from service.training import per_step
from service.training.spec import ExperimentSpec
from tests.support.sinks import ListSink
from tests.support.torch_reference import for_interval, plain_torch_step_lrs
from worker.engine import program
from worker.engine.data import to_device
from worker.engine.loop import StepLRs

CPU = torch.device("cpu")


def spec_of(**over: Any) -> ExperimentSpec:
    return ExperimentSpec.model_validate({"dataset": "iris", "base_lr": 0.1, "epochs": 3,
                                          "device": "cpu", **over})  # fmt: skip


def test_the_bytes_are_little_endian_float64_and_read_back_exactly() -> None:
    values = [0.1, 1e-300, 3.0, 2.0**-1074, 0.30000000000000004]
    data = per_step.pack(values)
    assert data == struct.pack("<5d", *values)
    assert list(per_step.unpack(data)) == values
    assert per_step.pack([]) == b"" and list(per_step.unpack(b"")) == []
    with pytest.raises(ValueError, match="8 bytes"):
        per_step.unpack(b"\0" * 7)


@pytest.mark.parametrize(
    ("over", "recorded"),
    [
        ({}, False),
        ({"scheduler": {"type": "OneCycleLR", "params": {"max_lr": 0.5}}}, False),
        ({"solver": {"type": "SGD", "hypergradient": {"hyper_lr": 1e-3}}}, True),
        ({"solver": {"type": "AdamWScheduleFree"}}, True),
        ({"precision": "fp16", "scheduler": {"type": "OneCycleLR", "params": {"max_lr": 0.5}}},
         True),
        ({"precision": "fp16", "scheduler": {"type": "StepLR", "params": {"step_size": 2}}},
         False),
        ({"precision": "fp16", "scheduler": {"type": "StepLR", "params": {"step_size": 2},
                                             "interval": "step"}}, True),
        ({"precision": "fp16"}, False),
    ],
)  # fmt: skip
def test_runs_whose_step_lr_depends_on_data_or_the_optimizer_record_it(
    over: dict[str, Any], recorded: bool
) -> None:
    assert per_step.recorded(spec_of(**over)) is recorded


WALKS: list[tuple[str, dict[str, Any], int]] = [
    ("OneCycleLR", {"max_lr": 0.5, "pct_start": 0.3}, 0),
    ("CyclicLR", {"max_lr": 0.5, "step_size_up": 4, "step_size_down": 3}, 1),
    ("LambdaLR", {"lr_lambda": "0.99 ** epoch"}, 2),
    ("CosineAnnealingWarmRestarts", {"T_0": 5, "T_mult": 2}, 1),
]


@pytest.mark.parametrize(("kind", "params", "warmup"), WALKS, ids=[w[0] for w in WALKS])
def test_the_walk_of_a_per_step_schedule_equals_plain_torch(
    kind: str, params: dict[str, Any], warmup: int
) -> None:
    params = for_interval(kind, params, "step")
    steps, epochs = 7, 6
    spec = spec_of(scheduler={"type": kind, "params": params, "interval": "step"}, epochs=epochs,
                   warmup={"epochs": warmup, "start_factor": 0.2} if warmup else None,
                   solver={"type": "SGD", "params": {"momentum": 0.9}})  # fmt: skip
    walked = list(per_step.walk_steps(spec, steps, epochs))
    torch_lrs = plain_torch_step_lrs(
        base_lr=0.1, kind=kind, params=params, interval="step", warmup=warmup, start_factor=0.2,
        epochs=epochs, steps=steps,
    )  # fmt: skip
    assert len(walked) == epochs * steps
    assert walked == pytest.approx(torch_lrs, rel=1e-12, abs=0)
    assert list(per_step.walk_steps(spec, steps, 2)) == walked[: 2 * steps]  # a prefix


def test_schedule_free_steps_record_scheduled_lr_and_a_skipped_step_the_next_ones() -> None:
    p = torch.nn.Parameter(torch.ones(2))
    opt = schedulefree.SGDScheduleFree([p], lr=0.5, warmup_steps=10)
    opt.train()
    lrs = StepLRs(opt)
    for taken in (True, False, True, True, False):  # the last one skipped at the epoch's end
        if taken:
            p.grad = torch.ones_like(p)
            opt.step()
        lrs.after_step(taken)
    # Taken steps k = 1, 2, 3 use 0.5 · k / 10; a skipped one the LR the next taken step used.
    assert lrs.epoch() == pytest.approx([0.05, 0.1, 0.1, 0.15, 0.15], rel=1e-12)


def test_a_schedule_free_run_records_each_step_and_its_first_is_the_epochs_lr() -> None:
    spec = spec_of(solver={"type": "AdamWScheduleFree", "params": {"warmup_steps": 8}},
                   base_lr=0.01, batch_size=16)  # fmt: skip
    data = to_device(spec, builtin.load("iris"), builtin.info("iris"), CPU)
    state = program.build(spec, data, CPU)
    sink = ListSink(spec)
    assert program.train(spec, data, state, sink).status == "succeeded"
    steps = state.steps_per_epoch
    for (epoch, lr, _), lrs in zip(sink.rows, sink.lrs, strict=True):
        assert lrs is not None and lrs.steps is not None and len(lrs.steps) == steps
        assert lrs.steps[0] == lr
        k = (epoch - 1) * steps  # steps taken before the epoch: the warmup is (k + i + 1) / 8
        expected = [0.01 * min(1.0, (k + i + 1) / 8) for i in range(steps)]
        assert list(lrs.steps) == pytest.approx(expected, rel=1e-12)
        assert (lrs.lr_min, lrs.lr_max) == (min(lrs.steps), max(lrs.steps))


def test_a_run_that_does_not_record_its_steps_still_keeps_their_range() -> None:
    spec = spec_of(scheduler={"type": "OneCycleLR", "params": {"max_lr": 0.5}}, batch_size=16,
                   epochs=2)  # fmt: skip
    data = to_device(spec, builtin.load("iris"), builtin.info("iris"), CPU)
    state = program.build(spec, data, CPU)
    sink = ListSink(spec)
    program.train(spec, data, state, sink)
    walked = list(per_step.walk_steps(spec, state.steps_per_epoch, 2))
    for (epoch, lr, _), lrs in zip(sink.rows, sink.lrs, strict=True):
        assert lrs is not None and lrs.steps is None
        steps = walked[(epoch - 1) * state.steps_per_epoch : epoch * state.steps_per_epoch]
        assert (lr, lrs.lr_min, lrs.lr_max) == (steps[0], min(steps), max(steps))


# -- downsampling ------------------------------------------------------------------------------


def _series() -> list[np.ndarray[Any, Any]]:
    rng = np.random.default_rng(0)
    one_cycle = plain_torch_step_lrs(base_lr=0.1, kind="OneCycleLR", params={"max_lr": 0.5},
                                     interval="step", warmup=0, start_factor=0.1, epochs=10,
                                     steps=97)  # fmt: skip
    return [np.asarray(one_cycle), rng.random(1000), rng.random(5), np.full(300, 0.1),
            np.cumsum(rng.standard_normal(4321))]  # fmt: skip


@pytest.mark.parametrize("max_points", [1, 2, 3, 4, 5, 10, 101, 999, 1000, 5000])
def test_downsampling_keeps_first_last_min_max_within_max_points(max_points: int) -> None:
    for values in _series():
        keep = minmax_indices(values, max_points)
        n = len(values)
        assert list(keep) == sorted(set(keep.tolist())) and len(keep) <= max_points
        if n <= max_points:
            assert list(keep) == list(range(n))
            continue
        assert keep[0] == 0
        if max_points >= 2:
            assert keep[-1] == n - 1
        if max_points >= 4:  # at least one bucket: the extremes survive, at their own step
            assert values[keep].min() == values.min() and values[keep].max() == values.max()
            assert int(np.argmax(values)) in keep or values[0] == values.max()
        assert list(minmax_indices(values, max_points)) == list(keep)  # deterministic

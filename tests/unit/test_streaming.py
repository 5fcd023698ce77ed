"""Data bigger than the device budget (worker/engine/data.py): the parts stay in host memory (an
np.memmap read in place) and are streamed batch by batch in the same seeded order, so a streamed
run's losses equal the on-device run's bit for bit on CPU; the budget comes from
GLIDEPATH_DEVICE_DATA_MB or a quarter of the device's memory."""

from __future__ import annotations

import os
import threading
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import torch

from service.config import Settings, settings
from service.datasets import builtin
from service.training.datasets import Arrays, DatasetInfo
from service.training.range_spec import RangeParams
from service.training.spec import ExperimentSpec
from tests.support.sinks import ListSink
from worker.engine import program, range_test
from worker.engine.data import DeviceData, DevicePart, HostPart, to_device
from worker.runs import budget

CPU = torch.device("cpu")


def spec_for(**overrides: Any) -> ExperimentSpec:
    raw: dict[str, Any] = {
        "dataset": "digits", "model": {"type": "mlp", "hidden": [32], "dropout": 0.1},
        "solver": {"type": "SGD", "params": {"momentum": 0.9}}, "base_lr": 0.05,
        "scheduler": {"type": "OneCycleLR", "params": {"max_lr": 0.1}},
        "split": {"train": 0.7, "val": 0.2, "test": 0.1, "seed": 1},
        "batch_size": 50, "epochs": 4, "seed": 3, "device": "cpu",
    }  # fmt: skip
    return ExperimentSpec.model_validate({**raw, **overrides})


def train(spec: ExperimentSpec, data: DeviceData) -> tuple[list[Any], program.Result]:
    sink = ListSink(spec)
    state = program.build(spec, data, CPU)
    result = program.train(spec, data, state, sink)
    return sink.rows, result


def memmap_digits(tmp_path: Path) -> tuple[Arrays, DatasetInfo]:
    """digits as a plugin dataset may hand it over: x an np.memmap (N, 1, 8, 8) of float32."""
    arrays = builtin.load("digits")
    x = np.memmap(tmp_path / "x.f32", dtype=np.float32, mode="w+", shape=(len(arrays.x), 1, 8, 8))
    x[:] = arrays.x.reshape(x.shape)
    x.flush()
    x = np.memmap(tmp_path / "x.f32", dtype=np.float32, mode="r", shape=x.shape)
    return Arrays(x=x, y=arrays.y), builtin.info("digits")


def test_streamed_run_equals_the_on_device_run_bit_for_bit() -> None:
    spec = spec_for()
    arrays, info = builtin.load("digits"), builtin.info("digits")
    on_device = to_device(spec, arrays, info, CPU, budget_bytes=2**40)
    streamed = to_device(spec, arrays, info, CPU, budget_bytes=1)
    assert not on_device.streamed and isinstance(on_device.train, DevicePart)
    assert streamed.streamed and isinstance(streamed.train, HostPart)
    assert isinstance(streamed.val, HostPart) and isinstance(streamed.test, HostPart)

    rows_device, result_device = train(spec, on_device)
    rows_streamed, result_streamed = train(spec, streamed)
    assert len(rows_device) == spec.epochs
    assert rows_streamed == rows_device  # lr, train_loss, val_loss, val_accuracy: all equal
    assert result_streamed == result_device  # the test part's metrics too
    assert result_device.test_metrics is not None


def test_regression_streams_too() -> None:
    spec = spec_for(dataset="diabetes", model={"type": "mlp", "hidden": [16]}, base_lr=0.01,
                    solver={"type": "Adam", "params": {}}, scheduler=None,
                    split={"train": 0.8, "val": 0.2, "seed": 0, "stratify": False})  # fmt: skip
    arrays, info = builtin.load("diabetes"), builtin.info("diabetes")
    rows_device, _ = train(spec, to_device(spec, arrays, info, CPU))
    rows_streamed, _ = train(spec, to_device(spec, arrays, info, CPU, budget_bytes=1))
    assert rows_streamed == rows_device
    assert "val_mae" in rows_device[0][2]
    assert all(np.isfinite(v) for _, _, m in rows_device for v in m.values() if v is not None)


def test_a_memmap_is_read_in_place_and_gives_the_same_run(tmp_path: Path) -> None:
    arrays, info = memmap_digits(tmp_path)
    spec = spec_for(model={"type": "cnn"}, epochs=2)
    streamed = to_device(spec, arrays, info, CPU, budget_bytes=1)
    assert isinstance(streamed.train, HostPart)
    assert streamed.train.x is arrays.x  # the memmap itself: never copied whole
    rows_streamed, _ = train(spec, streamed)
    rows_device, _ = train(spec, to_device(spec, builtin.load("digits"), info, CPU))
    assert rows_streamed == rows_device


def test_a_host_batch_keeps_the_batch_order(tmp_path: Path) -> None:
    arrays, info = memmap_digits(tmp_path)
    spec = spec_for()
    host = to_device(spec, arrays, info, CPU, budget_bytes=1).train
    device = to_device(spec, arrays, info, CPU).train
    assert isinstance(device, DevicePart)
    idx = torch.tensor([5, 0, 17, 3, 3, len(device) - 1])
    xh, yh = host.batch(idx)
    assert xh.shape == (6, 64) and xh.dtype == torch.float32 and yh.dtype == torch.int64
    assert torch.equal(xh, device.x[idx]) and torch.equal(yh, device.y[idx])
    xr, yr = host.rows(10, 20)
    assert torch.equal(xr, device.x[10:20]) and torch.equal(yr, device.y[10:20])
    order = torch.randperm(len(device))
    for (a, b), (c, d) in zip(host.batches(order, 64), device.batches(order, 64), strict=True):
        assert torch.equal(a, c) and torch.equal(b, d)
    chunks = list(host.chunks(100))
    assert sum(len(x) for x, _ in chunks) == len(device)


def test_the_budget_is_on_the_split_parts_x_and_y_bytes() -> None:
    spec = spec_for()
    arrays, info = builtin.load("digits"), builtin.info("digits")
    n = len(arrays.x)  # train + val + test cover every row
    needed = n * (64 * 4 + 8)
    assert not to_device(spec, arrays, info, CPU, budget_bytes=needed).streamed
    assert to_device(spec, arrays, info, CPU, budget_bytes=needed - 1).streamed
    assert not to_device(spec, arrays, info, CPU, budget_bytes=None).streamed


def test_the_range_test_streams_the_same_trace() -> None:
    spec = spec_for(scheduler=None)
    p = RangeParams.model_validate({"min_lr": 1e-4, "max_lr": 1.0, "steps": 60})
    arrays, info = builtin.load("digits"), builtin.info("digits")

    def trace(budget_bytes: int | None) -> list[dict[str, Any]]:
        points: list[dict[str, Any]] = []

        def write(rows: list[dict[str, Any]]) -> bool:
            points.extend(rows)
            return True

        data = to_device(spec, arrays, info, CPU, budget_bytes)
        out = range_test.run(1, spec, p, data, CPU, threading.Event(), write)
        assert out.result is not None
        return points

    on_device = trace(None)
    assert len(on_device) > 30
    assert trace(1) == on_device


def test_the_budget_setting_in_mb_or_a_quarter_of_the_device(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setattr(settings, "device_data_mb", 8)
    assert budget.data_budget(CPU) == 8 * 2**20
    monkeypatch.setattr(settings, "device_data_mb", None)
    ram = os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES")
    assert budget.data_budget(CPU) == ram // 4
    monkeypatch.setenv("GLIDEPATH_DEVICE_DATA_MB", "64")
    assert Settings().device_data_mb == 64
    monkeypatch.delenv("GLIDEPATH_DEVICE_DATA_MB")
    assert Settings().device_data_mb is None

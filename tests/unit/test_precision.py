"""Mixed precision (the spec's `precision`, worker/engine/loop.py): bf16 and fp16 autocast on the
forward pass and the loss; fp16's GradScaler skips steps whose gradients overflowed, counts them
in the epoch row's `skipped_steps`, and a skipped step does not advance a per-step scheduler
(pytorch#44511); the scaler's state is in the checkpoint, so a resume is bit-identical."""

from __future__ import annotations

import math
from typing import Any

import pytest
import torch
from fastapi.testclient import TestClient

from service.datasets import builtin
from service.training.spec import ExperimentSpec
from tests.support.sinks import ListSink, Row
from tests.unit.test_spec import errors_for, example, only_error
from worker.engine import program
from worker.engine.data import DeviceData, to_device
from worker.engine.loop import scaled_step

CPU = torch.device("cpu")


def spec_for(precision: str, **overrides: Any) -> ExperimentSpec:
    raw: dict[str, Any] = {
        "dataset": "digits", "model": {"type": "mlp", "hidden": [64], "dropout": 0.1},
        "solver": {"type": "SGD", "params": {"momentum": 0.9}}, "base_lr": 0.05,
        "scheduler": {"type": "OneCycleLR", "params": {"max_lr": 0.1}},
        "split": {"train": 0.8, "val": 0.2, "seed": 0},
        "batch_size": 64, "epochs": 5, "seed": 2, "device": "cpu", "precision": precision,
    }  # fmt: skip
    return ExperimentSpec.model_validate({**raw, **overrides})


def digits(spec: ExperimentSpec) -> DeviceData:
    return to_device(spec, builtin.load("digits"), builtin.info("digits"), CPU)


def train(spec: ExperimentSpec, scale: float | None = None) -> tuple[list[Row], program.RunState]:
    data = digits(spec)
    state = program.build(spec, data, CPU)
    if scale is not None:
        state.scaler = torch.amp.GradScaler("cpu", init_scale=scale)
    sink = ListSink(spec)
    program.train(spec, data, state, sink)
    return sink.rows, state


def losses(rows: list[Row], key: str) -> list[float]:
    return [float(m[key]) for _, _, m in rows]  # type: ignore[arg-type]


def test_bf16_trains_its_own_way_finite_and_down() -> None:
    fp32, _ = train(spec_for("fp32"))
    bf16, _ = train(spec_for("bf16"))
    for rows in (fp32, bf16):
        train_loss = losses(rows, "train_loss")
        assert all(math.isfinite(v) for v in train_loss + losses(rows, "val_loss"))
        assert train_loss[-1] < train_loss[0] / 2
        assert all("skipped_steps" not in m for _, _, m in rows)  # fp16 only
    assert losses(bf16, "train_loss") != losses(fp32, "train_loss")  # bf16 really ran
    assert [lr for _, lr, _ in bf16] == [lr for _, lr, _ in fp32]
    diff = max(abs(a - b) for a, b in zip(losses(bf16, "val_loss"), losses(fp32, "val_loss"),
                                          strict=True))  # fmt: skip
    assert diff < 0.1


def test_fp16_counts_skipped_steps_and_does_not_advance_the_schedule_on_them() -> None:
    """A huge initial loss scale overflows the fp16 gradients: the scaler skips those steps
    (halving the scale each time) until it fits; OneCycleLR steps only on the steps taken."""
    spec = spec_for("fp16", epochs=2)
    rows, state = train(spec, scale=2.0**40)
    skipped = [m["skipped_steps"] for _, _, m in rows]
    assert isinstance(skipped[0], int) and skipped[0] > 0
    assert skipped[1] == 0
    assert state.scaler is not None and state.scaler.get_scale() < 2.0**40
    steps = state.steps_per_epoch
    scheduler = state.schedule.scheduler
    assert scheduler is not None
    assert scheduler.last_epoch == 2 * steps - skipped[0]  # one scheduler step per step taken
    # Epoch 2's recorded LR is OneCycleLR's after the steps taken in epoch 1, not after all.
    reference = torch.optim.SGD([torch.zeros(1, requires_grad=True)], lr=spec.base_lr)
    ref = torch.optim.lr_scheduler.OneCycleLR(reference, max_lr=0.1, total_steps=2 * steps)
    for _ in range(steps - skipped[0]):
        reference.step()
        ref.step()
    assert rows[1][1] == reference.param_groups[0]["lr"]
    assert all(math.isfinite(v) for v in losses(rows, "val_loss"))


def test_fp16_without_overflow_skips_nothing_and_trains() -> None:
    rows, _ = train(spec_for("fp16", epochs=3))
    assert [m["skipped_steps"] for _, _, m in rows] == [0, 0, 0]
    train_loss = losses(rows, "train_loss")
    assert train_loss[-1] < train_loss[0]


def test_a_skipped_step_leaves_the_weights_alone() -> None:
    p = torch.nn.Parameter(torch.ones(3))
    opt = torch.optim.SGD([p], lr=0.1)
    scaler = torch.amp.GradScaler("cpu")
    assert not scaled_step((p * float("inf")).sum(), opt, scaler)
    assert torch.equal(p.detach(), torch.ones(3))
    opt.zero_grad()
    assert scaled_step((p * 2.0).sum(), opt, scaler)
    assert torch.allclose(p.detach(), torch.full((3,), 0.8))
    opt.zero_grad()
    assert scaled_step((p * 2.0).sum(), opt, None)  # fp32/bf16: no scaler, always a step


@pytest.mark.parametrize("precision", ["bf16", "fp16"])
def test_resume_from_a_checkpoint_equals_the_uninterrupted_run(precision: str) -> None:
    spec = spec_for(precision)
    scale = 2.0**30 if precision == "fp16" else None  # fp16: the scale moves in epoch 1
    straight, final = train(spec, scale)

    data = digits(spec)
    state = program.build(spec, data, CPU)
    if scale is not None:
        state.scaler = torch.amp.GradScaler("cpu", init_scale=scale)
    head = ListSink(spec, save_at=2)
    program.train(spec, data, state, head)
    assert head.rows == straight

    ckpt = head.saved_checkpoint()
    assert ckpt["epoch"] == 2
    assert (ckpt["grad_scaler"] is not None) == (precision == "fp16")
    resumed = program.build(spec, data, CPU)  # a fresh worker: default scaler, epoch 0
    resumed.load_state_dict(ckpt)
    tail = ListSink(spec, state=head.saved_state)
    program.train(spec, data, resumed, tail)
    assert head.rows[:2] + tail.rows == straight
    pairs = zip(resumed.model.parameters(), final.model.parameters(), strict=True)
    assert all(torch.equal(a, b) for a, b in pairs)
    if precision == "fp16":
        assert resumed.scaler is not None and final.scaler is not None
        assert resumed.scaler.get_scale() == final.scaler.get_scale()


def test_hypergradient_with_fp16_is_a_422_on_precision() -> None:
    hd = {"type": "SGD", "params": {}, "hypergradient": {"hyper_lr": 1e-3}}
    base = {"scheduler": None, "warmup": None, "solver": hd}
    err = only_error(example(**base, precision="fp16"))
    assert err["loc"] == ["precision"]
    assert "fp16" in err["msg"]
    assert errors_for(example(**base, precision="bf16")) == []
    with pytest.raises(ValueError, match="fp16"):
        spec = ExperimentSpec.model_validate(example(**base, precision="fp16", device="cpu"))
        program.build(spec, digits(spec), CPU)


def test_hypergradient_still_works_in_bf16() -> None:
    spec = spec_for("bf16", scheduler=None, epochs=3,
                    solver={"type": "SGD", "params": {"momentum": 0.9},
                            "hypergradient": {"hyper_lr": 1e-3}})  # fmt: skip
    rows, _ = train(spec)
    lrs = [lr for _, lr, _ in rows]
    assert lrs[0] == spec.base_lr and len(set(lrs)) == 3  # the LR adapts
    assert all(math.isfinite(v) for v in losses(rows, "train_loss"))


def test_skipped_steps_reach_the_epoch_rows(client: TestClient) -> None:
    """Through the worker and the database: an fp16 run's rows carry `skipped_steps`, a bf16
    run's do not."""
    from worker.runs.lifecycle import run_experiment

    def run(precision: str) -> list[dict[str, Any]]:
        spec = {"dataset": "iris", "model": {"type": "mlp", "hidden": [8]},
                "solver": {"type": "SGD", "params": {}}, "base_lr": 0.05, "epochs": 3,
                "batch_size": 16, "seed": 0, "device": "cpu", "precision": precision}  # fmt: skip
        created = client.post("/v1/experiments", json=spec)
        assert created.status_code == 201, created.text
        exp_id = int(created.json()["id"])
        outcome = run_experiment(exp_id)
        assert outcome.status == "succeeded", outcome
        body = client.get(f"/v1/experiments/{exp_id}/metrics").json()
        epochs: list[dict[str, Any]] = body["epochs"]
        return epochs

    fp16 = run("fp16")
    assert [r["skipped_steps"] for r in fp16] == [0, 0, 0]
    assert all("skipped_steps" not in r or r["skipped_steps"] is None for r in run("bf16"))

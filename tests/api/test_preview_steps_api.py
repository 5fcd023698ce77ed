"""`POST /v1/schedules/preview` with `resolution: "step"`: the LR at every optimizer step, so
a per-step schedule (OneCycleLR, a per-step warmup) is drawn as it runs, not as an epoch
staircase. The references are plain-torch loops (tests/support/torch_reference.py)."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import pytest
from fastapi.testclient import TestClient

from tests.support.backends import Backends, in_process
from tests.support.torch_reference import plain_torch_step_lrs

pytestmark = [
    pytest.mark.filterwarnings("ignore:Detected call of `lr_scheduler.step\\(\\)`:UserWarning"),
]

URL = "/v1/schedules/preview"


@pytest.fixture(scope="module")
def api(backends: Backends, tmp_path_factory: pytest.TempPathFactory) -> Iterator[TestClient]:
    """The API in-process without its lifespan: the preview reads no run."""
    from service.app import create_app

    with backends.backend("embedded", tmp_path_factory.mktemp("steps")) as made, in_process(made):
        yield TestClient(create_app())


def ok(api: TestClient, body: dict[str, Any]) -> dict[str, Any]:
    r = api.post(URL, json=body)
    assert r.status_code == 200, r.text
    out: dict[str, Any] = r.json()
    return out


def test_onecycle_per_step_equals_plain_torch_and_shows_its_peak(api: TestClient) -> None:
    params = {"max_lr": 0.5}
    out = ok(api, {"base_lr": 0.05, "epochs": 4, "steps_per_epoch": 25,
                   "scheduler": {"type": "OneCycleLR", "params": params},
                   "resolution": "step"})  # fmt: skip
    expected = plain_torch_step_lrs(base_lr=0.05, kind="OneCycleLR", params=params,
                                    interval=None, warmup=0, start_factor=1.0, epochs=4,
                                    steps=25)  # fmt: skip
    assert out["total_steps"] == 100
    assert [p["step"] for p in out["steps"]] == list(range(100))
    assert [p["epoch"] for p in out["steps"]] == [s // 25 + 1 for s in range(100)]
    assert [p["lr"] for p in out["steps"]] == pytest.approx(expected, rel=1e-12)
    # The peak falls inside epoch 2 (pct_start 0.3 of 100 steps): no epoch's first LR shows it.
    peak = max(out["steps"], key=lambda p: p["lr"])
    assert peak["lr"] == pytest.approx(0.5)
    assert peak["step"] % 25 != 0
    assert max(out["lr"]) < peak["lr"] - 0.01
    # The per-epoch list is unchanged: each epoch's first step.
    assert out["lr"] == pytest.approx([expected[e * 25] for e in range(4)], rel=1e-12)


def test_per_step_warmup_before_an_epoch_schedule(api: TestClient) -> None:
    out = ok(api, {"base_lr": 0.1, "epochs": 3, "steps_per_epoch": 4,
                   "scheduler": {"type": "CosineAnnealingLR", "params": {"T_max": 6},
                                 "interval": "step"},
                   "warmup": {"epochs": 1, "start_factor": 0.25},
                   "resolution": "step"})  # fmt: skip
    expected = plain_torch_step_lrs(base_lr=0.1, kind="CosineAnnealingLR", params={"T_max": 6},
                                    interval="step", warmup=1, start_factor=0.25, epochs=3,
                                    steps=4)  # fmt: skip
    assert [p["lr"] for p in out["steps"]] == pytest.approx(expected, rel=1e-12)
    assert out["steps"][1]["lr"] > out["steps"][0]["lr"]  # the ramp climbs within epoch 1


def test_downsampling_keeps_the_ends_and_the_peak(api: TestClient) -> None:
    out = ok(api, {"base_lr": 0.01, "epochs": 20, "steps_per_epoch": 500,
                   "scheduler": {"type": "OneCycleLR", "params": {"max_lr": 1.0}},
                   "resolution": "step", "max_points": 50})  # fmt: skip
    steps = out["steps"]
    assert out["total_steps"] == 10_000
    assert len(steps) <= 50
    assert steps[0]["step"] == 0 and steps[-1]["step"] == 9_999
    assert max(p["lr"] for p in steps) == pytest.approx(1.0)
    assert [p["step"] for p in steps] == sorted({p["step"] for p in steps})


def test_plateau_reductions_apply_after_their_epoch(api: TestClient) -> None:
    out = ok(api, {"base_lr": 0.1, "epochs": 3, "steps_per_epoch": 2,
                   "scheduler": {"type": "ReduceLROnPlateau", "params": {"patience": 0}},
                   "monitor_values": [1.0, 2.0, 3.0], "resolution": "step"})  # fmt: skip
    # Epoch 2 is worse than epoch 1 (patience 0): the LR is cut after it, as the run records.
    assert out["lr"] == pytest.approx([0.1, 0.1, 0.01])
    assert [p["lr"] for p in out["steps"]] == pytest.approx([0.1, 0.1, 0.1, 0.1, 0.01, 0.01])


def test_epoch_resolution_has_no_steps(api: TestClient) -> None:
    out = ok(api, {"base_lr": 0.1, "epochs": 3})
    assert out["steps"] is None and out["total_steps"] is None


@pytest.mark.parametrize(
    ("extra", "loc"),
    [
        ({"resolution": "batch"}, ["body", "resolution"]),
        ({"resolution": "step", "max_points": 1}, ["body", "max_points"]),
        ({"resolution": "step", "max_points": 100_001}, ["body", "max_points"]),
        ({"resolution": "step", "max_points": 2**63}, ["body", "max_points"]),
    ],
)
def test_bad_resolution_or_max_points_is_a_422_at_the_field(
    api: TestClient, extra: dict[str, Any], loc: list[str]
) -> None:
    r = api.post(URL, json={"base_lr": 0.1, "epochs": 3, **extra})
    assert r.status_code == 422, r.text
    assert [e["loc"] for e in r.json()["detail"]] == [loc]

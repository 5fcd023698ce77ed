"""SequentialLR and ChainedScheduler specs (CONTRACT.md "Schedules: composition"): the per-epoch
LR equals plain torch written from the contract (tests/support/torch_reference.py), for random
compositions with and without warmup, per epoch and per step, and plateau-last SequentialLRs
over random metric sequences."""

from __future__ import annotations

import random
from typing import Any

import pytest

from service.training.schedule import build_schedule, dummy_optimizer, walk
from service.training.spec import ExperimentSpec
from tests.support.torch_reference import SCHEDULER_CASES, composed_torch_lrs, for_interval

pytestmark = [
    pytest.mark.filterwarnings("ignore:Detected call of `lr_scheduler.step\\(\\)`:UserWarning"),
    pytest.mark.filterwarnings("ignore:The epoch parameter:UserWarning"),
]

STEPS = 3
ELEMENTS = [(t, p) for _, t, p in SCHEDULER_CASES]


def lrs(spec: dict[str, Any], values: list[float] | None = None) -> list[float]:
    return [e.lr for e in walk(ExperimentSpec.model_validate(spec), STEPS, values)]


def random_spec(rng: random.Random, kind: str, plateau: bool = False) -> dict[str, Any]:
    interval = "epoch" if plateau else rng.choice(["epoch", "step"])
    k = STEPS if interval == "step" else 1
    n = rng.randint(2, 3)
    picks = [rng.choice(ELEMENTS) for _ in range(n - plateau)]
    # OneCycleLR's phases need room: at least 5 scheduler steps per element.
    gaps = sorted(rng.sample(range(5 * k, 9 * k), n - 1))
    milestones = [sum(gaps[: i + 1]) for i in range(n - 1)]
    elements: list[dict[str, Any]] = [
        {"type": t, "params": for_interval(t, p, interval)} for t, p in picks
    ]
    if plateau:
        params = {"patience": rng.randint(0, 2), "factor": rng.choice([0.5, 0.1]),
                  "cooldown": rng.randint(0, 1)}  # fmt: skip
        elements.append({"type": "ReduceLROnPlateau", "params": params})
    scheduler: dict[str, Any] = {"type": kind, "schedulers": elements, "interval": interval}
    if kind == "SequentialLR":
        scheduler["params"] = {"milestones": milestones}
    warmup = rng.choice([0, 0, 2])
    epochs = (milestones[-1] // k if kind == "SequentialLR" else 10) + warmup + rng.randint(6, 9)
    spec: dict[str, Any] = {"base_lr": rng.choice([0.1, 0.03]), "epochs": epochs,
                            "scheduler": scheduler,
                            "solver": {"type": "SGD", "params": {"momentum": 0.9}}}  # fmt: skip
    if warmup:
        spec["warmup"] = {"epochs": warmup, "start_factor": rng.choice([0.1, 0.25])}
    return spec


@pytest.mark.parametrize("kind", ["SequentialLR", "ChainedScheduler"])
def test_random_compositions_equal_plain_torch(kind: str) -> None:
    rng = random.Random(f"compose-{kind}")
    for _ in range(25):
        spec = random_spec(rng, kind)
        got, expected = lrs(spec), composed_torch_lrs(spec, STEPS)
        assert got == pytest.approx(expected, rel=1e-12, abs=0), spec
        assert len(got) == spec["epochs"]


def test_plateau_last_equals_torch_over_random_metrics() -> None:
    rng = random.Random("plateau-last")
    reductions = 0
    for _ in range(25):
        spec = random_spec(rng, "SequentialLR", plateau=True)
        values = [rng.choice([1.0, 0.9, 0.8]) * (1 + 0.1 * rng.random())
                  for _ in range(spec["epochs"])]  # fmt: skip
        got = lrs(spec, values)
        assert got == pytest.approx(composed_torch_lrs(spec, STEPS, values), rel=1e-12, abs=0)
        milestone = spec["scheduler"]["params"]["milestones"][-1]
        start = milestone + spec.get("warmup", {}).get("epochs", 0)
        assert got[start] == spec["base_lr"]  # from its milestone on, it starts at base_lr
        reductions += len(set(got[start:])) > 1
    assert reductions > 8  # the plateau did reduce in most of them


def test_warmup_stable_decay() -> None:
    """Warmup-stable-decay as a SequentialLR: ramp, flat at base_lr, linear decay."""
    spec = {"base_lr": 0.1, "epochs": 20, "scheduler": {
        "type": "SequentialLR", "params": {"milestones": [2, 15]}, "schedulers": [
            {"type": "LinearLR", "params": {"start_factor": 0.1, "total_iters": 2}},
            {"type": "ConstantLR", "params": {"factor": 1.0, "total_iters": 0}},
            {"type": "LinearLR", "params": {"start_factor": 1.0, "end_factor": 0.0,
                                            "total_iters": 5}}]}}  # fmt: skip
    got = lrs(spec)
    assert got == pytest.approx(composed_torch_lrs(spec, STEPS), rel=1e-12, abs=0)
    assert got[:2] == pytest.approx([0.01, 0.055]) and set(got[2:15]) == {0.1}
    assert got[15:] == pytest.approx([0.1, 0.08, 0.06, 0.04, 0.02])


def test_chained_after_warmup_starts_from_base_lr_and_resumes() -> None:
    """A ChainedScheduler after a warmup is built at its end (torch cannot nest it); a schedule
    restored from a checkpoint taken on either side of that point continues identically."""
    spec = ExperimentSpec.model_validate({"base_lr": 0.1, "epochs": 10, "warmup": {"epochs": 3},
        "scheduler": {"type": "ChainedScheduler", "schedulers": [
            {"type": "ConstantLR", "params": {"factor": 0.5, "total_iters": 2}},
            {"type": "ExponentialLR", "params": {"gamma": 0.9}}]}})  # fmt: skip
    full = [e.lr for e in walk(spec, STEPS)]
    assert full[3:6] == pytest.approx([0.05, 0.045, 0.081])
    for cut in (2, 3, 5):
        opt = dummy_optimizer(spec)
        sched = build_schedule(spec, opt, STEPS)
        for epoch in range(1, cut + 1):
            opt.step()
            sched.after_epoch(epoch)
        saved = (opt.state_dict(), sched.state_dict())
        opt2 = dummy_optimizer(spec)
        sched2 = build_schedule(spec, opt2, STEPS)
        opt2.load_state_dict(saved[0])
        sched2.load_state_dict(saved[1])
        rest = []
        for epoch in range(cut + 1, 11):
            rest.append(float(opt2.param_groups[0]["lr"]))
            opt2.step()
            sched2.after_epoch(epoch)
        assert rest == pytest.approx(full[cut:], rel=1e-12, abs=0), cut


def composed(kind: str, elements: list[dict[str, Any]], **extra: Any) -> dict[str, Any]:
    scheduler: dict[str, Any] = {"type": kind, "schedulers": elements, **extra}
    return {"base_lr": 0.1, "epochs": 20, "scheduler": scheduler}


def errors_of(raw: dict[str, Any]) -> list[tuple[list[str | int], str]]:
    from service.training.checks import check_schedule

    return [(e["loc"], e["msg"]) for e in check_schedule(ExperimentSpec.model_validate(raw), 3)]


STEP = {"type": "StepLR", "params": {"step_size": 2}}
EXP = {"type": "ExponentialLR", "params": {"gamma": 0.9}}
PLATEAU = {"type": "ReduceLROnPlateau", "params": {"patience": 2}}


@pytest.mark.parametrize(
    ("raw", "loc", "words"),
    [
        (
            composed(
                "SequentialLR",
                [STEP, {"type": "StepLR", "params": {"step_size": 2, "gamma": -1}}],
                params={"milestones": [5]},
            ),
            ["scheduler", "schedulers", 1, "params", "gamma"],
            "must be > 0",
        ),
        (
            composed("SequentialLR", [STEP, {"type": "ExponentialLR"}], params={"milestones": [5]}),
            ["scheduler", "schedulers", 1, "params", "gamma"],
            "requires 'gamma'",
        ),
        (
            composed("SequentialLR", [STEP, EXP], params={"milestones": [5, 9]}),
            ["scheduler", "params", "milestones"],
            "2 schedulers need 1 milestones",
        ),
        (
            composed("SequentialLR", [STEP, EXP, STEP], params={"milestones": [9, 5]}),
            ["scheduler", "params", "milestones"],
            "strictly increasing",
        ),
        (
            composed("SequentialLR", [STEP, EXP], params={"milestones": [20]}),
            ["scheduler", "params", "milestones"],
            "not inside the run",
        ),
        (
            composed("SequentialLR", [STEP, EXP], params={"milestones": [0]}),
            ["scheduler", "params", "milestones"],
            "≥ 1",
        ),
        (
            composed("SequentialLR", [PLATEAU, EXP], params={"milestones": [5]}),
            ["scheduler", "schedulers", 0, "type"],
            "only be the last",
        ),
        (
            composed("ChainedScheduler", [EXP, PLATEAU]),
            ["scheduler", "schedulers", 1, "type"],
            "only be the last",
        ),
        (
            composed("SequentialLR", [STEP, PLATEAU], params={"milestones": [5]}, interval="step"),
            ["scheduler", "schedulers", 1, "interval"],
            "must be 'epoch'",
        ),
        (
            composed("ChainedScheduler", [EXP, composed("ChainedScheduler", [EXP])["scheduler"]]),
            ["scheduler", "schedulers", 1, "type"],
            "cannot nest",
        ),
        (
            composed("ChainedScheduler", [EXP, {"type": "none"}]),
            ["scheduler", "schedulers", 1, "type"],
            "ConstantLR",
        ),
        (
            composed("ChainedScheduler", [{**EXP, "interval": "step"}]),
            ["scheduler", "schedulers", 0, "interval"],
            "take their interval",
        ),
        (
            composed("ChainedScheduler", [{"type": "LambdaLR", "params": {"lr_lambda": "open"}}]),
            ["scheduler", "schedulers", 0, "params", "lr_lambda"],
            "lr_lambda",
        ),
        (
            composed(
                "ChainedScheduler",
                [{"type": "StepLR", "params": {"step_size": 2, "total_steps": 9}}],
            ),
            ["scheduler", "schedulers", 0, "params", "total_steps"],
            "not settable",
        ),
        (
            {"scheduler": {"type": "StepLR", "params": {"step_size": 2}, "schedulers": [EXP]}},
            ["scheduler", "schedulers"],
            "composes no schedulers",
        ),
        (
            {"scheduler": {"type": "SequentialLR", "params": {"milestones": []}}},
            ["scheduler", "schedulers"],
            "needs `schedulers`",
        ),
    ],
)
def test_a_bad_composition_is_one_error_at_its_path(
    raw: dict[str, Any], loc: list[str | int], words: str
) -> None:
    [(got_loc, msg)] = errors_of(raw)
    assert got_loc == loc and words in msg, msg


def test_a_lambda_element_is_checked_over_its_own_span() -> None:
    """Its counter restarts at its milestone: a factor that turns negative only past the span it
    runs for is fine; one inside it is a 422 naming the element's epoch."""
    lam = {"type": "LambdaLR", "params": {"lr_lambda": "1 - epoch / 12"}}
    assert errors_of(composed("SequentialLR", [STEP, lam], params={"milestones": [10]})) == []
    [(loc, msg)] = errors_of(composed("SequentialLR", [STEP, lam], params={"milestones": [5]}))
    assert loc == ["scheduler", "schedulers", 1, "params", "lr_lambda"] and "epoch 13" in msg

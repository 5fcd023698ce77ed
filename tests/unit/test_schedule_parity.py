"""`iter_epoch_lrs` equals an independent plain-torch loop for every scheduler (CONTRACT.md:
"The recorded per-epoch `lr` ... must equal what plain torch produces for the same config")."""

from __future__ import annotations

from typing import Any

import pytest

from service.training import catalog
from service.training.schedule import iter_epoch_lrs
from service.training.spec import ExperimentSpec
from tests.support.torch_reference import SCHEDULER_CASES as CASES
from tests.support.torch_reference import for_interval, plain_torch_lrs

pytestmark = [
    pytest.mark.filterwarnings("ignore:Detected call of `lr_scheduler.step\\(\\)`:UserWarning"),
    pytest.mark.filterwarnings("ignore:The epoch parameter:UserWarning"),
]

BASE_LR = 0.1
EPOCHS = 12
STEPS_PER_EPOCH = 4
START_FACTOR = 0.1
MOMENTUM = 0.9


def make_spec(
    type_: str | None,
    params: dict[str, Any],
    warmup: int,
    interval: str | None,
    epochs: int = EPOCHS,
) -> ExperimentSpec:
    data: dict[str, Any] = {
        "dataset": "digits",
        "base_lr": BASE_LR,
        "epochs": epochs,
        "solver": {"type": "SGD", "params": {"momentum": MOMENTUM}},
    }
    if type_ is not None:
        params = for_interval(type_, params, contract_interval(type_, interval))
        data["scheduler"] = {"type": type_, "params": params, "interval": interval}
    if warmup:
        data["warmup"] = {"epochs": warmup, "start_factor": START_FACTOR}
    return ExperimentSpec.model_validate(data)


def contract_interval(type_: str, interval: str | None) -> str:
    """CONTRACT.md: `step` by default for CyclicLR and OneCycleLR, `epoch` for the rest."""
    if interval is not None:
        return interval
    return "step" if type_ in ("CyclicLR", "OneCycleLR") else "epoch"


def reference_lrs(
    type_: str | None, params: dict[str, Any], warmup: int, interval: str
) -> list[float]:
    """Plain torch, as a user would write it from CONTRACT.md's description."""
    return plain_torch_lrs(
        base_lr=BASE_LR, kind=type_, params=params, interval=interval, warmup=warmup,
        start_factor=START_FACTOR, epochs=EPOCHS, steps=STEPS_PER_EPOCH,
        solver_params={"momentum": MOMENTUM},
    )  # fmt: skip


def test_cases_cover_every_scheduler_but_plateau() -> None:
    covered = {type_ for _, type_, _ in CASES}
    assert covered == set(catalog.SCHEDULERS) - {"ReduceLROnPlateau", *catalog.COMPOSITES}


@pytest.mark.parametrize("interval", [None, "epoch", "step"], ids=["default", "epoch", "step"])
@pytest.mark.parametrize("warmup", [0, 3], ids=["nowarmup", "warmup3"])
@pytest.mark.parametrize(("type_", "params"), [c[1:] for c in CASES], ids=[c[0] for c in CASES])
def test_epoch_lrs_equal_plain_torch(
    type_: str, params: dict[str, Any], warmup: int, interval: str | None
) -> None:
    spec = make_spec(type_, params, warmup, interval)
    got = list(iter_epoch_lrs(spec, STEPS_PER_EPOCH))
    effective = contract_interval(type_, interval)
    expected = reference_lrs(type_, for_interval(type_, params, effective), warmup, effective)
    assert len(got) == EPOCHS
    assert got == pytest.approx(expected, rel=1e-12, abs=0)
    assert len(set(expected)) > 1  # the schedule does something over these epochs


# Not MultiplicativeLR: torch's multiplies whatever LR it finds (the end of the warmup's ramp
# included), so it is no shift; its parity with torch is checked above.
SHIFTED = [c for c in CASES if c[1] != "MultiplicativeLR"]


@pytest.mark.parametrize("interval", [None, "epoch", "step"], ids=["default", "epoch", "step"])
@pytest.mark.parametrize(("type_", "params"), [c[1:] for c in SHIFTED], ids=[c[0] for c in SHIFTED])
def test_warmup_ramps_to_main_start_then_main_runs_shifted(
    type_: str, params: dict[str, Any], interval: str | None
) -> None:
    """With warmup W, epochs W+1.. are the main schedule of an (epochs - W)-epoch run without
    warmup, and epochs 1..W are a linear ramp from start_factor x to 1 x the spec's base_lr (built
    first, the warmup sees it; OneCycleLR, which sets the LR when built, ramps to
    max_lr / div_factor)."""
    warm = 3
    with_warmup = list(iter_epoch_lrs(make_spec(type_, params, warm, interval), STEPS_PER_EPOCH))
    alone = list(
        iter_epoch_lrs(make_spec(type_, params, 0, interval, EPOCHS - warm), STEPS_PER_EPOCH)
    )
    assert with_warmup[warm:] == pytest.approx(alone, rel=1e-12, abs=0)
    target = with_warmup[0] / START_FACTOR
    main_base = {
        "OneCycleLR": params.get("max_lr", 0.0) / params.get("div_factor", 25.0),
    }.get(type_, BASE_LR)
    assert target == pytest.approx(main_base, rel=1e-12, abs=0)
    ramp = [target * (START_FACTOR + (1 - START_FACTOR) * e / warm) for e in range(warm)]
    assert with_warmup[:warm] == pytest.approx(ramp, rel=1e-12, abs=0)


@pytest.mark.parametrize("type_", [None, catalog.CONSTANT], ids=["no-scheduler", "none"])
@pytest.mark.parametrize("warmup", [1, 3, 11])
def test_constant_with_warmup_is_linearlr_alone(type_: str | None, warmup: int) -> None:
    spec = make_spec(type_, {}, warmup, None)
    got = list(iter_epoch_lrs(spec, STEPS_PER_EPOCH))
    assert got == pytest.approx(reference_lrs(None, {}, warmup, "epoch"), rel=1e-12, abs=0)
    # ... which ramps from start_factor × base_lr to base_lr over W epochs, then stays there.
    ramp = [BASE_LR * (START_FACTOR + (1 - START_FACTOR) * e / warmup) for e in range(warmup)]
    assert got == pytest.approx(ramp + [BASE_LR] * (EPOCHS - warmup), rel=1e-12, abs=0)


@pytest.mark.parametrize("type_", [None, catalog.CONSTANT], ids=["no-scheduler", "none"])
def test_constant_without_warmup_is_base_lr(type_: str | None) -> None:
    assert (
        list(iter_epoch_lrs(make_spec(type_, {}, 0, None), STEPS_PER_EPOCH)) == [BASE_LR] * EPOCHS
    )


@pytest.mark.parametrize("warmup", [0, 3])
def test_plateau_schedule_is_warmup_then_base_lr(warmup: int) -> None:
    """Without metrics, ReduceLROnPlateau's schedule is the warmup alone, then base_lr (the
    reductions come from decisions.py, tested in test_decisions.py)."""
    spec = make_spec("ReduceLROnPlateau", {"patience": 1}, warmup, None)
    got = list(iter_epoch_lrs(spec, STEPS_PER_EPOCH))
    assert got == pytest.approx(reference_lrs(None, {}, warmup, "epoch"), rel=1e-12, abs=0)

"""`POST /v1/schedules/preview` against plain torch and CONTRACT.md, as a client sees it.

The references are written independently of the engine: a plain-torch loop for the schedules,
torch's own ReduceLROnPlateau for the plateau, and CONTRACT.md's text for early stopping. The
preview needs no database, so one app without its lifespan (no relay thread) serves the module.
"""

from __future__ import annotations

import json
import math
from collections.abc import Iterator
from typing import Any

import pytest
import torch
from fastapi.testclient import TestClient
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from torch.optim.lr_scheduler import LinearLR, ReduceLROnPlateau

from service.training import catalog
from tests.support.backends import Backends, in_process
from tests.support.torch_reference import SCHEDULER_CASES, for_interval, plain_torch_lrs

pytestmark = [
    pytest.mark.filterwarnings("ignore:Detected call of `lr_scheduler.step\\(\\)`:UserWarning"),
    pytest.mark.filterwarnings("ignore:The epoch parameter:UserWarning"),
]

URL = "/v1/schedules/preview"
BASE_LR = 0.1
EPOCHS = 12
STEPS = 3
START_FACTOR = 0.1
MOMENTUM = 0.9
SETTINGS = settings(
    max_examples=80,
    deadline=None,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large],
    database=None,
)


@pytest.fixture(scope="module")
def api(backends: Backends, tmp_path_factory: pytest.TempPathFactory) -> Iterator[TestClient]:
    """The API in-process, not entered (no lifespan, no relay), on a migrated SQLite: the
    preview reads no run, but every /v1 request asks the tokens table whether the API is open."""
    from service.app import create_app

    root = tmp_path_factory.mktemp("preview")
    with backends.backend("embedded", root) as made, in_process(made):
        yield TestClient(create_app())


def post(api: TestClient, body: dict[str, Any]) -> Any:
    """Posts with Python's JSON (NaN and Infinity literals allowed, as json.loads reads them)."""
    return api.post(URL, content=json.dumps(body), headers={"content-type": "application/json"})


def ok(api: TestClient, body: dict[str, Any]) -> dict[str, Any]:
    r = post(api, body)
    assert r.status_code == 200, r.text
    out: dict[str, Any] = r.json()
    assert len(out["lr"]) == out["epochs_run"]
    return out


# --- (1) every scheduler equals a plain-torch loop -------------------------------------------

# Values that keep every phase non-empty over the shortest run here (EPOCHS - warmup steps).
CASES = SCHEDULER_CASES


def torch_lrs(
    type_: str | None,
    params: dict[str, Any],
    *,
    warmup: int = 0,
    interval: str = "epoch",
    epochs: int = EPOCHS,
    steps: int = STEPS,
) -> list[float]:
    """Plain torch as a user writes it from CONTRACT.md (tests/support/torch_reference.py)."""
    return plain_torch_lrs(
        base_lr=BASE_LR, kind=type_, params=params, interval=interval, warmup=warmup,
        start_factor=START_FACTOR, epochs=epochs, steps=steps,
        solver_params={"momentum": MOMENTUM},
    )  # fmt: skip


def body(
    type_: str | None,
    params: dict[str, Any] | None = None,
    *,
    warmup: int = 0,
    interval: str | None = None,
    epochs: int = EPOCHS,
    steps: int = STEPS,
    **extra: Any,
) -> dict[str, Any]:
    data: dict[str, Any] = {"base_lr": BASE_LR, "epochs": epochs, "steps_per_epoch": steps}
    if type_ is not None:
        data["scheduler"] = {"type": type_, "params": params or {}}
        if interval is not None:
            data["scheduler"]["interval"] = interval
    if warmup:
        data["warmup"] = {"epochs": warmup, "start_factor": START_FACTOR}
    return {**data, **extra}


def test_cases_cover_every_scheduler_but_plateau() -> None:
    assert {c[1] for c in CASES} == set(catalog.SCHEDULERS) - {
        "ReduceLROnPlateau",
        *catalog.COMPOSITES,
    }


@pytest.mark.parametrize("interval", [None, "epoch", "step"], ids=["default", "epoch", "step"])
@pytest.mark.parametrize("warmup", [0, 3], ids=["nowarmup", "warmup3"])
@pytest.mark.parametrize(("type_", "params"), [c[1:] for c in CASES], ids=[c[0] for c in CASES])
def test_lr_equals_plain_torch(
    api: TestClient, type_: str, params: dict[str, Any], warmup: int, interval: str | None
) -> None:
    effective = interval or ("step" if type_ in ("CyclicLR", "OneCycleLR") else "epoch")
    params = for_interval(type_, params, effective)
    out = ok(api, body(type_, params, warmup=warmup, interval=interval))
    expected = torch_lrs(type_, params, warmup=warmup, interval=effective)
    assert out["epochs_run"] == EPOCHS
    assert out["lr"] == pytest.approx(expected, rel=1e-12, abs=0)
    assert len(set(expected)) > 1  # the schedule does something over these epochs
    assert (out["decisions"], out["stop"], out["stop_reason"], out["notes"]) == ([], None, None, [])


@pytest.mark.parametrize("warmup", [0, 1, 3])
@pytest.mark.parametrize("type_", [None, "none", "ReduceLROnPlateau"])
def test_constant_and_plateau_without_values_are_warmup_then_base_lr(
    api: TestClient, type_: str | None, warmup: int
) -> None:
    out = ok(api, body(type_, warmup=warmup, early_stopping={"patience": 1}))
    assert out["lr"] == pytest.approx(torch_lrs(None, {}, warmup=warmup), rel=1e-12, abs=0)
    assert out["epochs_run"] == EPOCHS and out["stop"] is None  # early stopping needs values
    assert any("early_stopping is ignored" in n for n in out["notes"])
    assert any("ReduceLROnPlateau" in n for n in out["notes"]) == (type_ == "ReduceLROnPlateau")


def test_solver_defaults_to_sgd_with_momentum_and_can_be_set(api: TestClient) -> None:
    """CyclicLR cycles the momentum by default: fine with the default solver, a 422 naming the
    scheduler with one that has no momentum (as for an experiment spec)."""
    cyclic = body("CyclicLR", {"max_lr": 0.5})
    expected = torch_lrs("CyclicLR", {"max_lr": 0.5}, interval="step")
    assert ok(api, cyclic)["lr"] == pytest.approx(expected, rel=1e-12, abs=0)
    r = post(api, {**cyclic, "solver": {"type": "Adagrad"}})
    assert r.status_code == 422
    assert r.json()["detail"][0]["loc"] == ["body", "scheduler", "params"]
    adam = body("CyclicLR", {"max_lr": 0.5, "cycle_momentum": False}, solver={"type": "Adam"})
    assert ok(api, adam)["epochs_run"] == EPOCHS


@pytest.mark.parametrize("solver", sorted(catalog.SCHEDULE_FREE))
def test_a_schedule_free_solver_is_a_422_at_the_solver_not_the_librarys_words(
    api: TestClient, solver: str
) -> None:
    """A schedule-free optimizer sets the LR itself as it steps (its warmup counts steps): the
    preview says it cannot show that at `solver.type`, as it does for hypergradient descent,
    where it answered at ["body"] with the package's "not in train mode" error."""
    params = {} if solver == "RAdamScheduleFree" else {"warmup_steps": 2}
    r = post(api, {"base_lr": 0.1, "epochs": 3, "solver": {"type": solver, "params": params}})
    assert r.status_code == 422, r.text
    (error,) = r.json()["detail"]
    assert error["loc"] == ["body", "solver", "type"]
    assert error["msg"] == (f"{solver} sets the LR itself while it trains (its warmup counts "
                            "optimizer steps); it cannot be previewed")  # fmt: skip


# --- (2) ReduceLROnPlateau over monitor_values == torch ---------------------------------------

VALUE = st.one_of(
    st.sampled_from([1.0, 0.9, 0.5, 0.5000001, 0.45, 2.0]),
    st.floats(0.01, 10, allow_nan=False, allow_infinity=False),
)
PLATEAU_PARAMS = st.fixed_dictionaries(
    {
        "mode": st.sampled_from(["min", "max"]),
        "factor": st.one_of(st.sampled_from([0.5, 0.1]), st.floats(0.01, 0.99)),
        "patience": st.integers(0, 4),
        "threshold": st.one_of(st.just(0.0), st.floats(0.0, 0.2)),
        "threshold_mode": st.sampled_from(["rel", "abs"]),
        "cooldown": st.integers(0, 3),
        "min_lr": st.sampled_from([0.0, 1e-4, 0.02]),
    },
    optional={"eps": st.sampled_from([0.0, 1e-8, 0.005])},
)
EARLY_STOPPING = st.fixed_dictionaries(
    {
        "mode": st.sampled_from(["min", "max"]),
        "patience": st.integers(1, 6),
        "min_delta": st.one_of(st.just(0.0), st.sampled_from([0.05, 0.1]), st.floats(0, 0.5)),
    },
    optional={"baseline": st.sampled_from([0.5, 1.0])},
)


def monitor_for(mode: str) -> str:
    return "val_loss" if mode == "min" else "val_accuracy"


def torch_plateau_lrs(params: dict[str, Any], values: list[float], warmup: int) -> list[float]:
    """The LR in effect for each epoch: the LinearLR warmup alone for W epochs, then torch's
    ReduceLROnPlateau stepped on epochs W+1.. only; the LR of epoch e is read before stepping
    with its value."""
    p = torch.zeros(1, requires_grad=True)
    opt = torch.optim.SGD([p], lr=BASE_LR, momentum=MOMENTUM)
    ramp = LinearLR(opt, START_FACTOR, 1.0, total_iters=warmup) if warmup else None
    plateau = None
    out = []
    for epoch, value in enumerate(values, 1):
        out.append(opt.param_groups[0]["lr"])
        if epoch <= warmup:
            p.grad = torch.ones_like(p)
            opt.step()
            assert ramp is not None
            ramp.step()
            continue
        plateau = plateau or ReduceLROnPlateau(opt, **params)
        plateau.step(value)
    return out


@SETTINGS
@given(
    params=PLATEAU_PARAMS,
    warmup=st.integers(0, 3),
    values=st.lists(VALUE, min_size=1, max_size=30),
    extra_epochs=st.integers(0, 3),
)
def test_plateau_over_values_equals_torch(
    api: TestClient, params: dict[str, Any], warmup: int, values: list[float], extra_epochs: int
) -> None:
    values = [2.0] * warmup + values  # the warmup takes some; the plateau sees only the rest
    scheduler = {
        "type": "ReduceLROnPlateau",
        "params": params,
        "monitor": monitor_for(params["mode"]),
    }
    req = body(None, epochs=len(values) + extra_epochs, monitor_values=values, scheduler=scheduler)
    if warmup:
        req["warmup"] = {"epochs": warmup, "start_factor": START_FACTOR}
    out = ok(api, req)
    expected = torch_plateau_lrs(params, values, warmup)
    assert out["epochs_run"] == len(values)  # fewer values than epochs: ends after the last
    assert out["lr"] == pytest.approx(expected, rel=1e-12, abs=0)
    reductions = out["decisions"]
    assert all(d["kind"] == "reduce_lr" for d in reductions)
    # A reduction after epoch e is the LR of epoch e+1 (the last one's is not in the list).
    changed = [e for e in range(1, len(values)) if expected[e] != expected[e - 1] and e > warmup]
    assert [d["epoch"] for d in reductions if d["epoch"] < len(values)] == changed
    for d in reductions:
        assert d["epoch"] > warmup and d["monitor"] == monitor_for(params["mode"])
    assert out["stop"] is None


def test_plateau_worked_example(api: TestClient) -> None:
    """patience 1, factor 0.5, a flat loss: torch reduces after epochs 3 and 5."""
    req = body(
        "ReduceLROnPlateau",
        {"factor": 0.5, "patience": 1},
        epochs=6,
        monitor_values=[0.8] * 6,
    )
    out = ok(api, req)
    assert out["lr"] == [0.1, 0.1, 0.1, 0.05, 0.05, 0.025]
    assert [(d["epoch"], d["old_lr"], d["new_lr"]) for d in out["decisions"]] == [
        (3, 0.1, 0.05),
        (5, 0.05, 0.025),
    ]
    assert "val_loss has not improved on 0.8 (epoch 1)" in out["decisions"][0]["reason"]


# --- (3) early stopping == CONTRACT.md ---------------------------------------------------------


def contract_early_stop(
    values: list[float], mode: str, patience: int, min_delta: float, baseline: float | None = None
) -> tuple[int, bool]:
    """(epochs run, stopped early). Improvement: value < best - min_delta (min) or
    value > best + min_delta (max); wait resets on improvement, else grows by one; stop after the
    epoch where wait reaches patience. A baseline is a best to beat before any epoch has."""
    best = baseline if baseline is not None else (math.inf if mode == "min" else -math.inf)
    wait = 0
    for epoch, value in enumerate(values, 1):
        if value < best - min_delta if mode == "min" else value > best + min_delta:
            best, wait = value, 0
        else:
            wait += 1
        if wait >= patience:
            return epoch, True
    return len(values), False


@SETTINGS
@given(es=EARLY_STOPPING, values=st.lists(VALUE, min_size=1, max_size=30))
def test_early_stopping_epochs_run_equals_contract(
    api: TestClient, es: dict[str, Any], values: list[float]
) -> None:
    scheduler = ("StepLR", {"step_size": 2, "gamma": 0.5})
    req = body(*scheduler, epochs=30, monitor_values=values)
    req["early_stopping"] = {"monitor": monitor_for(es["mode"]), **es}
    out = ok(api, req)
    run, stopped = contract_early_stop(values, **es)
    assert out["epochs_run"] == run
    # Stopping only truncates the schedule: the LRs are StepLR's.
    assert out["lr"] == pytest.approx(torch_lrs(*scheduler, epochs=30)[:run], rel=1e-12, abs=0)
    assert (out["stop"] == "early_stopped") == stopped
    if stopped:
        assert out["decisions"][-1]["kind"] == "early_stop"
        assert out["decisions"][-1]["epoch"] == run
        assert out["stop_reason"] == out["decisions"][-1]["reason"]
    else:
        assert out["decisions"] == [] and out["stop_reason"] is None


@SETTINGS
@given(
    params=PLATEAU_PARAMS,
    es=EARLY_STOPPING,
    warmup=st.integers(0, 2),
    values=st.lists(VALUE, min_size=1, max_size=30),
)
def test_plateau_and_early_stopping_together(
    api: TestClient, params: dict[str, Any], es: dict[str, Any], warmup: int, values: list[float]
) -> None:
    es = {**es, "mode": params["mode"]}  # one series: one monitor, one direction
    monitor = monitor_for(params["mode"])
    req = body(None, epochs=40, monitor_values=values)
    req["scheduler"] = {"type": "ReduceLROnPlateau", "params": params, "monitor": monitor}
    req["early_stopping"] = {"monitor": monitor, **es}
    if warmup:
        req["warmup"] = {"epochs": warmup, "start_factor": START_FACTOR}
    out = ok(api, req)
    run, stopped = contract_early_stop(values, **es)  # it sees the warmup epochs too
    assert out["epochs_run"] == run
    assert (out["stop"] == "early_stopped") == stopped
    expected = torch_plateau_lrs(params, values, warmup)[:run]
    assert out["lr"] == pytest.approx(expected, rel=1e-12, abs=0)
    kinds = {d["kind"] for d in out["decisions"]}
    assert kinds <= {"reduce_lr", "early_stop"}


def test_a_monitor_of_accuracy_without_a_mode_improves_upwards(api: TestClient) -> None:
    """Early stopping and ReduceLROnPlateau watching val_accuracy with no mode take max: with
    "min" (torch's default) a rising accuracy cut the LR and stopped the run at once, and
    restore_best kept the worst weights. A mode given stays."""
    rising = [0.3, 0.4, 0.5, 0.6, 0.7]
    req = body(None, epochs=5, monitor_values=rising)
    req["scheduler"] = {"type": "ReduceLROnPlateau", "params": {"patience": 0},
                        "monitor": "val_accuracy"}  # fmt: skip
    req["early_stopping"] = {"monitor": "val_accuracy", "patience": 1}
    out = ok(api, req)
    assert out["epochs_run"] == 5 and out["decisions"] == [] and len(set(out["lr"])) == 1
    req["early_stopping"]["mode"] = "min"  # asked for: a rising value is no improvement
    assert ok(api, req)["epochs_run"] == 2
    # Submitted, the spec stores the mode each runs with.
    spec = {"dataset": "digits", "epochs": 2, "scheduler": req["scheduler"],
            "early_stopping": {"monitor": "val_accuracy"}}  # fmt: skip
    made = api.post("/v1/experiments", json=spec)
    assert made.status_code == 201, made.text
    stored = made.json()["spec"]
    assert stored["early_stopping"]["mode"] == stored["scheduler"]["params"]["mode"] == "max"


@pytest.mark.parametrize(
    ("raw", "diverges_at"),
    [("null", 3), ("NaN", 3), ("Infinity", 2), ("-Infinity", 1)],
)
@pytest.mark.parametrize("configured", [False, True], ids=["plain", "plateau+es"])
def test_non_finite_value_diverges_there(
    api: TestClient, raw: str, diverges_at: int, configured: bool
) -> None:
    """null stands for a value that could not be computed: like NaN and ±Infinity (which
    Python's JSON reads), it ends the run as `diverged` at that epoch, as the worker does."""
    values = ["0.9", "0.8", "0.7", "0.6"]
    values[diverges_at - 1] = raw
    extra = ""
    if configured:
        extra = (
            ', "scheduler": {"type": "ReduceLROnPlateau", "params": {"patience": 0}},'
            ' "early_stopping": {"patience": 1}'
        )
    content = f'{{"base_lr": 0.1, "epochs": 5, "monitor_values": [{", ".join(values)}]{extra}}}'
    r = api.post(URL, content=content, headers={"content-type": "application/json"})
    assert r.status_code == 200, r.text
    out = r.json()
    assert out["epochs_run"] == diverges_at == len(out["lr"])
    assert out["stop"] == "diverged"
    assert out["decisions"][-1]["kind"] == "diverged"
    assert "non-finite" in out["stop_reason"]


def test_notes_say_how_values_were_read(api: TestClient) -> None:
    out = ok(api, body("StepLR", {"step_size": 2}, epochs=5, monitor_values=[1.0, 0.5]))
    assert out["epochs_run"] == 2
    assert "monitor_values are read as val_loss" in out["notes"]
    assert any("neither ReduceLROnPlateau nor early_stopping" in n for n in out["notes"])
    assert any("ends after epoch 2" in n for n in out["notes"])
    stopped = body(None, epochs=5, monitor_values=[1.0, 1.0, 1.0, 1.0])
    stopped["early_stopping"] = {"patience": 1}
    out = ok(api, stopped)
    assert out["epochs_run"] == 2
    assert any("the last 2 monitor_values are not used" in n for n in out["notes"])


def test_bounds_are_inclusive(api: TestClient) -> None:
    assert ok(api, body(None, epochs=10_000, steps=100))["epochs_run"] == 10_000
    assert ok(api, body("StepLR", {"step_size": 7}, epochs=100, steps=10_000))["epochs_run"] == 100


# --- (4) 422s name the field --------------------------------------------------------------------

VALID = body("StepLR", {"step_size": 2}, epochs=5)


@pytest.mark.parametrize(
    ("patch", "loc", "type_"),
    [
        ({"epochs": 0}, ["body", "epochs"], "greater_than_equal"),
        ({"epochs": 10_001}, ["body", "epochs"], "less_than_equal"),
        ({"steps_per_epoch": 0}, ["body", "steps_per_epoch"], "greater_than_equal"),
        ({"steps_per_epoch": 10_001}, ["body", "steps_per_epoch"], "less_than_equal"),
        ({"epochs": 101, "steps_per_epoch": 10_000}, ["body", "steps_per_epoch"], "too_many_steps"),
        ({"base_lr": 0}, ["body", "base_lr"], "greater_than"),
        ({"monitor_values": [1, 2, 3, 4, 5, 6]}, ["body", "monitor_values"], "too_long"),
        ({"monitor_values": []}, ["body", "monitor_values"], "too_short"),
        ({"monitor_values": ["x"]}, ["body", "monitor_values", 0], "float_type"),
        ({"scheduler": {"type": "CosineLR"}}, ["body", "scheduler", "type"], "unknown_scheduler"),
        (
            {"scheduler": {"type": "StepLR", "params": {"step_size": 2, "step": 3}}},
            ["body", "scheduler", "params", "step"],
            "unknown_param",
        ),
        (
            {"scheduler": {"type": "StepLR", "params": {}}},
            ["body", "scheduler", "params", "step_size"],
            "missing_param",
        ),
        (
            {"scheduler": {"type": "CosineAnnealingLR", "params": {"T_max": 0}}},
            ["body", "scheduler", "params", "T_max"],
            "invalid_params",
        ),
        (
            {"scheduler": {"type": "OneCycleLR", "params": {"max_lr": 1, "total_steps": 9}}},
            ["body", "scheduler", "params", "total_steps"],
            "reserved_param",
        ),
        (
            {"scheduler": {"type": "ExponentialLR", "params": {"gamma": 1e100}}},
            ["body", "scheduler", "params"],
            "invalid_params",
        ),
        ({"warmup": {"epochs": 5}}, ["body", "warmup", "epochs"], "invalid"),
        ({"solver": {"type": "Adamm"}}, ["body", "solver", "type"], "unknown_solver"),
        ({"lr": 0.1}, ["body", "lr"], "extra_forbidden"),
        ({"scheduler": {"type": "StepLR", "x": 1}}, ["body", "scheduler", "x"], "extra_forbidden"),
        (
            {
                "scheduler": {"type": "ReduceLROnPlateau", "monitor": "val_loss"},
                "early_stopping": {"monitor": "val_accuracy", "mode": "max"},
                "monitor_values": [0.5],
            },
            ["body", "early_stopping", "monitor"],
            "monitor_mismatch",
        ),
        (
            {"early_stopping": {"monitor": "val_acc"}},
            ["body", "early_stopping", "monitor"],
            "unknown_metric",
        ),
    ],
)
def test_invalid_input_is_422_with_field_path(
    api: TestClient, patch: dict[str, Any], loc: list[str | int], type_: str
) -> None:
    r = post(api, {**VALID, **patch})
    assert r.status_code == 422, r.text
    detail = r.json()["detail"]
    assert [d["loc"] for d in detail] == [loc], detail
    assert detail[0]["type"] == type_


def test_unknown_scheduler_lists_allowed(api: TestClient) -> None:
    r = post(api, {**VALID, "scheduler": {"type": "CosineLR"}})
    msg = r.json()["detail"][0]["msg"]
    assert all(name in msg for name in (*catalog.SCHEDULERS, catalog.CONSTANT))


def test_different_monitors_are_fine_without_values(api: TestClient) -> None:
    """Only one series makes two monitors a conflict: a spec pasted without values previews."""
    req = {
        **VALID,
        "scheduler": {"type": "ReduceLROnPlateau", "monitor": "val_loss"},
        "early_stopping": {"monitor": "val_accuracy", "mode": "max"},
    }
    assert ok(api, req)["epochs_run"] == 5


# --- (5) no input is a 500 --------------------------------------------------------------------

SCALAR = st.one_of(
    st.none(),
    st.booleans(),
    st.integers(-3, 40),
    st.sampled_from([0, -1, 2**63, 10**400, 1e-300, 1e308, -1e308]),
    st.floats(allow_nan=True, allow_infinity=True),
    st.text(max_size=5),
)
JSON = st.recursive(
    SCALAR,
    lambda inner: st.one_of(
        st.lists(inner, max_size=4), st.dictionaries(st.text(max_size=5), inner, max_size=3)
    ),
    max_leaves=8,
)
SCHEDULER_TYPES = st.sampled_from([*catalog.SCHEDULERS, catalog.CONSTANT, "Nope"])
PARAM_NAMES = sorted(
    {k for t in catalog.SCHEDULERS for k in catalog.scheduler_kwargs(t)} | {"total_steps", "zz"}
)
SOLVER_PARAM_NAMES = sorted({k for t in catalog.SOLVERS for k in catalog.solver_kwargs(t)})


@st.composite
def scheduler_patch(draw: st.DrawFn) -> Any:
    spec: dict[str, Any] = {"type": draw(SCHEDULER_TYPES)}
    spec["params"] = draw(
        st.dictionaries(
            st.sampled_from(PARAM_NAMES),
            st.one_of(SCALAR, st.lists(st.integers(-2, 12), max_size=4), JSON),
            max_size=4,
        )
    )
    if draw(st.booleans()):
        spec["interval"] = draw(st.sampled_from(["epoch", "step", "batch", None]))
    if draw(st.booleans()):
        spec["monitor"] = draw(st.sampled_from(["val_loss", "val_accuracy", "val_mae", "x"]))
    return draw(st.one_of(st.just(spec), JSON))


PATCHES = st.fixed_dictionaries(
    {},
    optional={
        "base_lr": st.one_of(st.floats(), SCALAR),
        "epochs": st.one_of(st.integers(-2, 60), SCALAR),
        "steps_per_epoch": st.one_of(st.integers(-2, 50), SCALAR),
        "scheduler": scheduler_patch(),
        "warmup": st.one_of(
            st.fixed_dictionaries(
                {"epochs": st.integers(-1, 60)}, optional={"start_factor": st.floats()}
            ),
            JSON,
        ),
        "solver": st.one_of(
            st.fixed_dictionaries(
                {
                    "type": st.sampled_from([*catalog.SOLVERS, "Nope"]),
                    "params": st.dictionaries(
                        st.sampled_from(SOLVER_PARAM_NAMES), JSON, max_size=3
                    ),
                }
            ),
            JSON,
        ),
        "monitor_values": st.one_of(
            st.lists(st.one_of(st.floats(), st.none(), VALUE), max_size=60), JSON
        ),
        "early_stopping": st.one_of(
            st.fixed_dictionaries(
                {},
                optional={
                    "monitor": st.sampled_from(["val_loss", "val_accuracy", "nope"]),
                    "mode": st.sampled_from(["min", "max", "avg"]),
                    "patience": st.one_of(st.integers(-1, 5), SCALAR),
                    "min_delta": st.one_of(st.floats(), SCALAR),
                    "baseline": st.one_of(st.floats(), SCALAR),
                },
            ),
            JSON,
        ),
        "extra": JSON,
    },
)


@settings(SETTINGS, max_examples=200)
@given(patch=PATCHES, drop=st.sets(st.sampled_from(["base_lr", "epochs", "steps_per_epoch"])))
def test_no_input_is_a_500(api: TestClient, patch: dict[str, Any], drop: set[str]) -> None:
    req = {k: v for k, v in {**VALID, **patch}.items() if k not in drop}
    r = post(api, req)
    assert r.status_code in (200, 422), (r.status_code, r.text)
    out = r.json()
    if r.status_code == 422:
        assert out["detail"] and all(d["loc"][0] == "body" for d in out["detail"]), out
        return
    assert len(out["lr"]) == out["epochs_run"] >= 1
    assert all(isinstance(x, float) and math.isfinite(x) for x in out["lr"])


def test_non_object_bodies_are_422(api: TestClient) -> None:
    for content in ("[]", "3", '"x"', "{", ""):
        r = api.post(URL, content=content, headers={"content-type": "application/json"})
        assert r.status_code == 422, (content, r.text)


@pytest.mark.parametrize("betas", [{}, [], [0.9]])
def test_malformed_solver_values_are_422(api: TestClient, betas: Any) -> None:
    # Found by the fuzz test above: torch raised KeyError/IndexError on these (was a 500).
    req = body("StepLR", {"step_size": 2}, solver={"type": "Adam", "params": {"betas": betas}})
    r = post(api, req)
    assert r.status_code == 422, r.text
    assert r.json()["detail"][0]["loc"] == ["body", "solver", "params"]

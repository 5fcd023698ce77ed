"""ExperimentSpec shape (Pydantic) and meaning (`check_spec`), as a submitting user sees them."""

from __future__ import annotations

import copy
from typing import Any

import pydantic
import pytest

from service.datasets.builtin import DatasetInfo, info
from service.kit.errors import ErrorItem
from service.training import catalog
from service.training.checks import check_spec
from service.training.spec import ExperimentSpec

# The example spec from CONTRACT.md ("Experiment spec"), verbatim.
CONTRACT_EXAMPLE: dict[str, Any] = {
    "name": "digits-sgd-plateau",
    "dataset": "digits",
    "split": {"train": 0.8, "val": 0.2, "seed": 0, "stratify": True},
    "model": {"type": "mlp", "hidden": [64]},
    "solver": {"type": "SGD", "params": {"momentum": 0.9, "weight_decay": 0.0005}},
    "base_lr": 0.1,
    "scheduler": {
        "type": "ReduceLROnPlateau",
        "params": {"mode": "min", "factor": 0.5, "patience": 3},
        "monitor": "val_loss",
        "interval": "epoch",
    },
    "warmup": {"epochs": 3, "start_factor": 0.1},
    "early_stopping": {
        "monitor": "val_loss",
        "mode": "min",
        "patience": 8,
        "min_delta": 0.0,
        "restore_best": True,
    },
    "epochs": 50,
    "batch_size": 64,
    "seed": 0,
    "device": "auto",
    "tags": {"sweep": "lr-coarse"},
}


def example(**overrides: Any) -> dict[str, Any]:
    """A deep copy of the CONTRACT example with top-level keys replaced (None deletes the key)."""
    raw = copy.deepcopy(CONTRACT_EXAMPLE)
    for key, value in overrides.items():
        if value is None:
            raw.pop(key, None)
        else:
            raw[key] = value
    return raw


def errors_for(raw: dict[str, Any], dataset: str | None = None) -> list[ErrorItem]:
    spec = ExperimentSpec.model_validate(raw)
    return check_spec(spec, info(dataset or spec.dataset_name))


def only_error(raw: dict[str, Any], dataset: str | None = None) -> ErrorItem:
    errors = errors_for(raw, dataset)
    assert len(errors) == 1, errors
    return errors[0]


def shape_errors(raw: dict[str, Any]) -> list[dict[str, Any]]:
    with pytest.raises(pydantic.ValidationError) as exc_info:
        ExperimentSpec.model_validate(raw)
    return list(exc_info.value.errors())


def sgd(momentum: float = 0.9) -> dict[str, Any]:
    return {"type": "SGD", "params": {"momentum": momentum}}


# --- the contract example ------------------------------------------------------------------------


def test_contract_example_is_valid_for_digits() -> None:
    spec = ExperimentSpec.model_validate(CONTRACT_EXAMPLE)
    assert spec.dataset_name == "digits"
    assert spec.scheduler is not None and spec.scheduler.type == "ReduceLROnPlateau"
    assert spec.warmup is not None and spec.warmup.epochs == 3
    assert check_spec(spec, info("digits")) == []


def test_contract_example_without_scheduler_is_valid() -> None:
    spec = ExperimentSpec.model_validate(example(scheduler=None))
    assert spec.scheduler is None
    assert spec.is_constant_schedule
    assert check_spec(spec, info("digits")) == []


def test_contract_example_round_trips_through_json() -> None:
    spec = ExperimentSpec.model_validate(CONTRACT_EXAMPLE)
    again = ExperimentSpec.model_validate_json(spec.model_dump_json())
    assert again == spec


def test_info_fixtures_have_expected_tasks() -> None:
    digits: DatasetInfo = info("digits")
    assert digits.task == "classification" and digits.n_samples == 1797
    assert info("diabetes").task == "regression"
    assert info("iris").image_shape is None


# --- shape errors (Pydantic) ---------------------------------------------------------------------


@pytest.mark.parametrize(
    ("path", "value"),
    [
        (("lr",), 0.1),
        (("split", "trian"), 0.8),
        (("solver", "kind"), "SGD"),
        (("scheduler", "gamma"), 0.5),
        (("warmup", "end_factor"), 1.0),
        (("early_stopping", "patince"), 3),
        (("model", "layers"), [64]),
    ],
)
def test_unknown_field_is_extra_forbidden(path: tuple[str, ...], value: Any) -> None:
    raw = example()
    target = raw
    for key in path[:-1]:
        target = target[key]
    target[path[-1]] = value
    errors = shape_errors(raw)
    assert [(e["loc"], e["type"]) for e in errors] == [(path, "extra_forbidden")]


@pytest.mark.parametrize(
    ("overrides", "loc"),
    [
        ({"base_lr": 0}, ("base_lr",)),
        ({"base_lr": -0.1}, ("base_lr",)),
        ({"base_lr": float("nan")}, ("base_lr",)),
        ({"base_lr": float("inf")}, ("base_lr",)),
        ({"epochs": 0}, ("epochs",)),
        ({"batch_size": 0}, ("batch_size",)),
        ({"split": {"train": 0.8, "val": 0.3}}, ("split",)),
        ({"split": {"train": 0.7, "val": 0.2, "test": 0.2}}, ("split",)),
        ({"split": {"train": 0.8, "val": 0.0}}, ("split", "val")),
        ({"split": {"train": 0.0, "val": 0.2}}, ("split",)),
        ({"split": {"train": 0.8, "val": 0.2, "test": -0.1}}, ("split", "test")),
        ({"device": "gpu"}, ("device",)),
        ({"device": "cuda:x"}, ("device",)),
        ({"model": {"type": "mlp", "dropout": 1.0}}, ("model", "dropout")),
        ({"model": {"type": "mypkg.models:Net"}}, ("model", "type")),
        ({"model": {"type": "os:system"}}, ("model", "type")),
        ({"dataset": {"type": "a/b"}}, ("dataset", "type")),
        ({"model": {"type": "resnet", "depth": 21}}, ("model", "depth")),
        ({"model": {"type": "mlp", "batchnorm": "maybe"}}, ("model", "batchnorm")),
        ({"model": {"type": "mlp", "hidden": [0]}}, ("model", "hidden", 0)),
        ({"warmup": {"epochs": 3, "start_factor": 0}}, ("warmup", "start_factor")),
        ({"warmup": {"epochs": 0}}, ("warmup", "epochs")),
        ({"warmup": {"epochs": 3, "start_factor": 1.5}}, ("warmup", "start_factor")),
        (
            {"early_stopping": {"monitor": "val_loss", "patience": 0}},
            ("early_stopping", "patience"),
        ),
        (
            {"early_stopping": {"monitor": "val_loss", "min_delta": -1}},
            ("early_stopping", "min_delta"),
        ),
        (
            {"scheduler": {"type": "StepLR", "params": {"step_size": 5}, "interval": "batch"}},
            ("scheduler", "interval"),
        ),
        ({"scheduler": {"params": {}}}, ("scheduler", "type")),
    ],
)
def test_out_of_range_values_are_shape_errors(
    overrides: dict[str, Any], loc: tuple[str | int, ...]
) -> None:
    errors = shape_errors(example(**overrides))
    assert loc in [e["loc"] for e in errors], errors


@pytest.mark.parametrize("device", ["auto", "cpu", "cuda", "cuda:0", "cuda:12"])
def test_device_strings_accepted(device: str) -> None:
    assert ExperimentSpec.model_validate(example(device=device)).device == device


def test_split_fractions_summing_to_exactly_one_are_accepted() -> None:
    spec = ExperimentSpec.model_validate(example(split={"train": 0.7, "val": 0.2, "test": 0.1}))
    assert check_spec(spec, info("digits")) == []


# --- meaning errors (check_spec) -----------------------------------------------------------------


def test_unknown_solver_type_lists_allowed() -> None:
    err = only_error(example(solver={"type": "Adamm"}))
    assert err["loc"] == ["solver", "type"]
    assert "Adamm" in err["msg"]
    for name in catalog.SOLVERS:
        assert name in err["msg"]


def test_unknown_solver_kwarg_lists_allowed() -> None:
    err = only_error(example(solver={"type": "SGD", "params": {"momentun": 0.9}}))
    assert err["loc"] == ["solver", "params", "momentun"]
    assert "momentum" in err["msg"]
    assert "weight_decay" in err["msg"]


@pytest.mark.parametrize("key", ["lr", "params"])
def test_reserved_solver_kwarg(key: str) -> None:
    err = only_error(example(solver={"type": "SGD", "params": {key: 0.5}}))
    assert err["loc"] == ["solver", "params", key]


@pytest.mark.parametrize(
    ("solver", "key", "msg"),
    [
        ({"type": "SGD", "params": {"momentum": -1}}, "momentum", "Invalid momentum value: -1"),
        ({"type": "SGD", "params": {"weight_decay": -1}}, "weight_decay", "Invalid weight_decay"),
        # nesterov needs momentum > 0: torch names a combination, not one kwarg
        ({"type": "SGD", "params": {"nesterov": True}}, None, "Nesterov momentum requires"),
        ({"type": "Adam", "params": {"betas": [0.9, 1.5]}}, "betas", "beta parameter at index 1"),
        ({"type": "Adam", "params": {"eps": -1e-8}}, "eps", "Invalid epsilon value"),
        ({"type": "RMSprop", "params": {"alpha": -0.5}}, "alpha", "Invalid alpha value"),
        ({"type": "SGDScheduleFree", "params": {"momentum": 1}}, "momentum", "Momentum must be"),
        ({"type": "Adam", "params": {"betas": {}}}, None, "Adam rejects these params: 0"),
    ],
)
def test_solver_values_torch_refuses(solver: dict[str, Any], key: str | None, msg: str) -> None:
    """At the kwarg torch's message names; at `params` where it names none of them. (No
    scheduler nor warmup: a schedule-free solver refuses them.)"""
    err = only_error(example(solver=solver, scheduler=None, warmup=None))
    assert err["loc"] == ["solver", "params", *([key] if key else [])]
    assert err["msg"].startswith(f"{solver['type']} rejects these params: ")
    assert msg in err["msg"]
    assert err["type"] == "invalid_params"


def test_unknown_scheduler_type_lists_allowed() -> None:
    err = only_error(example(scheduler={"type": "CosineLR", "params": {"T_max": 10}}))
    assert err["loc"] == ["scheduler", "type"]
    assert "CosineAnnealingLR" in err["msg"]
    for name in catalog.SCHEDULERS:
        assert name in err["msg"]


def test_unknown_scheduler_kwarg_lists_allowed() -> None:
    err = only_error(example(scheduler={"type": "StepLR", "params": {"step_size": 5, "gama": 0.5}}))
    assert err["loc"] == ["scheduler", "params", "gama"]
    assert "gamma" in err["msg"]


def test_missing_required_scheduler_kwarg() -> None:
    err = only_error(example(scheduler={"type": "StepLR", "params": {"gamma": 0.5}}))
    assert err["loc"] == ["scheduler", "params", "step_size"]
    assert "step_size" in err["msg"]


@pytest.mark.parametrize(
    ("scheduler", "key"),
    [
        ({"type": "OneCycleLR", "params": {"max_lr": 1.0, "total_steps": 100}}, "total_steps"),
        ({"type": "OneCycleLR", "params": {"max_lr": 1.0, "epochs": 10}}, "epochs"),
        (
            {"type": "OneCycleLR", "params": {"max_lr": 1.0, "steps_per_epoch": 10}},
            "steps_per_epoch",
        ),
        ({"type": "StepLR", "params": {"step_size": 5, "last_epoch": 3}}, "last_epoch"),
    ],
)
def test_reserved_scheduler_kwarg(scheduler: dict[str, Any], key: str) -> None:
    err = only_error(example(solver=sgd(), scheduler=scheduler))
    assert err["loc"] == ["scheduler", "params", key]


@pytest.mark.parametrize(
    ("scheduler", "loc"),
    [
        ({"type": "CosineAnnealingLR", "params": {"T_max": 0}}, ["scheduler", "params", "T_max"]),
        (
            {"type": "MultiStepLR", "params": {"milestones": [5, 3]}},
            ["scheduler", "params", "milestones"],
        ),
        ({"type": "StepLR", "params": {"step_size": 0}}, ["scheduler", "params", "step_size"]),
        ({"type": "ExponentialLR", "params": {"gamma": 0}}, ["scheduler", "params", "gamma"]),
        ({"type": "CyclicLR", "params": {"max_lr": 0.01}}, ["scheduler", "params", "max_lr"]),
        ({"type": "OneCycleLR", "params": {"max_lr": 0}}, ["scheduler", "params", "max_lr"]),
    ],
)
def test_scheduler_values_refused_with_field_path(
    scheduler: dict[str, Any], loc: list[str]
) -> None:
    # base_lr is 0.1 in the example, so CyclicLR's max_lr 0.01 is below it.
    err = only_error(example(solver=sgd(), scheduler=scheduler))
    assert err["loc"] == loc


def test_plateau_monitor_must_be_recorded_for_the_task() -> None:
    raw = example(
        scheduler={"type": "ReduceLROnPlateau", "params": {}, "monitor": "val_mae"},
        early_stopping=None,
    )
    err = only_error(raw)
    assert err["loc"] == ["scheduler", "monitor"]
    assert "val_accuracy" in err["msg"] and "val_loss" in err["msg"]


@pytest.mark.parametrize(
    "params", [{"factor": 1.5}, {"mode": "avg"}, {"threshold_mode": "x"}], ids=str
)
def test_plateau_values_torch_refuses(params: dict[str, Any]) -> None:
    err = only_error(example(scheduler={"type": "ReduceLROnPlateau", "params": params}))
    assert err["loc"][:2] == ["scheduler", "params"]


def test_plateau_interval_must_be_epoch() -> None:
    raw = example(scheduler={"type": "ReduceLROnPlateau", "params": {}, "interval": "step"})
    err = only_error(raw)
    assert err["loc"] == ["scheduler", "interval"]


def test_plateau_val_accuracy_is_fine_for_classification() -> None:
    raw = example(
        scheduler={
            "type": "ReduceLROnPlateau",
            "params": {"mode": "max"},
            "monitor": "val_accuracy",
        }
    )
    assert errors_for(raw) == []


def test_early_stopping_monitor_must_be_recorded_for_the_task() -> None:
    raw = example(
        dataset="diabetes",
        scheduler=None,
        early_stopping={"monitor": "val_accuracy", "mode": "max", "patience": 5},
    )
    err = only_error(raw)
    assert err["loc"] == ["early_stopping", "monitor"]
    assert "val_mae" in err["msg"]


def test_regression_spec_with_val_mae_is_valid() -> None:
    raw = example(
        dataset="diabetes",
        split={"train": 0.8, "val": 0.2, "stratify": False},
        scheduler={"type": "ReduceLROnPlateau", "params": {}, "monitor": "val_mae"},
        early_stopping={"monitor": "val_mae", "patience": 5},
    )
    assert errors_for(raw) == []


@pytest.mark.parametrize("warmup_epochs", [50, 60])
def test_warmup_must_be_shorter_than_the_run(warmup_epochs: int) -> None:
    err = only_error(example(warmup={"epochs": warmup_epochs}))
    assert err["loc"] == ["warmup", "epochs"]


def test_cnn_on_tabular_dataset() -> None:
    err = only_error(example(dataset="iris", model={"type": "cnn"}))
    assert err["loc"] == ["model", "type"]
    assert "iris" in err["msg"]


def test_cnn_on_digits_is_valid() -> None:
    assert errors_for(example(model={"type": "cnn", "channels": [8, 16]})) == []


def test_split_that_leaves_val_empty() -> None:
    # iris has 150 samples: 0.001 of them rounds to none.
    err = only_error(example(dataset="iris", split={"train": 0.8, "val": 0.001}))
    assert err["loc"] == ["split", "val"]
    assert "150" in err["msg"]


# --- good specs ----------------------------------------------------------------------------------


@pytest.mark.parametrize("solver", catalog.SOLVERS)
def test_every_solver_with_default_params_is_valid(solver: str) -> None:
    # A schedule-free optimizer takes no scheduler or warmup (the example has both).
    alone = {"scheduler": None, "warmup": None} if solver in catalog.SCHEDULE_FREE else {}
    assert errors_for(example(solver={"type": solver}, **alone)) == []


GOOD_SCHEDULERS: dict[str, dict[str, Any]] = {
    "StepLR": {"step_size": 5},
    "MultiStepLR": {"milestones": [3, 6]},
    "ExponentialLR": {"gamma": 0.9},
    "LinearLR": {},
    "ConstantLR": {},
    "PolynomialLR": {},
    "CosineAnnealingLR": {"T_max": 10},
    "CosineAnnealingWarmRestarts": {"T_0": 5},
    "CyclicLR": {"max_lr": 1.0},
    "OneCycleLR": {"max_lr": 1.0},
    "ReduceLROnPlateau": {},
    "LambdaLR": {"lr_lambda": "0.95 ** epoch"},
    "MultiplicativeLR": {"lr_lambda": "0.95"},
}


def test_good_scheduler_table_covers_the_catalog() -> None:
    # compositions: tests/unit/test_composed_schedules.py
    assert set(GOOD_SCHEDULERS) == set(catalog.SCHEDULERS) - catalog.COMPOSITES


@pytest.mark.parametrize(
    "warmup", [None, {"epochs": 3, "start_factor": 0.1}], ids=["plain", "warmup"]
)
@pytest.mark.parametrize("scheduler", GOOD_SCHEDULERS)
def test_every_scheduler_with_sensible_params_is_valid(
    scheduler: str, warmup: dict[str, Any] | None
) -> None:
    raw = example(
        solver=sgd(),
        scheduler={"type": scheduler, "params": GOOD_SCHEDULERS[scheduler]},
        warmup=warmup,
    )
    assert errors_for(raw) == []


def test_constant_scheduler_by_name_is_valid_and_takes_no_params() -> None:
    assert errors_for(example(scheduler={"type": "none"})) == []
    err = only_error(example(scheduler={"type": "none", "params": {"gamma": 0.5}}))
    assert err["loc"] == ["scheduler", "params"]


@pytest.mark.parametrize(
    ("scheduler", "interval"),
    [
        ("CyclicLR", "step"),
        ("OneCycleLR", "step"),
        ("StepLR", "epoch"),
        ("ReduceLROnPlateau", "epoch"),
    ],
)
def test_default_interval_per_scheduler(scheduler: str, interval: str) -> None:
    spec = ExperimentSpec.model_validate(
        example(scheduler={"type": scheduler, "params": GOOD_SCHEDULERS[scheduler]})
    )
    assert spec.scheduler is not None
    assert spec.scheduler.effective_interval == interval

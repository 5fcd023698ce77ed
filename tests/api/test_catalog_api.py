"""GET /v1/catalog: what a form needs to offer exactly a class's params with torch's defaults."""

from __future__ import annotations

from fastapi.testclient import TestClient


def test_catalog_lists_every_class_with_torch_defaults(client: TestClient) -> None:
    body = client.get("/v1/catalog").json()
    solvers = {s["type"]: {p["name"]: p for p in s["params"]} for s in body["solvers"]}
    schedulers = {s["type"]: s for s in body["schedulers"]}
    assert set(solvers) >= {"SGD", "Adam", "AdamW", "RMSprop"}
    assert "lr" not in solvers["SGD"] and "params" not in solvers["SGD"]  # ours to set
    assert solvers["Adam"]["betas"]["default"] == [0.9, 0.999]
    assert solvers["SGD"]["nesterov"] == {"name": "nesterov", "required": False, "default": False,
                                          "kind": "boolean", "choices": None}  # fmt: skip
    step = {p["name"]: p for p in schedulers["StepLR"]["params"]}
    assert step["step_size"]["required"] and step["gamma"]["default"] == 0.1
    assert "last_epoch" not in step and "optimizer" not in step
    assert schedulers["OneCycleLR"]["interval"] == "step"
    assert "total_steps" not in {p["name"] for p in schedulers["OneCycleLR"]["params"]}
    sequential = schedulers["SequentialLR"]
    assert sequential["composite"] and not schedulers["StepLR"]["composite"]
    assert [p["name"] for p in sequential["params"]] == ["milestones"]  # `schedulers`: a field
    assert schedulers["ChainedScheduler"]["params"] == []
    assert body["constant_scheduler"] == "none"
    assert body["hypergradient_solvers"] == ["Adam", "AdamW", "SGD"]


def test_float_params_with_int_defaults_are_numbers_and_choices_are_listed(
    client: TestClient,
) -> None:
    """A form builds a float input (step "any") for SGD's `momentum=0` and a select for a
    param whose values torch lists (#17: momentum 0.9 was an invalid integer input, and
    ReduceLROnPlateau's mode free text)."""
    body = client.get("/v1/catalog").json()
    params = {(c["type"], p["name"]): p for c in body["solvers"] + body["schedulers"]
              for p in c["params"]}  # fmt: skip
    for key in [("SGD", "momentum"), ("SGD", "weight_decay"), ("RMSprop", "momentum"),
                ("ReduceLROnPlateau", "min_lr")]:  # fmt: skip
        assert params[key]["kind"] == "number", key
    for key in [("StepLR", "step_size"), ("ReduceLROnPlateau", "patience"),
                ("CyclicLR", "step_size_up")]:  # fmt: skip
        assert params[key]["kind"] == "integer", key
    assert params[("ReduceLROnPlateau", "mode")]["choices"] == ["min", "max"]
    assert params[("ReduceLROnPlateau", "threshold_mode")]["choices"] == ["rel", "abs"]
    assert params[("CyclicLR", "mode")]["choices"] == ["triangular", "triangular2", "exp_range"]
    assert params[("OneCycleLR", "anneal_strategy")]["choices"] == ["cos", "linear"]
    assert params[("StepLR", "gamma")]["choices"] is None

"""Hypergradient descent (service/training/hypergradient.py): the LR moves the way the gradient
product says, matches hand-written SGD-HD and Adam-HD (Baydin et al., 2018), survives a
checkpoint bit for bit, and the spec options that cannot work are 422s with the field path."""

from __future__ import annotations

import io
from collections.abc import Callable
from typing import Any

import pytest
import torch
from fastapi.testclient import TestClient

from service.datasets import builtin
from service.training.checks import check_schedule
from service.training.hypergradient import Hypergradient
from service.training.schedule import build_schedule
from service.training.spec import ExperimentSpec
from tests.unit.test_spec import errors_for, example, only_error
from worker.engine import checkpoint
from worker.engine.data import to_device
from worker.engine.loop import evaluate, train_epoch
from worker.engine.model import build_model

F64 = torch.float64


def quadratic_sgd(theta0: float, lr: float, beta: float, steps: int) -> list[tuple[float, float]]:
    """SGD-HD on f(θ) = ½θ²: (θ before the step, LR the step used) for each step."""
    p = torch.tensor([theta0], dtype=F64, requires_grad=True)
    opt = torch.optim.SGD([p], lr=lr)
    hd = Hypergradient(opt, beta)
    out = []
    for _ in range(steps):
        opt.zero_grad()
        (0.5 * p * p).sum().backward()
        theta = float(p.detach())
        hd.step()
        out.append((theta, float(opt.param_groups[0]["lr"])))
    return out


# --- the direction of the change ----------------------------------------------------------------


def test_aligned_gradients_raise_the_lr_by_exactly_beta_times_their_product() -> None:
    # f = ½θ², g = θ. θ0 = 1, α = 1/4: θ1 = 3/4 (downhill, no overshoot), so g1 = 1 and g2 = 3/4
    # agree. SGD-HD: α2 = α1 + β·g2·g1 = 1/4 + 1/16·3/4. Every number is dyadic: exact in floats.
    (t1, a1), (t2, a2), (t3, a3) = quadratic_sgd(1.0, 0.25, 1 / 16, 3)
    assert (t1, a1) == (1.0, 0.25)  # the first step has no previous direction: α unchanged
    assert t2 == 0.75
    assert a2 == 0.25 + (1 / 16) * (t2 * t1) == 0.296875
    assert a3 == a2 + (1 / 16) * (t3 * t2)  # g3·g2 > 0: up again
    assert a1 < a2 < a3


def test_oscillating_gradients_lower_the_lr() -> None:
    # α = 3/2 on f = ½θ² overshoots: θ1 = -1/2, consecutive gradients are opposite.
    (t1, a1), (t2, a2), (_, a3) = quadratic_sgd(1.0, 1.5, 1 / 16, 3)
    assert t2 == -0.5
    assert a2 == 1.5 + (1 / 16) * (t2 * t1) == 1.46875
    assert a1 > a2 > a3


def test_sgd_hd_sums_the_gradient_product_over_every_parameter() -> None:
    torch.manual_seed(0)
    a, b = torch.randn(3, 3, dtype=F64), torch.randn(4, dtype=F64)
    w = torch.randn(3, 3, dtype=F64, requires_grad=True)
    v = torch.randn(4, dtype=F64, requires_grad=True)

    def loss() -> torch.Tensor:
        return ((w - a) ** 2).sum() + ((v * b).sum() - 1) ** 2

    opt = torch.optim.SGD([w, v], lr=0.01)
    hd = Hypergradient(opt, 0.05)
    prev: list[torch.Tensor] | None = None
    lr = 0.01
    for _ in range(5):
        opt.zero_grad()
        loss().backward()
        grads = [w.grad.clone(), v.grad.clone()]  # type: ignore[union-attr]
        if prev is not None:
            lr += 0.05 * sum(float((g * q).sum()) for g, q in zip(grads, prev, strict=True))
        hd.step()
        assert opt.param_groups[0]["lr"] == pytest.approx(lr, rel=1e-12, abs=0)
        prev = grads


# --- hand-written references of the paper's algorithms -------------------------------------------

A = torch.tensor([[3.0, 0.5, 0.0], [0.5, 2.0, -0.3], [0.0, -0.3, 1.0]], dtype=F64)
B = torch.tensor([1.0, -2.0, 0.5], dtype=F64)
THETA0 = torch.tensor([0.3, -0.7, 1.1], dtype=F64)


def grad_f(theta: torch.Tensor) -> torch.Tensor:
    """f(θ) = ½θᵀAθ - bᵀθ + ¼Σθ⁴ (a curved, non-quadratic bowl)."""
    return A @ theta - B + theta**3


def f(theta: torch.Tensor) -> torch.Tensor:
    return 0.5 * theta @ A @ theta - B @ theta + 0.25 * (theta**4).sum()


def torch_run(make: Callable[[list[torch.Tensor]], torch.optim.Optimizer], beta: float,
              steps: int, sign: float = 1.0) -> tuple[list[float], torch.Tensor]:  # fmt: skip
    p = THETA0.clone().requires_grad_(True)
    opt = make([p])
    hd = Hypergradient(opt, beta)
    lrs = []
    for _ in range(steps):
        opt.zero_grad()
        (sign * f(p)).backward()
        hd.step()
        lrs.append(float(opt.param_groups[0]["lr"]))
    return lrs, p.detach()


def sgd_hd_reference(lr: float, beta: float, steps: int, momentum: float = 0.0,
                     dampening: float = 0.0, nesterov: bool = False, wd: float = 0.0
                     ) -> tuple[list[float], torch.Tensor]:  # fmt: skip
    """SGD(N)-HD as in the paper's reference code: g includes the L2 term; u is the step taken."""
    theta, buf, u_prev, lrs = THETA0.clone(), None, None, []
    for _ in range(steps):
        g = grad_f(theta) + wd * theta
        if u_prev is not None:
            lr = lr - beta * float(-(g @ u_prev))  # h = ∇f(θ_{t-1})·∂θ_{t-1}/∂α = -g·u_{t-1}
        if momentum:
            buf = g.clone() if buf is None else momentum * buf + (1 - dampening) * g
            u = g + momentum * buf if nesterov else buf
        else:
            u = g
        theta = theta - lr * u
        u_prev = u
        lrs.append(lr)
    return lrs, theta


def adam_hd_reference(lr: float, beta: float, steps: int, betas: tuple[float, float] = (0.9, 0.999),
                      eps: float = 1e-8, wd: float = 0.0, decoupled: bool = False
                      ) -> tuple[list[float], torch.Tensor]:  # fmt: skip
    """Adam-HD (the paper's Algorithm 6), m̂ and v̂ by hand. With `decoupled` (AdamW) the step is
    θ ← θ - α(wd·θ + u), so ∂θ/∂α = -(wd·θ_{t-2} + u_{t-1}) and the gradient has no L2 term."""
    b1, b2 = betas
    theta = THETA0.clone()
    m, v = torch.zeros(3, dtype=F64), torch.zeros(3, dtype=F64)
    d_prev: torch.Tensor | None = None
    lrs = []
    for t in range(1, steps + 1):
        g = grad_f(theta) + (0.0 if decoupled else wd) * theta
        if d_prev is not None:
            lr = lr - beta * float(g @ d_prev)  # h_t = g_t · ∂θ_{t-1}/∂α
        m = b1 * m + (1 - b1) * g
        v = b2 * v + (1 - b2) * g * g
        m_hat, v_hat = m / (1 - b1**t), v / (1 - b2**t)
        u = m_hat / (v_hat.sqrt() + eps)
        step = u + wd * theta if decoupled else u
        theta = theta - lr * step
        d_prev = -step
        lrs.append(lr)
    return lrs, theta


@pytest.mark.parametrize(
    "kw",
    [
        {},
        {"momentum": 0.9},
        {"momentum": 0.8, "dampening": 0.3},
        {"momentum": 0.9, "nesterov": True},
        {"momentum": 0.9, "weight_decay": 0.05},
        {"weight_decay": 0.1},
    ],
    ids=str,
)
@pytest.mark.parametrize("foreach", [False, True])
def test_sgd_hd_equals_the_hand_written_algorithm(kw: dict[str, Any], foreach: bool) -> None:
    lrs, theta = torch_run(lambda ps: torch.optim.SGD(ps, lr=0.02, foreach=foreach, **kw),
                           beta=0.01, steps=12)  # fmt: skip
    ref_kw = {k: v for k, v in kw.items() if k != "weight_decay"}
    ref_lrs, ref_theta = sgd_hd_reference(0.02, 0.01, 12, wd=kw.get("weight_decay", 0.0), **ref_kw)
    assert lrs == pytest.approx(ref_lrs, rel=1e-10, abs=0)
    assert len(set(lrs)) > 5  # it really adapted
    torch.testing.assert_close(theta, ref_theta, rtol=1e-10, atol=1e-12)


@pytest.mark.parametrize(
    ("cls", "kw", "ref"),
    [
        (torch.optim.Adam, {}, {}),
        (torch.optim.Adam, {"betas": (0.8, 0.99), "eps": 1e-6},
         {"betas": (0.8, 0.99), "eps": 1e-6}),
        (torch.optim.Adam, {"weight_decay": 0.1}, {"wd": 0.1}),
        (torch.optim.AdamW, {"weight_decay": 0.1}, {"wd": 0.1, "decoupled": True}),
        (torch.optim.Adam, {"weight_decay": 0.1, "decoupled_weight_decay": True},
         {"wd": 0.1, "decoupled": True}),
    ],
    ids=["adam", "betas-eps", "adam-l2", "adamw", "adam-decoupled"],
)  # fmt: skip
@pytest.mark.parametrize("foreach", [False, True])
def test_adam_hd_equals_the_papers_algorithm(
    cls: Any, kw: dict[str, Any], ref: dict[str, Any], foreach: bool
) -> None:
    lrs, theta = torch_run(lambda ps: cls(ps, lr=0.05, foreach=foreach, **kw), beta=1e-3, steps=15)
    ref_lrs, ref_theta = adam_hd_reference(0.05, 1e-3, 15, **ref)
    assert lrs == pytest.approx(ref_lrs, rel=1e-9, abs=0)
    assert len(set(lrs)) > 5
    torch.testing.assert_close(theta, ref_theta, rtol=1e-9, atol=1e-12)


def test_maximize_adapts_the_lr_for_the_objective_the_optimizer_ascends() -> None:
    # Ascending -f with maximize=True is the same run as descending f: the same LRs.
    up, theta_up = torch_run(lambda ps: torch.optim.SGD(ps, lr=0.02, maximize=True), 0.01, 10,
                             sign=-1.0)  # fmt: skip
    down, theta_down = torch_run(lambda ps: torch.optim.SGD(ps, lr=0.02), 0.01, 10)
    assert up == down
    assert torch.equal(theta_up, theta_down)


def test_a_parameter_without_a_gradient_adds_nothing() -> None:
    torch.manual_seed(0)
    w = torch.randn(4, dtype=F64, requires_grad=True)
    unused = torch.randn(2, dtype=F64, requires_grad=True)
    lrs = {}
    for params in ([w], [unused, w]):
        w.data.copy_(torch.arange(4, dtype=F64))
        opt = torch.optim.SGD(params, lr=0.05, momentum=0.5)
        hd = Hypergradient(opt, 0.1)
        seq = []
        for _ in range(4):
            opt.zero_grad(set_to_none=True)
            ((w - 1) ** 2).sum().backward()
            hd.step()
            seq.append(opt.param_groups[0]["lr"])
        lrs[len(params)] = seq
    assert lrs[1] == lrs[2]


def test_epoch_lr_is_the_lr_of_the_first_step_after_begin_epoch() -> None:
    p = torch.tensor([1.0], dtype=F64, requires_grad=True)
    opt = torch.optim.SGD([p], lr=0.25)
    hd = Hypergradient(opt, 1 / 16)
    used = []
    for step in range(4):
        if step in (0, 2):
            hd.begin_epoch()
        opt.zero_grad()
        (0.5 * p * p).sum().backward()
        hd.before_step()
        used.append(opt.param_groups[0]["lr"])
        opt.step()
        if step == 0:
            assert hd.epoch_lr == 0.25
    assert hd.epoch_lr == used[2] != 0.25


def test_other_solvers_are_refused() -> None:
    p = torch.zeros(1, requires_grad=True)
    with pytest.raises(ValueError, match="RMSprop"):
        Hypergradient(torch.optim.RMSprop([p]), 1e-3)


# --- checkpoint and resume -----------------------------------------------------------------------


def _roundtrip(obj: Any) -> Any:
    """Through torch.save and torch.load(weights_only=True), as a checkpoint goes."""
    buf = io.BytesIO()
    torch.save(obj, buf)
    buf.seek(0)
    return torch.load(buf, weights_only=True)


@pytest.mark.parametrize("solver", ["SGD", "Adam", "AdamW"])
def test_state_dict_round_trip_continues_the_same_lr_sequence(solver: str) -> None:
    torch.manual_seed(1)
    x, y = torch.randn(64, 5), torch.randint(0, 3, (64,))

    def build() -> tuple[torch.nn.Module, torch.optim.Optimizer, Hypergradient]:
        torch.manual_seed(2)
        model = torch.nn.Sequential(torch.nn.Linear(5, 8), torch.nn.Tanh(), torch.nn.Linear(8, 3))
        kw = {"momentum": 0.9} if solver == "SGD" else {}
        opt = getattr(torch.optim, solver)(model.parameters(), lr=0.05, **kw)
        return model, opt, Hypergradient(opt, 1e-3 if solver == "SGD" else 1e-4)

    def steps(model: torch.nn.Module, opt: torch.optim.Optimizer, hd: Hypergradient, n: int
              ) -> list[float]:  # fmt: skip
        out = []
        for i in range(n):
            opt.zero_grad(set_to_none=True)
            idx = slice(8 * (i % 8), 8 * (i % 8) + 8)
            torch.nn.functional.cross_entropy(model(x[idx]), y[idx]).backward()
            hd.step()
            out.append(opt.param_groups[0]["lr"])
        return out

    model, opt, hd = build()
    steps(model, opt, hd, 6)
    saved = _roundtrip({"model": model.state_dict(), "optimizer": opt.state_dict(),
                        "hypergradient": hd.state_dict()})  # fmt: skip
    expected = steps(model, opt, hd, 6)

    model2, opt2, hd2 = build()
    model2.load_state_dict(saved["model"])
    opt2.load_state_dict(saved["optimizer"])
    hd2.load_state_dict(saved["hypergradient"])
    assert steps(model2, opt2, hd2, 6) == expected
    assert all(torch.equal(a, b) for a, b in zip(model.parameters(), model2.parameters(),
                                                 strict=True))  # fmt: skip
    assert len(set(expected)) == 6


def test_engine_resume_from_a_checkpoint_gives_the_identical_trace() -> None:
    """The worker's own pieces (data on the device, train_epoch, checkpoint.save/load) with
    dropout and momentum: 6 epochs straight equal 3 epochs, a checkpoint, then 3 more in fresh
    objects."""
    spec = ExperimentSpec.model_validate({
        "dataset": "digits", "model": {"type": "mlp", "hidden": [32], "dropout": 0.1},
        "solver": {"type": "SGD", "params": {"momentum": 0.9},
                   "hypergradient": {"hyper_lr": 1e-3}},
        "base_lr": 0.01, "batch_size": 64, "epochs": 6, "seed": 4, "device": "cpu",
    })  # fmt: skip
    assert spec.solver.hypergradient is not None
    device = torch.device("cpu")
    data = to_device(spec, builtin.load("digits"), builtin.info("digits"), device)

    def build() -> tuple[torch.nn.Module, torch.optim.Optimizer, Hypergradient]:
        torch.manual_seed(spec.seed)
        model = build_model(spec.model, data.info)
        opt = torch.optim.SGD(model.parameters(), lr=spec.base_lr, momentum=0.9)
        assert spec.solver.hypergradient is not None
        return model, opt, Hypergradient(opt, spec.solver.hypergradient.hyper_lr)

    def epochs(model: torch.nn.Module, opt: torch.optim.Optimizer, hd: Hypergradient,
               first: int, last: int) -> list[tuple[float, float, float]]:  # fmt: skip
        schedule = build_schedule(spec, opt, 1)
        rows = []
        for epoch in range(first, last + 1):
            loss = train_epoch(model, opt, schedule, data.train, spec.batch_size, "classification",
                               spec.seed, epoch, None, hd)  # fmt: skip
            rows.append((hd.epoch_lr, loss, evaluate(model, data.val, "classification").loss))
        return rows

    straight = epochs(*build(), 1, 6)
    assert straight[0][0] == spec.base_lr
    assert len({lr for lr, _, _ in straight}) == 6

    model, opt, hd = build()
    head = epochs(model, opt, hd, 1, 3)
    state = {"epoch": 3, "model": model.state_dict(), "optimizer": opt.state_dict(),
             "scheduler": None, "best_weights": None, "hypergradient": hd.state_dict()}  # fmt: skip
    ckpt = checkpoint.loads(checkpoint.dumps(state, 1))
    assert ckpt is not None
    model, opt, hd = build()
    model.load_state_dict(ckpt["model"])
    opt.load_state_dict(ckpt["optimizer"])
    hd.load_state_dict(ckpt["hypergradient"])
    assert head + epochs(model, opt, hd, 4, 6) == straight


# --- the spec option -----------------------------------------------------------------------------


def hd_spec(solver: str = "SGD", params: dict[str, Any] | None = None, hyper_lr: Any = 1e-3,
            **overrides: Any) -> dict[str, Any]:  # fmt: skip
    solver_spec = {"type": solver, "params": params or {}, "hypergradient": {"hyper_lr": hyper_lr}}
    base = {"scheduler": None, "warmup": None, "solver": solver_spec}
    return example(**{**base, **overrides})


@pytest.mark.parametrize("solver", ["SGD", "Adam", "AdamW"])
def test_supported_solvers_accept_it(solver: str) -> None:
    assert errors_for(hd_spec(solver)) == []
    assert errors_for(hd_spec(solver, scheduler={"type": "none"})) == []


@pytest.mark.parametrize("solver", ["RMSprop", "Adagrad", "NAdam"])
def test_other_solvers_are_a_422_listing_the_allowed_ones(solver: str) -> None:
    err = only_error(hd_spec(solver))
    assert err["loc"] == ["solver", "hypergradient"]
    assert solver in err["msg"]
    assert all(name in err["msg"] for name in ("Adam", "AdamW", "SGD"))


def test_with_a_scheduler_is_a_422_on_its_type() -> None:
    err = only_error(hd_spec(scheduler={"type": "StepLR", "params": {"step_size": 5}}))
    assert err["loc"] == ["scheduler", "type"]
    assert "StepLR" in err["msg"]
    err = only_error(hd_spec(scheduler={"type": "ReduceLROnPlateau", "params": {}}))
    assert err["loc"] == ["scheduler", "type"]


def test_with_warmup_is_a_422_on_warmup() -> None:
    err = only_error(hd_spec(warmup={"epochs": 3}))
    assert err["loc"] == ["warmup"]


def test_unknown_solver_is_reported_once() -> None:
    err = only_error(hd_spec("Adamm"))
    assert err["loc"] == ["solver", "type"]


def test_solver_dry_run_still_refuses_bad_params() -> None:
    err = only_error(hd_spec("SGD", {"nesterov": True}))  # nesterov needs momentum
    assert err["loc"] == ["solver", "params"]


@pytest.mark.parametrize("hyper_lr", [0, -1e-3, float("nan"), float("inf")])
def test_hyper_lr_must_be_positive_and_finite(hyper_lr: float) -> None:
    import pydantic

    with pytest.raises(pydantic.ValidationError) as exc_info:
        ExperimentSpec.model_validate(hd_spec(hyper_lr=hyper_lr))
    assert [e["loc"] for e in exc_info.value.errors()] == [("solver", "hypergradient", "hyper_lr")]


def test_hypergradient_takes_only_hyper_lr() -> None:
    import pydantic

    raw = hd_spec()
    raw["solver"]["hypergradient"]["beta"] = 0.1
    with pytest.raises(pydantic.ValidationError):
        ExperimentSpec.model_validate(raw)
    raw["solver"]["hypergradient"] = {}
    with pytest.raises(pydantic.ValidationError):
        ExperimentSpec.model_validate(raw)


def test_specs_without_it_dump_as_before() -> None:
    plain = ExperimentSpec.model_validate(example())
    assert "hypergradient" not in plain.model_dump(mode="json")["solver"]
    with_hd = ExperimentSpec.model_validate(hd_spec())
    dumped = with_hd.model_dump(mode="json")
    assert dumped["solver"]["hypergradient"] == {"hyper_lr": 1e-3}
    assert ExperimentSpec.model_validate(dumped) == with_hd


def test_the_schedule_preview_cannot_show_it() -> None:
    spec = ExperimentSpec.model_validate(hd_spec())
    assert [e["loc"] for e in check_schedule(spec, 10)] == [["solver", "hypergradient"]]


@pytest.mark.parametrize(
    ("patch", "loc"),
    [
        ({"solver": {"type": "RMSprop", "hypergradient": {"hyper_lr": 1e-3}}},
         ["body", "solver", "hypergradient"]),
        ({"scheduler": {"type": "CosineAnnealingLR", "params": {"T_max": 5}}},
         ["body", "scheduler", "type"]),
        ({"warmup": {"epochs": 1}}, ["body", "warmup"]),
        ({"solver": {"type": "SGD", "hypergradient": {"hyper_lr": 0}}},
         ["body", "solver", "hypergradient", "hyper_lr"]),
    ],
)  # fmt: skip
def test_api_answers_422_with_the_field_path(
    client: TestClient, patch: dict[str, Any], loc: list[str]
) -> None:
    spec = {"dataset": "digits", "base_lr": 0.01, "epochs": 3,
            "solver": {"type": "SGD", "hypergradient": {"hyper_lr": 1e-3}}, **patch}  # fmt: skip
    r = client.post("/v1/experiments", json=spec)
    assert r.status_code == 422, r.text
    assert loc in [e["loc"] for e in r.json()["detail"]], r.text


def test_api_accepts_and_stores_it(client: TestClient) -> None:
    solver = {"type": "Adam", "params": {}, "hypergradient": {"hyper_lr": 1e-7}}
    r = client.post("/v1/experiments", json={"dataset": "digits", "solver": solver, "epochs": 3})
    assert r.status_code == 201, r.text
    got = client.get(f"/v1/experiments/{r.json()['id']}").json()
    assert got["spec"]["solver"] == solver

"""Hypergradient descent (Baydin et al., 2018, "Online Learning Rate Adaptation with Hypergradient
Descent"): the learning rate α follows its own gradient, one update before every optimizer step.

    α_t = α_{t-1} - β·h_t,    h_t = ∂f(θ_{t-1})/∂α = ∇f(θ_{t-1}) · ∂θ_{t-1}/∂α_{t-1}

SGD, Adam and AdamW update the parameters linearly in α: θ_t = θ_{t-1} - α_t·u_t, where u_t (the
momentum buffer, Nesterov's look-ahead, Adam's m̂/(√v̂+ε), AdamW's decoupled wd·θ_{t-1} + m̂/(√v̂+ε))
does not depend on α_t. So ∂θ_{t-1}/∂α_{t-1} = -u_{t-1} = (θ_{t-1} - θ_{t-2})/α_{t-1}: the last
step divided by the LR it used. That needs one snapshot of the parameters and no knowledge of the
optimizer's internals, and for plain SGD gives the paper's SGD-HD (α grows by β·g_t·g_{t-1}), for
Adam its Adam-HD (α grows by β·g_t·u_{t-1}).

∇f is the gradient the optimizer itself descends on: `p.grad`, negated under `maximize`, plus
`weight_decay·θ` for SGD's and Adam's (coupled) L2 penalty, as in the paper's reference code.
AdamW's decoupled decay is not a gradient: it shows up in u, not in ∇f.

α is a Python float in every param group, as torch expects: the update reads one scalar off the
device per step (a host sync on CUDA; see docs/hypergradient.md for its cost).
"""

from __future__ import annotations

import math
from typing import Any

import torch

SOLVERS = ("Adam", "AdamW", "SGD")  # torch.optim classes whose update is linear in the LR


class Hypergradient:
    """Adapts `optimizer`'s LR by hypergradient descent with hyper-LR `hyper_lr` (β).

    Call `before_step()` after `backward()` and before every `optimizer.step()`. Nothing may change
    the parameters or the LR between steps (no scheduler): the last step is read off the
    parameters. `state_dict()`/`load_state_dict()` carry what the next step needs across a resume
    (the optimizer's own state, which holds α, is restored separately).
    """

    def __init__(self, optimizer: torch.optim.Optimizer, hyper_lr: float) -> None:
        if not isinstance(optimizer, torch.optim.SGD | torch.optim.Adam):  # AdamW is an Adam
            raise ValueError(
                f"hypergradient descent supports {', '.join(SOLVERS)}, "
                f"not {type(optimizer).__name__}"
            )
        params = [p for group in optimizer.param_groups for p in group["params"]]
        if not params:
            raise ValueError("the optimizer has no parameters")
        first = params[0]
        if any(p.dtype != first.dtype or p.device != first.device for p in params):
            raise ValueError("hypergradient descent needs every parameter on one device and dtype")
        self.optimizer = optimizer
        self.hyper_lr = float(hyper_lr)
        # θ before the last step, one flat buffer (a single sum per step); then, while the
        # hypergradient is computed, (θ_{t-2} - θ_{t-1}) ⊙ ∇f(θ_{t-1}).
        self._prev = torch.zeros(sum(p.numel() for p in params), dtype=first.dtype,
                                 device=first.device)  # fmt: skip
        chunks = iter(self._prev.split([p.numel() for p in params]))
        # Per param group, by position: `optimizer.load_state_dict` replaces the group dicts.
        self._groups = [
            ([next(chunks).view(p.shape) for p in group["params"]], list(group["params"]))
            for group in optimizer.param_groups
        ]
        self._views = [v for views, _ in self._groups for v in views]
        self._params = params
        self._has_prev = False
        self._first_of_epoch = False
        self.epoch_lr = self.lr

    @property
    def lr(self) -> float:
        return float(self.optimizer.param_groups[0]["lr"])

    def begin_epoch(self) -> None:
        """The next step is an epoch's first: `epoch_lr` will be the LR that step uses."""
        self._first_of_epoch = True

    @torch.no_grad()
    def before_step(self) -> None:
        """Gradients are fresh: α ← α - β·h, on every param group; then remember θ."""
        lr = self.lr
        if self._has_prev and lr != 0.0:  # at α = 0 the last step says nothing about u
            torch._foreach_sub_(self._views, self._params)  # θ_{t-2} - θ_{t-1} = α_{t-1}·u_{t-1}
            for group, (views, params) in zip(
                self.optimizer.param_groups, self._groups, strict=True
            ):
                live = [(v, p) for v, p in zip(views, params, strict=True) if p.grad is not None]
                for v, p in zip(views, params, strict=True):
                    if p.grad is None:
                        v.zero_()  # torch skips such a parameter: no gradient, no step
                if not live:
                    continue
                grads: list[torch.Tensor] = [p.grad for _, p in live]
                if group.get("maximize", False):
                    grads = list(torch._foreach_neg(grads))
                wd = group.get("weight_decay", 0.0)
                if wd and not group.get("decoupled_weight_decay", False):
                    grads = list(torch._foreach_add(grads, [p for _, p in live], alpha=wd))
                torch._foreach_mul_([v for v, _ in live], grads)
            # Σ ∇f(θ_{t-1})·(θ_{t-2} - θ_{t-1}) = -α_{t-1}·h_t: the one host sync of the step.
            # Summed in the parameters' dtype: a float64 sum of float32 costs ~10x more on CPU.
            s = float(self._prev.sum())
            new_lr = lr + self.hyper_lr * s / lr
            if math.isfinite(new_lr):  # a non-finite gradient ends the run as diverged anyway
                for group in self.optimizer.param_groups:
                    group["lr"] = new_lr
        if self._first_of_epoch:
            self.epoch_lr, self._first_of_epoch = self.lr, False
        torch._foreach_copy_(self._views, self._params)
        self._has_prev = True

    def step(self) -> None:
        """`before_step()` then `optimizer.step()`."""
        self.before_step()
        self.optimizer.step()

    def state_dict(self) -> dict[str, Any]:
        """Tensors and plain values only (checkpoints are read with `weights_only=True`)."""
        return {"lr": self.lr, "hyper_lr": self.hyper_lr, "has_prev": self._has_prev,
                "prev": self._prev.detach().clone()}  # fmt: skip

    def load_state_dict(self, state: dict[str, Any]) -> None:
        self._prev.copy_(state["prev"])
        self._has_prev = bool(state["has_prev"])
        for group in self.optimizer.param_groups:
            group["lr"] = float(state["lr"])

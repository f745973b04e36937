"""The tutorial's update rules, written as a ``torch.optim.Optimizer`` (``optimizer.impl=reference``).

Exactly the tutorial's formulas (docs/ARCHITECTURE.md lists them); the TensorFlow and JAX
twins (``bench/frameworks/tf/reference.py``, ``bench/frameworks/jax/reference.py``) do the same
operations in the same order, so the frameworks differ only by float32 rounding:

    sgd       θ ← θ − ηg
    momentum  v ← βv + (1−β)g;            θ ← θ − ηv
    rmsprop   s ← βs + (1−β)g²;           θ ← θ − ηg / (√s + ε)
    adam      m ← β₁m + (1−β₁)g;  v ← β₂v + (1−β₂)g²;
              m̂ = m/(1−β₁ᵗ), v̂ = v/(1−β₂ᵗ);  θ ← θ − η m̂ / (√v̂ + ε)

Imported only inside a torch child process.
"""
from __future__ import annotations

from collections.abc import Callable, Iterable, Mapping
from typing import Any

import torch

from bench.optimizers import REQUIRED_HPARAMS


class ReferenceOptimizer(torch.optim.Optimizer):
    """One optimizer for the four rule families; ``hp`` uses the tutorial's names (lr, beta, ...)."""

    def __init__(self, params: Iterable[Any], rule: str, hp: Mapping[str, Any]) -> None:
        if rule not in REQUIRED_HPARAMS:
            raise ValueError(f"unknown rule {rule!r}; expected one of {', '.join(REQUIRED_HPARAMS)}")
        defaults = {key: float(hp[key]) for key in REQUIRED_HPARAMS[rule]}
        self.rule = rule
        super().__init__(params, defaults)

    @torch.no_grad()
    def step(self, closure: Callable[[], torch.Tensor] | None = None) -> torch.Tensor | None:
        loss = None
        if closure is not None:
            with torch.enable_grad():
                loss = closure()
        for group in self.param_groups:
            for p in group["params"]:
                if p.grad is not None:
                    self._update(p, p.grad, group, self.state[p])
        return loss

    def _update(self, p: torch.Tensor, g: torch.Tensor, group: dict[str, Any], state: dict[str, Any]) -> None:
        lr = group["lr"]
        if not state and self.rule != "sgd":
            # Zeros, as the formulas start. t is a tensor, as in torch's own Adam: code that resets
            # optimizer state by zeroing its tensors (the runners' warm-up) resets it too, and
            # torch.compile needs no .item().
            slots = {"momentum": ("v",), "rmsprop": ("s",), "adam": ("m", "v")}[self.rule]
            state.update({name: torch.zeros_like(p) for name in slots})
            if self.rule == "adam":
                state["t"] = torch.zeros((), dtype=torch.float64)
        if self.rule == "sgd":
            p.sub_(lr * g)
        elif self.rule == "momentum":
            beta, v = group["beta"], state["v"]
            v.mul_(beta).add_((1.0 - beta) * g)
            p.sub_(lr * v)
        elif self.rule == "rmsprop":
            beta, s = group["beta"], state["s"]
            s.mul_(beta).add_((1.0 - beta) * (g * g))
            p.sub_(lr * g / (s.sqrt() + group["eps"]))
        else:  # adam
            b1, b2 = group["beta1"], group["beta2"]
            state["t"] += 1
            t, m, v = state["t"], state["m"], state["v"]
            m.mul_(b1).add_((1.0 - b1) * g)
            v.mul_(b2).add_((1.0 - b2) * (g * g))
            # 1 − βᵗ in float64, then float32, as the TensorFlow twin computes it
            m_hat = m / (1.0 - b1**t).to(p.dtype)
            v_hat = v / (1.0 - b2**t).to(p.dtype)
            p.sub_(lr * m_hat / (v_hat.sqrt() + group["eps"]))

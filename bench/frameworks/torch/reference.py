"""Any rule of ``bench.optimizers`` as a ``torch.optim.Optimizer`` (``optimizer.impl=reference``).

A thin adapter: the rule (written once, in ``bench/optimizers.py``) computes the step to subtract
and the new slots from tensors; this class keeps the slots and applies both in place. The
TensorFlow and JAX adapters run the same function, so the frameworks differ only by float32
rounding. Imported only inside a torch child process.
"""
from __future__ import annotations

from collections.abc import Callable, Iterable, Mapping
from typing import Any

import torch

from bench.optimizers import Rule


class TorchStep:
    """t is a float64 tensor, as in torch's own Adam: code that resets optimizer state by zeroing its
    tensors (the runners' warm-up) resets it too, and torch.compile needs no ``.item()``."""

    def __init__(self, t: torch.Tensor) -> None:
        self.t = t

    def one_minus_pow(self, beta: float) -> torch.Tensor:
        # 1 − βᵗ in float64; a 0-d tensor, so a float32 tensor divided by it stays float32.
        return 1.0 - beta**self.t


class ReferenceOptimizer(torch.optim.Optimizer):
    """``rule`` on every parameter; ``hp`` uses the tutorial's names (lr, beta, ...)."""

    def __init__(self, params: Iterable[Any], rule: Rule, hp: Mapping[str, Any]) -> None:
        self.rule = rule
        super().__init__(params, {key: float(hp[key]) for key in rule.hparams})

    @torch.no_grad()
    def step(self, closure: Callable[[], torch.Tensor] | None = None) -> torch.Tensor | None:
        loss = None
        if closure is not None:
            with torch.enable_grad():
                loss = closure()
        for group in self.param_groups:
            hp = {key: group[key] for key in self.rule.hparams}
            for p in group["params"]:
                if p.grad is not None:
                    self._update(p, p.grad, hp, self.state[p])
        return loss

    def _update(self, p: torch.Tensor, g: torch.Tensor, hp: dict[str, float], state: dict[str, Any]) -> None:
        if not state:  # zeros, as the formulas start
            state.update({name: torch.zeros_like(p) for name in self.rule.slots})
            state["step"] = torch.zeros((), dtype=torch.float64)
        state["step"] += 1
        slots = {name: state[name] for name in self.rule.slots}
        delta, new = self.rule.update(p, g, slots, TorchStep(state["step"]), hp)
        for name, value in new.items():
            state[name].copy_(value)
        p.sub_(delta)

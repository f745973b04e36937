"""The six methods as one table, and how each maps onto each framework's optimizers.

Every hyperparameter is in the tutorial's notation (``lr`` is the tutorial's η, ``beta`` the
tutorial's β, ...).  ``native_kwargs`` turns that into the exact keyword arguments of the
framework's built-in optimizer, passing *every* argument explicitly so that a change
of library defaults cannot change what we run.  What native cannot express exactly
is written next to the mapping as ``RESIDUAL``: it is a real framework difference,
shown by ``python -m bench.parity``, not a bug to chase.

This module imports neither framework.
"""
from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any


@dataclass(frozen=True)
class Method:
    """One of the tutorial's six methods."""

    name: str
    rule: str  # update rule family: sgd | momentum | rmsprop | adam
    batch_size: int | None  # the method's own batch; None = the whole training set
    formula: str


METHODS: dict[str, Method] = {
    m.name: m
    for m in (
        Method("bgd", "sgd", None, "θ ← θ − η∇J(θ)  (whole training set per step)"),
        Method("sgd", "sgd", 1, "θ ← θ − η∇J(θ; xᵢ, yᵢ)  (one sample per step)"),
        Method("minibatch", "sgd", 32, "θ ← θ − η∇J(θ; B)"),
        Method("momentum", "momentum", 32, "v ← βv + (1−β)∇J;  θ ← θ − ηv"),
        Method("rmsprop", "rmsprop", 32, "s ← βs + (1−β)(∇J)²;  θ ← θ − η∇J/(√s + ε)"),
        Method(
            "adam",
            "adam",
            32,
            "m ← β₁m + (1−β₁)g; v ← β₂v + (1−β₂)g²; θ ← θ − η m̂/(√v̂ + ε)",
        ),
    )
}

# Hyperparameters each rule needs (all must be present in conf/optimizer/<name>.yaml).
REQUIRED_HPARAMS: dict[str, tuple[str, ...]] = {
    "sgd": ("lr",),
    "momentum": ("lr", "beta"),
    "rmsprop": ("lr", "beta", "eps"),
    "adam": ("lr", "beta1", "beta2", "eps"),
}

# What native cannot match exactly, per rule and framework ("" = exact match).
RESIDUAL: dict[tuple[str, str], str] = {
    ("sgd", "torch"): "",
    ("sgd", "tensorflow"): "",
    ("momentum", "torch"): "",  # the tutorial's EMA momentum == torch momentum with lr·(1−β)
    ("momentum", "tensorflow"): "",  # Keras velocity = −lr·(torch buffer): same iterates
    ("rmsprop", "torch"): "",  # torch: θ −= lr·g/(√s + ε), the tutorial's form
    ("rmsprop", "tensorflow"): "Keras puts ε inside the root: θ −= lr·g/√(s + ε)",
    ("adam", "torch"): "",  # torch: θ −= lr·m̂/(√v̂ + ε), the tutorial's form
    ("adam", "tensorflow"): "Keras uses ε-hat: θ −= lr·m̂/(√v̂ + ε/√(1−β₂ᵗ)); larger ε early on",
    ("sgd", "jax"): "",
    ("momentum", "jax"): "",  # optax trace b ← g + βb is torch's buffer: lr·(1−β) again
    ("rmsprop", "jax"): "",  # optax's default eps_in_sqrt=True is Keras' form; eps_in_sqrt=False is the tutorial's
    # optax: θ −= lr·m̂/(√(v̂ + eps_root) + ε), the tutorial's form with eps_root=0. Its 1 − βᵗ is taken
    # in float32 (1.3e-5 off at t = 1 for β = 0.999): rounding, but 10x the reference's after 50 steps.
    ("adam", "jax"): "",
}


def native_kwargs(rule: str, framework: str, hp: Mapping[str, Any]) -> tuple[str, dict[str, Any]]:
    """Return (class name, keyword arguments) of the native optimizer for ``rule``.

    torch classes live in ``torch.optim``, TensorFlow ones in ``keras.optimizers``, JAX ones
    are ``optax`` functions.
    """
    lr = float(hp["lr"])
    if framework == "torch":
        if rule == "sgd":
            return "SGD", dict(lr=lr, momentum=0.0, dampening=0.0, weight_decay=0.0, nesterov=False)
        if rule == "momentum":
            beta = float(hp["beta"])
            # Seed: v ← βv + (1−β)g, θ −= ηv.  torch: b ← βb + g, θ −= lr·b, so v = (1−β)b.
            return "SGD", dict(
                lr=lr * (1.0 - beta), momentum=beta, dampening=0.0, weight_decay=0.0, nesterov=False
            )
        if rule == "rmsprop":
            return "RMSprop", dict(
                lr=lr, alpha=float(hp["beta"]), eps=float(hp["eps"]),
                weight_decay=0.0, momentum=0.0, centered=False,
            )
        if rule == "adam":
            return "Adam", dict(
                lr=lr, betas=(float(hp["beta1"]), float(hp["beta2"])), eps=float(hp["eps"]),
                weight_decay=0.0, amsgrad=False,
            )
    elif framework == "tensorflow":
        if rule == "sgd":
            return "SGD", dict(learning_rate=lr, momentum=0.0, nesterov=False)
        if rule == "momentum":
            beta = float(hp["beta"])
            # Keras: u ← βu − lr·g, θ += u.  Same iterates as torch with the same lr.
            # Keras insists on a float momentum.
            return "SGD", dict(learning_rate=lr * (1.0 - beta), momentum=float(beta), nesterov=False)
        if rule == "rmsprop":
            return "RMSprop", dict(
                learning_rate=lr, rho=float(hp["beta"]), epsilon=float(hp["eps"]),
                momentum=0.0, centered=False,
            )
        if rule == "adam":
            return "Adam", dict(
                learning_rate=lr, beta_1=float(hp["beta1"]), beta_2=float(hp["beta2"]),
                epsilon=float(hp["eps"]), amsgrad=False,
            )
    elif framework == "jax":
        if rule == "sgd":
            return "sgd", dict(learning_rate=lr, momentum=None, nesterov=False, accumulator_dtype=None)
        if rule == "momentum":
            beta = float(hp["beta"])
            # optax: b ← g + βb, θ −= lr·b (not an EMA), so the tutorial's η becomes lr = η(1−β).
            return "sgd", dict(learning_rate=lr * (1.0 - beta), momentum=beta, nesterov=False,
                               accumulator_dtype=None)
        if rule == "rmsprop":
            return "rmsprop", dict(
                learning_rate=lr, decay=float(hp["beta"]), eps=float(hp["eps"]), initial_scale=0.0,
                eps_in_sqrt=False, centered=False, momentum=None, nesterov=False, bias_correction=False,
            )
        if rule == "adam":
            return "adam", dict(
                learning_rate=lr, b1=float(hp["beta1"]), b2=float(hp["beta2"]), eps=float(hp["eps"]),
                eps_root=0.0, mu_dtype=None, nesterov=False,
            )
    raise ValueError(f"no native mapping for rule={rule!r} framework={framework!r}")

"""The tutorial's update rules as an optax ``GradientTransformation`` (``optimizer.impl=reference``).

The same formulas, operations and order as ``bench/frameworks/torch/reference.py`` (see there),
so the three frameworks differ only by float32 rounding. optax's convention is kept: ``update``
returns the step to add (θ ← θ + u, via ``optax.apply_updates``), so each rule returns
−(the tutorial's subtrahend), computed exactly as the torch twin computes the subtrahend.

Imported only inside a JAX child process.
"""
from __future__ import annotations

import math
from collections.abc import Mapping
from typing import Any, NamedTuple

import jax
import jax.numpy as jnp
import optax

from bench.optimizers import REQUIRED_HPARAMS

_SLOTS = {"sgd": (), "momentum": ("v",), "rmsprop": ("s",), "adam": ("m", "v")}


class ReferenceState(NamedTuple):
    t: jax.Array  # step counter (int32), t of the formulas after the update
    slots: dict[str, Any]  # slot name -> a pytree of zeros shaped like the parameters


def reference(rule: str, hp: Mapping[str, Any]) -> optax.GradientTransformation:
    """One transformation for the four rule families; ``hp`` uses the tutorial's names (lr, beta, ...)."""
    if rule not in REQUIRED_HPARAMS:
        raise ValueError(f"unknown rule {rule!r}; expected one of {', '.join(REQUIRED_HPARAMS)}")
    p = {key: float(hp[key]) for key in REQUIRED_HPARAMS[rule]}
    lr = p["lr"]

    def init(params: Any) -> ReferenceState:
        zeros = {name: jax.tree.map(jnp.zeros_like, params) for name in _SLOTS[rule]}
        return ReferenceState(t=jnp.zeros((), jnp.int32), slots=zeros)

    def update(grads: Any, state: ReferenceState, params: Any = None) -> tuple[Any, ReferenceState]:
        del params
        t = state.t + 1
        s = state.slots
        if rule == "sgd":
            return jax.tree.map(lambda g: -(lr * g), grads), ReferenceState(t, s)
        if rule == "momentum":
            beta = p["beta"]
            v = jax.tree.map(lambda v, g: v * beta + (1.0 - beta) * g, s["v"], grads)
            return jax.tree.map(lambda v: -(lr * v), v), ReferenceState(t, {"v": v})
        if rule == "rmsprop":
            beta, eps = p["beta"], p["eps"]
            sq = jax.tree.map(lambda s, g: s * beta + (1.0 - beta) * (g * g), s["s"], grads)
            step = jax.tree.map(lambda g, s: -(lr * g / (jnp.sqrt(s) + eps)), grads, sq)
            return step, ReferenceState(t, {"s": sq})
        b1, b2, eps = p["beta1"], p["beta2"], p["eps"]
        m = jax.tree.map(lambda m, g: m * b1 + (1.0 - b1) * g, s["m"], grads)
        v = jax.tree.map(lambda v, g: v * b2 + (1.0 - b2) * (g * g), s["v"], grads)
        dtype = jax.tree.leaves(grads)[0].dtype  # float32 in training, float64 on the toy paths
        c1, c2 = _one_minus_pow(b1, t, dtype), _one_minus_pow(b2, t, dtype)
        step = jax.tree.map(lambda m, v: -(lr * (m / c1) / (jnp.sqrt(v / c2) + eps)), m, v)
        return step, ReferenceState(t, {"m": m, "v": v})

    return optax.GradientTransformation(init, update)


def _one_minus_pow(beta: float, t: jax.Array, dtype: Any) -> jax.Array:
    """1 − βᵗ in ``dtype``; in float32 within a few ulp of torch's float64-then-float32 value.

    JAX computes in float32 unless x64 is on (a process-wide switch left alone here), and
    float32 ``1 − β**t`` loses digits: float32(0.999) is off by 1.3e-8, so 1 − βᵗ at t = 1 would be
    off by 1.3e-5 relative. −expm1(t·ln β) with ln β rounded from float64 keeps full precision.
    """
    return -jnp.expm1(t.astype(dtype) * jnp.asarray(math.log(beta), dtype))

"""Any rule of ``bench.optimizers`` as an optax ``GradientTransformation`` (``optimizer.impl=reference``).

A thin, functional adapter: the rule (written once, in ``bench/optimizers.py``) computes the step to
subtract and the new slots per leaf; optax's convention is kept, ``update`` returns −step for
``optax.apply_updates`` to add, which rounds exactly as torch's ``p.sub_(step)``.
Imported only inside a JAX child process.
"""
from __future__ import annotations

import math
from collections.abc import Mapping
from typing import Any, NamedTuple

import jax
import jax.numpy as jnp
import optax

from bench.optimizers import Rule


class ReferenceState(NamedTuple):
    t: jax.Array  # step counter (int32), t of the formulas after the update
    slots: dict[str, Any]  # slot name -> a pytree of zeros shaped like the parameters


class JaxStep:
    def __init__(self, t: jax.Array, dtype: Any) -> None:
        self.t, self.dtype = t, dtype

    def one_minus_pow(self, beta: float) -> jax.Array:
        """1 − βᵗ in ``dtype``; in float32 within a few ulp of torch's float64-then-float32 value.

        JAX computes in float32 unless x64 is on (a process-wide switch left alone here), and
        float32 ``1 − β**t`` loses digits: float32(0.999) is off by 1.3e-8, so 1 − βᵗ at t = 1 would
        be off by 1.3e-5 relative. −expm1(t·ln β) with ln β rounded from float64 keeps full precision.
        """
        return -jnp.expm1(self.t.astype(self.dtype) * jnp.asarray(math.log(beta), self.dtype))


def reference(rule: Rule, hp: Mapping[str, Any]) -> optax.GradientTransformation:
    """``rule`` on every leaf; ``hp`` uses the tutorial's names (lr, beta, ...)."""
    values = {key: float(hp[key]) for key in rule.hparams}

    def init(params: Any) -> ReferenceState:
        zeros = {name: jax.tree.map(jnp.zeros_like, params) for name in rule.slots}
        return ReferenceState(t=jnp.zeros((), jnp.int32), slots=zeros)

    def update(grads: Any, state: ReferenceState, params: Any = None) -> tuple[Any, ReferenceState]:
        if params is None:
            raise ValueError("the reference optimizer needs params: call update(grads, state, params)")
        t = state.t + 1
        g_leaves, tree = jax.tree.flatten(grads)
        p_leaves = tree.flatten_up_to(params)
        slot_leaves = {name: tree.flatten_up_to(state.slots[name]) for name in rule.slots}
        step = JaxStep(t, g_leaves[0].dtype)  # float32 in training, float64 on the toy paths
        updates, new_slots = [], {name: [] for name in rule.slots}
        for k, (p, g) in enumerate(zip(p_leaves, g_leaves)):
            delta, new = rule.update(p, g, {name: slot_leaves[name][k] for name in rule.slots}, step, values)
            updates.append(-delta)
            for name in rule.slots:
                new_slots[name].append(new[name])
        slots = {name: tree.unflatten(leaves) for name, leaves in new_slots.items()}
        return tree.unflatten(updates), ReferenceState(t, slots)

    return optax.GradientTransformation(init, update)

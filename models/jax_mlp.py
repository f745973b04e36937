"""The MLP in JAX: pure functions of a parameter dict in the canonical layout of ``models.init``
([in, out] kernels), so loading and exporting the shared weights is a dict copy.
Imported only inside a JAX child process.
"""
from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np
import optax

from models.init import LAYERS, PARAM_NAMES

Params = dict[str, jax.Array]


def load_shared(weights: dict[str, np.ndarray], device: jax.Device) -> Params:
    return {name: jax.device_put(np.asarray(weights[name], np.float32), device) for name in PARAM_NAMES}


def native_init(seed: int, device: jax.Device) -> Params:
    """JAX has no layer library of its own; this is flax's Dense default (LeCun-normal kernel,
    zero bias), drawn from ``jax.random.key(seed)``."""
    keys = jax.random.split(jax.random.key(seed), len(LAYERS))
    out: Params = {}
    for i, ((fan_in, fan_out), key) in enumerate(zip(LAYERS, keys), start=1):
        out[f"w{i}"] = jax.nn.initializers.lecun_normal()(key, (fan_in, fan_out), jnp.float32)
        out[f"b{i}"] = jnp.zeros((fan_out,), jnp.float32)
    return jax.device_put(out, device)


def forward(params: Params, x: jax.Array) -> jax.Array:
    """Logits: Dense(128, relu) -> Dense(10)."""
    h = jax.nn.relu(x @ params["w1"] + params["b1"])
    return h @ params["w2"] + params["b2"]


def loss_fn(params: Params, x: jax.Array, y: jax.Array) -> jax.Array:
    """Mean softmax cross-entropy from logits, as torch's ``cross_entropy`` and Keras compute it."""
    return optax.softmax_cross_entropy_with_integer_labels(forward(params, x), y).mean()


def export_shared(params: Params) -> dict[str, np.ndarray]:
    return {name: np.array(params[name]) for name in PARAM_NAMES}

"""Any layer list in JAX: pure functions of a parameter dict in the canonical layout
(NHWC activations, HWIO conv kernels via ``lax.conv_general_dilated``, [in, out] dense kernels),
so loading and exporting the shared weights is a dict copy. Imported only inside a JAX child process.
"""
from __future__ import annotations

from collections.abc import Callable

import jax
import jax.numpy as jnp
import numpy as np
import optax
from jax import lax

from models.layers import INPUT_SHAPE, Model

Params = dict[str, jax.Array]


def load_shared(weights: dict[str, np.ndarray], device: jax.Device, dtype: type = np.float32) -> Params:
    return {name: jax.device_put(np.asarray(w, dtype), device) for name, w in weights.items()}


def native_init(model: Model, seed: int, device: jax.Device, dtype: type = np.float32) -> Params:
    """JAX has no layer library of its own; this is flax's default (LeCun-normal kernel, zero
    bias) for dense and conv layers alike, drawn from ``jax.random.key(seed)``."""
    params = model.params
    keys = jax.random.split(jax.random.key(seed), len(params) // 2)
    out: Params = {}
    for key, kernel, bias in zip(keys, params[::2], params[1::2]):
        out[kernel.name] = jax.nn.initializers.lecun_normal()(key, kernel.shape, dtype)
        out[bias.name] = jnp.zeros(bias.shape, dtype)
    return jax.device_put(out, device)


def make_forward(model: Model) -> Callable[[Params, jax.Array], jax.Array]:
    """``forward(params, x)``: logits of flat 784-value rows ``x``."""
    def forward(params: Params, x: jax.Array) -> jax.Array:
        if model.image_input:
            x = x.reshape((x.shape[0], *INPUT_SHAPE))
        k = 0
        for layer in model.layers:
            if layer.type == "dense":
                k += 1
                x = x @ params[f"w{k}"] + params[f"b{k}"]
            elif layer.type == "conv2d":
                k += 1
                stride = layer["stride"]
                x = lax.conv_general_dilated(x, params[f"w{k}"], (stride, stride), layer["padding"].upper(),
                                             dimension_numbers=("NHWC", "HWIO", "NHWC")) + params[f"b{k}"]
            elif layer.type == "maxpool2d":
                size, stride = layer["size"], layer["stride"]
                x = lax.reduce_window(x, -jnp.inf, lax.max, (1, size, size, 1), (1, stride, stride, 1), "VALID")
            elif layer.type == "flatten":
                x = x.reshape((x.shape[0], -1))
            elif layer.type == "relu":
                x = jax.nn.relu(x)
            else:
                x = jnp.tanh(x)
        return x
    return forward


def make_loss(model: Model) -> Callable[[Params, jax.Array, jax.Array], jax.Array]:
    """Mean softmax cross-entropy from logits, as torch's ``cross_entropy`` and Keras compute it."""
    forward = make_forward(model)

    def loss_fn(params: Params, x: jax.Array, y: jax.Array) -> jax.Array:
        return optax.softmax_cross_entropy_with_integer_labels(forward(params, x), y).mean()
    return loss_fn


def export_shared(params: Params) -> dict[str, np.ndarray]:
    return {name: np.array(w) for name, w in params.items()}

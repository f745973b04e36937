"""One forward and backward pass of a layer list, for ``bench.perf layers=true`` (JAX child only).

The same pure functions as the runner (``models.jax_model``), flax's default start; the pass is
``jax.value_and_grad`` of ``sum(output * g)`` for a fixed random ``g`` with respect to every
parameter, one jitted call (in either mode: a scan over one call would time XLA's loop, not the layers).
"""
from __future__ import annotations

from collections.abc import Callable
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np

from models import jax_model
from models.layers import INPUT_SHAPE, Model


def prefix_pass(spec: dict[str, Any], model: Model, batch: int) -> Callable[[], None]:
    if spec["precision"] == "fp64":
        jax.config.update("jax_enable_x64", True)
    dtype = np.float64 if spec["precision"] == "fp64" else np.float32
    device = jax.devices("gpu" if spec["device"] == "cuda" else "cpu")[0]
    rng = np.random.default_rng(int(spec["seed"]))
    x = jax.device_put(rng.standard_normal((batch, int(np.prod(INPUT_SHAPE)))).astype(dtype), device)
    if model.layers:
        params = jax_model.native_init(model, int(spec["seed"]), device, dtype)
        forward = jax_model.make_forward(model)
        out_shape = model.layers[-1].out_shape
    else:  # no layers: one scalar weight, what every pass pays (the call, the dispatch) and nothing else
        params = {"s": jax.device_put(np.ones((), dtype), device)}
        out_shape = x.shape[1:]

        def forward(p: dict[str, Any], xb: jax.Array) -> jax.Array:
            return xb * p["s"]
    g = jax.device_put(rng.standard_normal((batch, *out_shape)).astype(dtype), device)
    # the value too: without it XLA drops a last linear layer's forward, which its weight gradient
    # does not need (the training step's loss always needs it)
    value_and_grad = jax.jit(jax.value_and_grad(lambda p, xb, gb: jnp.sum(forward(p, xb) * gb)))

    def one_pass() -> None:
        jax.block_until_ready(value_and_grad(params, x, g))

    return one_pass

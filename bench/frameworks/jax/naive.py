"""The tutorial's loop written the way JAX's own MNIST examples write it, kept as the baseline
that ``bench.perf`` measures against: the data stay numpy on the host, each batch is shuffled,
scaled and handed to a jitted optax step (Adam 1e-3), one Python call per batch.
Imported only inside a JAX child process.
"""
from __future__ import annotations

import time

import jax
import numpy as np
import optax

from models import jax_model
from models.init import initial_weights
from models.layers import Model


def epoch_times(images: np.ndarray, labels: np.ndarray, batch_size: int, epochs: int,
                model: Model) -> list[tuple[float, float]]:
    """(wall, process CPU) seconds per epoch; a first epoch (compiling the step shapes) is run
    and dropped as the warm-up. The clock is read after the last step's result is ready."""
    device = jax.devices()[0]
    params = jax_model.load_shared(initial_weights(0, model), device)
    loss_fn = jax_model.make_loss(model)
    tx = optax.adam(1e-3)
    opt_state = tx.init(params)

    @jax.jit
    def update(params, opt_state, x, y):
        loss, grads = jax.value_and_grad(loss_fn)(params, x, y)
        updates, opt_state = tx.update(grads, opt_state, params)
        return optax.apply_updates(params, updates), opt_state, loss

    rng = np.random.default_rng(0)
    flat = images.reshape(len(images), -1)
    times = []
    for _ in range(epochs + 1):
        t0, c0 = time.perf_counter(), time.process_time()
        perm = rng.permutation(len(labels))
        for start in range(0, len(perm), batch_size):
            idx = perm[start:start + batch_size]
            x = flat[idx].astype(np.float32) / 255.0
            params, opt_state, loss = update(params, opt_state, x, labels[idx].astype(np.int32))
        jax.block_until_ready(loss)
        times.append((time.perf_counter() - t0, time.process_time() - c0))
    return times[1:]

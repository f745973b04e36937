"""Initial weights drawn once in numpy, loaded into both frameworks' models.

Canonical layout is Keras' ([in, out] kernels); the torch model transposes on load.
The distribution is torch's default for nn.Linear (U(±1/√fan_in) for weight and bias),
drawn here so that the start does not depend on which framework draws it.
"""
from __future__ import annotations

import numpy as np

LAYERS = ((784, 128), (128, 10))  # the tutorial's MLP: Dense(128, relu) -> Dense(10)
PARAM_NAMES = ("w1", "b1", "w2", "b2")


def initial_weights(seed: int) -> dict[str, np.ndarray]:
    """float32 weights {w1 [784,128], b1 [128], w2 [128,10], b2 [10]} from ``seed``."""
    rng = np.random.default_rng([int(seed), 0x1417])
    out: dict[str, np.ndarray] = {}
    for i, (fan_in, fan_out) in enumerate(LAYERS, start=1):
        bound = 1.0 / np.sqrt(fan_in)
        out[f"w{i}"] = rng.uniform(-bound, bound, (fan_in, fan_out)).astype(np.float32)
        out[f"b{i}"] = rng.uniform(-bound, bound, (fan_out,)).astype(np.float32)
    return out

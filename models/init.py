"""Initial weights drawn once in numpy, loaded into every framework's model.

The distribution is torch's default for its layers (U(±1/√fan_in) for kernels and biases, fan_in
= inputs of a dense unit, kernel² × input channels of a conv filter), drawn here so that the start
does not depend on which framework draws it. Layout: the canonical one of ``models.layers``
([in, out] dense kernels, HWIO conv kernels); each framework's builder converts on load.
"""
from __future__ import annotations

import numpy as np

from models.layers import Model


def initial_weights(seed: int, model: Model) -> dict[str, np.ndarray]:
    """float32 weights {w1, b1, w2, b2, ...} of ``model`` from ``seed``, in layer order.

    For the tutorial's MLP these are the draws optbench has always made, so its runs are unchanged.
    """
    rng = np.random.default_rng([int(seed), 0x1417])
    out: dict[str, np.ndarray] = {}
    for p in model.params:
        bound = 1.0 / np.sqrt(p.fan_in)
        out[p.name] = rng.uniform(-bound, bound, p.shape).astype(np.float32)
    return out

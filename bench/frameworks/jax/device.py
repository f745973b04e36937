"""What JAX sees of the machine, asked in a child process: versions, backend, the first device.

``python -m bench.frameworks.jax.device`` prints :func:`facts` as one JSON line (``make
gpu-check`` asks it to decide whether JAX's CUDA path can run here).
"""
from __future__ import annotations

import json
from typing import Any

import jax
import jaxlib
import optax


def facts() -> dict[str, Any]:
    """jax/jaxlib/optax versions, the default backend, and its first device."""
    device = jax.devices()[0]
    return {"jax": jax.__version__, "jaxlib": jaxlib.__version__, "optax": optax.__version__,
            "backend": jax.default_backend(), "device": device.device_kind}


if __name__ == "__main__":
    print(json.dumps(facts()), flush=True)

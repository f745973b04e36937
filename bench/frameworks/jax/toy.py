"""The toy paths in JAX: ``python -m bench.frameworks.jax.toy <job.json> <out.json>``.

Every method with optax's optimizer (native) and with the tutorial's formulas (the reference
transformation), on the problems ``bench.toy`` sends, in float64 (x64 is switched on for this
process only).
"""
from __future__ import annotations

import json
import sys
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from bench import frameworks

frameworks.get("jax").prepare_process()  # this module is the toy child's entry: before jax is imported

import jax  # noqa: E402

jax.config.update("jax_enable_x64", True)  # before any array exists: the paths are float64

import jax.numpy as jnp  # noqa: E402
import optax  # noqa: E402

from bench.frameworks.jax.runner import make_optimizer  # noqa: E402
from bench.toy import IMPLS, sampled_loss  # noqa: E402


def paths(job: Mapping[str, Any]) -> dict[str, Any]:
    """``{"version", "paths": {"<problem>|<method>|<impl>": [θ per step]}, "notes"}``."""
    out: dict[str, Any] = {"version": jax.__version__, "paths": {}, "notes": []}
    for prob in job["problems"]:
        samples = jnp.asarray(prob["samples"], jnp.float64)
        for method, hp in prob["hp"].items():
            for impl in IMPLS:
                tx = make_optimizer({"optimizer": {"name": method, "impl": impl, **hp}})
                loss = lambda t, idx, name=prob["name"], samples=samples: sampled_loss(  # noqa: E731
                    name, t, samples[idx], lambda v, *a: v.mean(*a))

                @jax.jit  # one program per optimizer and batch size
                def step(theta, state, idx, tx=tx, loss=loss):
                    updates, state = tx.update(jax.grad(loss)(theta, idx), state, theta)
                    return optax.apply_updates(theta, updates), state

                theta = jnp.asarray(prob["start"], jnp.float64)
                state = tx.init(theta)
                path = [theta.tolist()]
                for idx in prob["batches"][method]:
                    theta, state = step(theta, state, jnp.asarray(idx, jnp.int32))
                    path.append(theta.tolist())
                out["paths"][f"{prob['name']}|{method}|{impl}"] = path
    return out


if __name__ == "__main__":
    Path(sys.argv[2]).write_text(json.dumps(paths(json.loads(Path(sys.argv[1]).read_text()))))

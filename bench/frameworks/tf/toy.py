"""The toy paths in TensorFlow: ``python -m bench.frameworks.tf.toy <job.json> <out.json>``.

Every method with Keras' optimizer (native) and with the tutorial's formulas
(``ReferenceOptimizer``), on the problems ``bench.toy`` sends, in float64.
"""
from __future__ import annotations

import json
import sys
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import keras
import tensorflow as tf

from bench.frameworks.tf.reference import ReferenceOptimizer
from bench.optimizers import METHODS, get_rule, native_kwargs
from bench.toy import IMPLS, sampled_loss


def paths(job: Mapping[str, Any]) -> dict[str, Any]:
    """``{"version", "paths": {"<problem>|<method>|<impl>": [θ per step]}, "notes"}``."""
    out: dict[str, Any] = {"version": tf.__version__, "paths": {}, "notes": []}
    for prob in job["problems"]:
        samples = tf.constant(prob["samples"], dtype=tf.float64)
        for method, hp in prob["hp"].items():
            rule = METHODS[method].rule
            for impl in IMPLS:
                theta = tf.Variable(prob["start"], dtype=tf.float64)
                if impl == "native":
                    cls, kwargs = native_kwargs(rule, "tensorflow", hp)
                    opt = getattr(keras.optimizers, cls)(**kwargs)
                else:
                    opt = ReferenceOptimizer(rule=get_rule(rule), hp=hp)
                opt.build([theta])

                @tf.function  # one graph per optimizer: eager Keras steps are slow
                def step(idx, opt=opt, theta=theta, name=prob["name"], samples=samples):
                    with tf.GradientTape() as tape:
                        loss = sampled_loss(name, theta, tf.gather(samples, idx), lambda t, *a: tf.reduce_mean(t, *a))
                    opt.apply_gradients([(tape.gradient(loss, theta), theta)])

                path = [theta.numpy().tolist()]
                for idx in prob["batches"][method]:
                    step(tf.constant(idx, dtype=tf.int32))
                    path.append(theta.numpy().tolist())
                out["paths"][f"{prob['name']}|{method}|{impl}"] = path
    return out


if __name__ == "__main__":
    Path(sys.argv[2]).write_text(json.dumps(paths(json.loads(Path(sys.argv[1]).read_text()))))

"""One forward and backward pass of a layer list, for ``bench.perf layers=true`` (TensorFlow child only).

The same Keras layers, threads and determinism as the runner (:func:`bench.frameworks.tf.runner.configure`);
the pass is the gradient of ``sum(output * g)`` for a fixed random ``g`` with respect to every
variable, traced once as a ``tf.function`` (with XLA when ``framework.jit_compile`` is on), as the
runner's own step is in either mode.
"""
from __future__ import annotations

from collections.abc import Callable
from typing import Any

import tensorflow as tf

from bench.frameworks.tf.runner import configure
from models import tf_model
from models.layers import INPUT_SHAPE, Model


def prefix_pass(spec: dict[str, Any], model: Model, batch: int) -> Callable[[], None]:
    configure(spec)
    import keras

    dtype = tf.float64 if spec["precision"] == "fp64" else tf.float32
    with tf.device("/GPU:0" if spec["device"] == "cuda" else "/CPU:0"):
        keras.utils.set_random_seed(spec["seed"])
        x = tf.random.normal((batch, INPUT_SHAPE[0] * INPUT_SHAPE[1] * INPUT_SHAPE[2]), dtype=dtype)
        if model.layers:
            net = tf_model.build(model)
            g = tf.random.normal(net(x).shape, dtype=dtype)
            variables = net.trainable_variables
        else:  # no layers: one scalar weight, what every pass pays (the call, the tape) and nothing else
            scale = tf.Variable(tf.ones((), dtype=dtype))
            g = tf.random.normal(x.shape, dtype=dtype)
            variables = [scale]

            def net(inputs: tf.Tensor, training: bool = True) -> tf.Tensor:
                return inputs * scale

    @tf.function(jit_compile=bool(spec["framework"].get("jit_compile", False)))
    def forward_backward():
        with tf.GradientTape() as tape:
            out = tf.reduce_sum(net(x, training=True) * g)
        return out, tape.gradient(out, variables)  # the value too, or the last layer's forward may be pruned

    def one_pass() -> None:
        out, _ = forward_backward()
        out.numpy()  # waits for the device, as the runner's loss read does

    return one_pass

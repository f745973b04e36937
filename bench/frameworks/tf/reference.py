"""The tutorial's update rules, written as a Keras ``Optimizer`` (``optimizer.impl=reference``).

The same formulas, operations and order as ``bench/frameworks/torch/reference.py`` (see there), so the
two frameworks differ only by float32 rounding. Keras' own machinery is used: ``build()``
creates the slot variables, ``apply_gradients`` calls :meth:`update_step` inside the
runner's ``tf.function`` (per step, or a whole epoch with mode=compiled), and
``self.iterations`` is the step counter t − 1.

Imported only inside a TensorFlow child process.
"""
from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import keras
import tensorflow as tf

from bench.optimizers import REQUIRED_HPARAMS

_SLOTS = {"sgd": (), "momentum": ("v",), "rmsprop": ("s",), "adam": ("m", "v")}


class ReferenceOptimizer(keras.optimizers.Optimizer):
    """One optimizer for the four rule families; ``hp`` uses the tutorial's names (lr, beta, ...)."""

    def __init__(self, rule: str, hp: Mapping[str, Any], name: str = "reference", **kwargs: Any) -> None:
        if rule not in REQUIRED_HPARAMS:
            raise ValueError(f"unknown rule {rule!r}; expected one of {', '.join(REQUIRED_HPARAMS)}")
        values = {key: float(hp[key]) for key in REQUIRED_HPARAMS[rule]}
        super().__init__(learning_rate=values["lr"], name=name, **kwargs)  # Keras: must come first
        self.rule = rule
        self.hp = values

    def build(self, var_list: list[Any]) -> None:
        if self.built:
            return
        super().build(var_list)
        names = _SLOTS[self.rule]
        slots = self.add_optimizer_variables(var_list, list(names)) if names else ()
        self._slots = dict(zip(names, slots))  # slot name -> one zero variable per model variable

    def _slot(self, name: str, variable: Any) -> Any:
        return self._slots[name][self._get_variable_index(variable)]

    def update_step(self, gradient: Any, variable: Any, learning_rate: Any) -> None:
        # Constants are Python floats, rounded to float32 once, as torch does with its scalars.
        lr = tf.cast(learning_rate, variable.dtype)
        g = tf.cast(gradient, variable.dtype)
        hp = self.hp
        if self.rule == "sgd":
            self.assign_sub(variable, lr * g)
        elif self.rule == "momentum":
            v = self._slot("v", variable)
            self.assign(v, v * hp["beta"] + (1.0 - hp["beta"]) * g)
            self.assign_sub(variable, lr * v)
        elif self.rule == "rmsprop":
            s = self._slot("s", variable)
            self.assign(s, s * hp["beta"] + (1.0 - hp["beta"]) * (g * g))
            self.assign_sub(variable, lr * g / (tf.sqrt(s) + hp["eps"]))
        else:  # adam
            b1, b2 = hp["beta1"], hp["beta2"]
            m, v = self._slot("m", variable), self._slot("v", variable)
            # 1 − βᵗ in float64, then float32: the same rounding as torch's Python-float scalars.
            t = tf.cast(self.iterations + 1, tf.float64)
            c1 = tf.cast(1.0 - tf.pow(tf.constant(b1, tf.float64), t), variable.dtype)
            c2 = tf.cast(1.0 - tf.pow(tf.constant(b2, tf.float64), t), variable.dtype)
            self.assign(m, m * b1 + (1.0 - b1) * g)
            self.assign(v, v * b2 + (1.0 - b2) * (g * g))
            m_hat = m / c1
            v_hat = v / c2
            self.assign_sub(variable, lr * m_hat / (tf.sqrt(v_hat) + hp["eps"]))

    def get_config(self) -> dict[str, Any]:
        config = super().get_config()
        config.update(rule=self.rule, hp=dict(self.hp))
        config.pop("learning_rate", None)  # carried in hp["lr"]
        return config

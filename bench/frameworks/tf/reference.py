"""Any rule of ``bench.optimizers`` as a Keras ``Optimizer`` (``optimizer.impl=reference``).

A thin adapter: the rule (written once, in ``bench/optimizers.py``) computes the step to subtract
and the new slots; this class ``assign``s them. Keras' own machinery is used: ``build()`` creates
the slot variables, ``apply_gradients`` calls :meth:`update_step` inside the runner's
``tf.function`` (per step, or a whole epoch with mode=compiled), and ``self.iterations`` is the
step counter t − 1. Imported only inside a TensorFlow child process.
"""
from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import keras
import tensorflow as tf

from bench.optimizers import Rule, get_rule


class TFStep:
    def __init__(self, iterations: Any, dtype: Any) -> None:
        self.t = tf.cast(iterations + 1, tf.float64)
        self.dtype = dtype

    def one_minus_pow(self, beta: float) -> tf.Tensor:
        # 1 − βᵗ in float64, then float32: the same rounding as torch's float64 counter.
        return tf.cast(1.0 - tf.pow(tf.constant(beta, tf.float64), self.t), self.dtype)


class ReferenceOptimizer(keras.optimizers.Optimizer):
    """``rule`` on every variable; ``hp`` uses the tutorial's names (lr, beta, ...)."""

    def __init__(self, rule: Rule, hp: Mapping[str, Any], name: str = "reference", **kwargs: Any) -> None:
        values = {key: float(hp[key]) for key in rule.hparams}
        super().__init__(learning_rate=values["lr"], name=name, **kwargs)  # Keras: must come first
        self.rule = rule
        self.hp = values

    def build(self, var_list: list[Any]) -> None:
        if self.built:
            return
        super().build(var_list)
        names = self.rule.slots
        slots = self.add_optimizer_variables(var_list, list(names)) if names else ()
        self._slots = dict(zip(names, slots))  # slot name -> one zero variable per model variable

    def update_step(self, gradient: Any, variable: Any, learning_rate: Any) -> None:
        g = tf.cast(gradient, variable.dtype)
        index = self._get_variable_index(variable)
        slots = {name: self._slots[name][index] for name in self.rule.slots}
        delta, new = self.rule.update(variable, g, slots, TFStep(self.iterations, variable.dtype), self.hp)
        for name, value in new.items():
            self.assign(slots[name], value)
        self.assign_sub(variable, delta)

    def get_config(self) -> dict[str, Any]:
        config = super().get_config()
        config.update(rule=self.rule.name, hp=dict(self.hp))
        config.pop("learning_rate", None)  # carried in hp["lr"]
        return config

    @classmethod
    def from_config(cls, config: dict[str, Any], custom_objects: Any = None) -> ReferenceOptimizer:
        config = dict(config)
        return cls(rule=get_rule(config.pop("rule")), hp=config.pop("hp"), **config)

"""Exact arithmetic for ``bench.parity``: the MLP trained in float64 numpy, step for step.

The yardstick for float32 rounding: the same start, the same batches and the formula a
framework is meant to compute (the tutorial's, or Keras' native variant), without rounding.
"""
from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np

from bench.optimizers import REQUIRED_HPARAMS, RESIDUAL
from models.init import PARAM_NAMES


def expected_form(rule: str, framework: str, impl: str) -> str:
    """Which update formula a framework's optimizer computes: the tutorial's, or Keras' native one."""
    return "keras" if impl == "native" and RESIDUAL.get((rule, framework)) else "tutorial"


def _grads64(p: Mapping[str, np.ndarray], x: np.ndarray, y: np.ndarray) -> dict[str, np.ndarray]:
    """Gradients of the mean softmax cross-entropy of the MLP, by hand, in float64."""
    h = x @ p["w1"] + p["b1"]
    a = np.maximum(h, 0.0)
    z = a @ p["w2"] + p["b2"]
    e = np.exp(z - z.max(axis=1, keepdims=True))
    dz = e / e.sum(axis=1, keepdims=True)
    dz[np.arange(len(y)), y] -= 1.0
    dz /= len(y)
    dh = (dz @ p["w2"].T) * (h > 0)  # ReLU passes no gradient at 0, as in both frameworks
    return {"w1": x.T @ dh, "b1": dh.sum(axis=0), "w2": a.T @ dz, "b2": dz.sum(axis=0)}


def update_float64(rule: str, form: str, hp: Mapping[str, float], theta: np.ndarray, g: np.ndarray,
              state: dict[str, np.ndarray], t: int) -> np.ndarray:
    """One step of the tutorial's formula (form="tutorial") or of Keras' native variant (form="keras")."""
    lr = hp["lr"]
    if rule == "sgd":
        return theta - lr * g
    if rule == "momentum":  # Keras' u ← βu − lr(1−β)g is this same recursion, scaled by −lr
        state["v"] = hp["beta"] * state.get("v", 0.0) + (1 - hp["beta"]) * g
        return theta - lr * state["v"]
    if rule == "rmsprop":
        s = state["s"] = hp["beta"] * state.get("s", 0.0) + (1 - hp["beta"]) * g * g
        denom = np.sqrt(s + hp["eps"]) if form == "keras" else np.sqrt(s) + hp["eps"]
        return theta - lr * g / denom
    b1, b2 = hp["beta1"], hp["beta2"]
    m = state["m"] = b1 * state.get("m", 0.0) + (1 - b1) * g
    v = state["v"] = b2 * state.get("v", 0.0) + (1 - b2) * g * g
    eps = hp["eps"] / math.sqrt(1 - b2**t) if form == "keras" else hp["eps"]  # Keras' ε-hat
    return theta - lr * (m / (1 - b1**t)) / (np.sqrt(v / (1 - b2**t)) + eps)


def float64_trajectory(start: Mapping[str, np.ndarray], x: np.ndarray, y: np.ndarray,
                       batches: Sequence[np.ndarray], rule: str, hp: Mapping[str, Any], form: str,
                       save: Sequence[int]) -> dict[str, np.ndarray]:
    """Train the MLP in float64 numpy on ``batches``; parameters at the steps in ``save`` (0 = start).

    ``x`` are the float32 pixels both frameworks see; the result is what exact arithmetic gives
    for the same formula, start and batches: the yardstick for float32 rounding.
    """
    hp = {k: float(hp[k]) for k in REQUIRED_HPARAMS[rule]}
    theta = {name: np.asarray(start[name], np.float64) for name in PARAM_NAMES}
    state: dict[str, dict[str, np.ndarray]] = {name: {} for name in PARAM_NAMES}
    snaps = {name: [theta[name]] for name in PARAM_NAMES}
    wanted = set(save)
    for t, idx in enumerate(batches, 1):
        grads = _grads64(theta, x[idx].astype(np.float64), y[idx])
        theta = {name: update_float64(rule, form, hp, theta[name], grads[name], state[name], t) for name in PARAM_NAMES}
        if t in wanted:
            for name in PARAM_NAMES:
                snaps[name].append(theta[name])
    return {name: np.stack(ws) for name, ws in snaps.items()}

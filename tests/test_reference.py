"""Each optimizer, reference and native, against a float64 numpy version of its formula.

A small problem with a known gradient, g = a·θ + c, trained by the framework's own machinery
(autograd / GradientTape; TensorFlow both per step and inside one tf.function loop). One
subprocess per framework runs every case; numpy here writes the tutorial's formulas plainly.
Coordinates with a = 0 and a tiny c make ε's placement visible (RMSProp: √s ≈ ε; Adam: √v̂ ≈ ε-hat).
"""
from __future__ import annotations

import json
import math

import numpy as np
import pytest
from conftest import run_python

from bench.optimizers import METHODS, RESIDUAL, NumpyStep, computed_rule, get_rule
from bench.spec import FRAMEWORKS

# Every case trains in child processes; one xdist worker runs them all (one fixture run).
pytestmark = [pytest.mark.slow, pytest.mark.xdist_group("reference")]

STEPS = 20
HP = {
    "minibatch": {"lr": 0.05},
    "momentum": {"lr": 0.1, "beta": 0.9},
    "rmsprop": {"lr": 0.01, "beta": 0.9, "eps": 1e-8},
    "adam": {"lr": 0.01, "beta1": 0.9, "beta2": 0.999, "eps": 1e-8},
}
# Errors relative to the distance moved. float32 against float64 over 20 steps measured at most
# 7.5e-6 (Keras' native Adam, which rounds its step size differently); the wrong ε placement
# measured at least 9.5e-2.
MATCH = 3e-5
MISMATCH = 1e-2


def _problem() -> dict[str, list]:
    rng = np.random.default_rng(7)
    a = rng.uniform(0.5, 2.0, (4, 3))
    c = rng.uniform(0.5, 1.0, (4, 3))
    a[3] = 0.0
    c[3] = (1e-4, 1e-6, 0.0)  # constant tiny gradients, and one that is exactly zero
    theta = [np.ones((4, 3)), rng.uniform(-1, 1, 3)]
    ab, cb = rng.uniform(0.5, 2.0, 3), np.array([-3e-5, 0.7, 1e-6])
    ab[[0, 2]] = 0.0
    # float32 values throughout, so numpy starts from exactly what the frameworks hold
    f32 = lambda x: np.asarray(x, np.float32).tolist()  # noqa: E731
    return {"theta": [f32(t) for t in theta], "a": [f32(a), f32(ab)], "c": [f32(c), f32(cb)]}


PROBLEM = _problem()


def numpy_run(name: str, form: str) -> list[np.ndarray]:
    """The tutorial's formula (form="tutorial") or Keras' native variant (form="keras"), in float64."""
    hp = HP[name]
    rule = METHODS[name].rule
    theta = [np.array(t, np.float64) for t in PROBLEM["theta"]]
    a = [np.array(x, np.float64) for x in PROBLEM["a"]]
    c = [np.array(x, np.float64) for x in PROBLEM["c"]]
    m = [np.zeros_like(t) for t in theta]
    v = [np.zeros_like(t) for t in theta]
    for t in range(1, STEPS + 1):
        for i in range(len(theta)):
            g = a[i] * theta[i] + c[i]
            if rule == "sgd":
                theta[i] = theta[i] - hp["lr"] * g
            elif rule == "momentum":
                v[i] = hp["beta"] * v[i] + (1 - hp["beta"]) * g
                theta[i] = theta[i] - hp["lr"] * v[i]
            elif rule == "rmsprop":
                v[i] = hp["beta"] * v[i] + (1 - hp["beta"]) * g**2
                root = np.sqrt(v[i] + hp["eps"]) if form == "keras" else np.sqrt(v[i]) + hp["eps"]
                theta[i] = theta[i] - hp["lr"] * g / root
            else:
                b1, b2 = hp["beta1"], hp["beta2"]
                m[i] = b1 * m[i] + (1 - b1) * g
                v[i] = b2 * v[i] + (1 - b2) * g**2
                eps = hp["eps"] / math.sqrt(1 - b2**t) if form == "keras" else hp["eps"]
                theta[i] = theta[i] - hp["lr"] * (m[i] / (1 - b1**t)) / (np.sqrt(v[i] / (1 - b2**t)) + eps)
    return theta


def error(got: list, want: list[np.ndarray]) -> float:
    """Largest error of a tensor, relative to how far that tensor moved from the start."""
    out = 0.0
    for g, w, start in zip(got, want, PROBLEM["theta"]):
        moved = np.max(np.abs(w - np.asarray(start, np.float64)))
        out = max(out, float(np.max(np.abs(np.asarray(g, np.float64) - w)) / moved))
    return out


CASES = [(name, impl) for impl in ("reference", "native") for name in HP]

_PREAMBLE = f"""
import json
import numpy as np
P = json.loads({json.dumps(PROBLEM)!r})
HP = {HP!r}
CASES = {CASES!r}
STEPS = {STEPS}
def spec(name, impl):
    return {{"optimizer": {{"name": name, "impl": impl, **HP[name]}}, "mode": "eager", "device": "cpu"}}
out = {{}}
"""

TORCH = _PREAMBLE + """
import torch
from bench.frameworks.torch.runner import make_optimizer
a = [torch.tensor(x) for x in P["a"]]
c = [torch.tensor(x) for x in P["c"]]
for name, impl in CASES:
    theta = [torch.tensor(t, requires_grad=True) for t in P["theta"]]
    opt = make_optimizer(theta, spec(name, impl))
    for _ in range(STEPS):
        opt.zero_grad()
        sum((0.5 * ai * t * t + ci * t).sum() for ai, ci, t in zip(a, c, theta)).backward()
        opt.step()
    out[f"{name}/{impl}/eager"] = [t.detach().numpy().tolist() for t in theta]
print(json.dumps(out))
"""

TENSORFLOW = _PREAMBLE + """
import tensorflow as tf
from tensorflow.python.framework import config as tf_config
from bench.frameworks.tf.runner import configure, make_optimizer
configure({"threads": 1, "device": "cpu", "precision": "fp32", "deterministic": True})
out["tf32"] = tf.config.experimental.tensor_float_32_execution_enabled()
out["op_determinism"] = tf_config.is_op_determinism_enabled()
a = [tf.constant(x) for x in P["a"]]
c = [tf.constant(x) for x in P["c"]]
for name, impl in CASES:
    for mode in ("eager", "compiled"):
        theta = [tf.Variable(t) for t in P["theta"]]
        opt = make_optimizer(spec(name, impl))
        opt.build(theta)

        def step():
            with tf.GradientTape() as tape:
                loss = tf.add_n([tf.reduce_sum(0.5 * ai * t * t + ci * t) for ai, ci, t in zip(a, c, theta)])
            opt.apply_gradients(zip(tape.gradient(loss, theta), theta))

        if mode == "eager":  # the runner's mode=eager: one tf.function call per step
            one = tf.function(step)
            for _ in range(STEPS):
                one()
        else:  # mode=compiled: every step inside one tf.function loop (spelled out: no AutoGraph for -c code)
            @tf.function(autograph=False)
            def many(n):
                def body(k):
                    step()
                    return (k + 1,)
                tf.while_loop(lambda k: k < n, body, (tf.constant(0),))
            many(tf.constant(STEPS))
        out[f"{name}/{impl}/{mode}"] = [t.numpy().tolist() for t in theta]
print(json.dumps(out))
"""


JAX = _PREAMBLE + """
import jax
import jax.numpy as jnp
import optax
from bench.frameworks.jax.runner import make_optimizer
a = [jnp.asarray(x) for x in P["a"]]
c = [jnp.asarray(x) for x in P["c"]]
loss = lambda th: sum((0.5 * ai * t * t + ci * t).sum() for ai, ci, t in zip(a, c, th))
for name, impl in CASES:
    tx = make_optimizer(spec(name, impl))

    def step(carry, _):
        th, st = carry
        u, st = tx.update(jax.grad(loss)(th), st, th)
        return (optax.apply_updates(th, u), st), None

    start = [jnp.asarray(t) for t in P["theta"]]
    one = jax.jit(lambda c: step(c, None)[0])  # mode=eager: one program per step
    carry = (start, tx.init(start))
    for _ in range(STEPS):
        carry = one(carry)
    out[f"{name}/{impl}/eager"] = [np.asarray(t).tolist() for t in carry[0]]
    many = jax.jit(lambda c: jax.lax.scan(step, c, None, length=STEPS)[0])  # mode=compiled
    out[f"{name}/{impl}/compiled"] = [np.asarray(t).tolist() for t in many((start, tx.init(start)))[0]]
print(json.dumps(out))
"""


@pytest.fixture(scope="module")
def trained() -> dict[str, dict]:
    """Every case in each framework, one subprocess per framework."""
    out = {}
    for framework, code in (("torch", TORCH), ("tensorflow", TENSORFLOW), ("jax", JAX)):
        proc = run_python(code, timeout=300)
        assert proc.returncode == 0, proc.stderr[-3000:]
        out[framework] = json.loads(proc.stdout.strip().splitlines()[-1])
    return out


@pytest.mark.parametrize("framework", FRAMEWORKS)
@pytest.mark.parametrize("name", list(HP))
def test_reference_optimizer_is_the_tutorial_formula(trained: dict, framework: str, name: str) -> None:
    want = numpy_run(name, "tutorial")
    for key, got in trained[framework].items():
        if key.startswith(f"{name}/reference/"):
            assert error(got, want) < MATCH, (key, error(got, want))


@pytest.mark.parametrize("framework", FRAMEWORKS)
@pytest.mark.parametrize("name", list(HP))
def test_native_optimizer_computes_the_formula_the_table_says(trained: dict, framework: str, name: str) -> None:
    """Where RESIDUAL names a difference, numpy with that ε placement reproduces the framework."""
    residual = RESIDUAL[(METHODS[name].rule, framework)]
    tutorial, keras = numpy_run(name, "tutorial"), numpy_run(name, "keras")
    for key, got in trained[framework].items():
        if key.startswith(f"{name}/native/"):
            if residual:
                assert error(got, keras) < MATCH, (key, error(got, keras))
                assert error(got, tutorial) > MISMATCH, (key, error(got, tutorial))
            else:
                assert error(got, tutorial) < MATCH, (key, error(got, tutorial))


def test_tensorflow_runner_configures_fp32_and_op_determinism(trained: dict) -> None:
    assert trained["tensorflow"]["tf32"] is False
    assert trained["tensorflow"]["op_determinism"] is True


@pytest.mark.parametrize("name", list(HP))
def test_parity_float64_update_is_the_same_formula(name: str) -> None:
    """bench.parity's float64 yardstick (the rule written once, as ``computed_rule`` picks it for
    the reference and for Keras' native optimizer) agrees with the formulas above."""
    a = [np.array(x, np.float64) for x in PROBLEM["a"]]
    c = [np.array(x, np.float64) for x in PROBLEM["c"]]
    for form, impl in (("tutorial", "reference"), ("keras", "native")):
        rule = get_rule(computed_rule(METHODS[name].rule, "tensorflow", impl))
        theta = [np.array(t, np.float64) for t in PROBLEM["theta"]]
        states = [{slot: np.zeros_like(th) for slot in rule.slots} for th in theta]
        for t in range(1, STEPS + 1):
            steps = [rule.update(th, ai * th + ci, st, NumpyStep(t), HP[name])
                     for th, ai, ci, st in zip(theta, a, c, states)]
            theta = [th - delta for th, (delta, _) in zip(theta, steps)]
            states = [st for _, st in steps]
        for got, want in zip(theta, numpy_run(name, form)):
            np.testing.assert_allclose(got, want, rtol=1e-12, atol=1e-15)

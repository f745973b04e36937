"""``bench.parity.exact``: the float64 numpy reference, layer by layer.

Gradients against central finite differences on small random models that use every layer type
(dense, relu, tanh, flatten, conv2d with same and valid padding, odd and even kernels, stride 2,
maxpool2d 2/2 and 3/2), the conv and pool forward passes against plain loops, max-pool ties on
real digits, and the tutorial's MLP against the hand-derived formulas ``exact`` used before models
were data. numpy only: no framework is imported here, and one case runs ``bench.parity.compare`` on a LeNet-5
job with stand-in framework results.
"""
from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from conftest import ROOT, compose_config

from bench.data import as_float, load_dataset
from bench.optimizers import NumpyStep, computed_rule, get_rule
from bench.parity.compare import COLUMNS, compare, nudged, result_rows, verdict
from bench.parity.exact import (
    _forward,
    conv2d_forward,
    first_kink,
    float64_trajectory,
    loss_and_grads,
    maxpool2d_forward,
    pads,
)
from bench.parity.run import batch_plan, job_data, job_model, make_job, result_name
from bench.parity.section import report_section
from bench.results import write_csv
from bench.spec import conf_group
from models.init import initial_weights
from models.layers import Model, parse_model


def _model(input_shape: tuple[int, int, int], *layers: dict) -> Model:
    return parse_model({"name": "t", "layers": list(layers)}, input_shape)


def conv(filters: int, kernel: int, stride: int = 1, padding: str = "valid") -> dict:
    return {"type": "conv2d", "filters": filters, "kernel": kernel, "stride": stride, "padding": padding}


def pool(size: int, stride: int | None = None) -> dict:
    return {"type": "maxpool2d", "size": size, "stride": stride}


def dense(units: int) -> dict:
    return {"type": "dense", "units": units}


RELU, TANH, FLATTEN = {"type": "relu"}, {"type": "tanh"}, {"type": "flatten"}

# Small models that between them have every layer type and option; the last layer is the logits.
MODELS = {
    # same padding with an odd and an even kernel, a 3x3/2 pool (overlapping windows), a stride-2
    # valid conv that leaves the last row and column unread, a 2x2 pool, tanh and relu
    "convnet": _model((12, 12, 2), conv(3, 3, padding="same"), RELU, conv(4, 2, padding="same"), TANH,
                      pool(3, 2), conv(3, 2, stride=2), RELU, pool(2), FLATTEN, dense(6), TANH, dense(10)),
    # a stride-2 conv first (one input channel), flattened in H, W, C order straight into the logits
    "conv_flatten": _model((7, 9, 1), conv(3, 3, stride=2), TANH, FLATTEN, dense(10)),
    # a pool before any parameter, a 4x4 same kernel on a non-square image
    "pool_first": _model((8, 10, 1), pool(2), conv(2, 4, padding="same"), RELU, FLATTEN, dense(10)),
    # dense only: flatten, relu, tanh
    "mlp": _model((4, 4, 1), FLATTEN, dense(7), RELU, dense(5), TANH, dense(10)),
}


def _params(model: Model, seed: int = 0) -> dict[str, np.ndarray]:
    """float64 parameters of ``model``, large enough that no activation is near-linear or saturated."""
    rng = np.random.default_rng(seed)
    return {p.name: rng.normal(0, 1.5 / np.sqrt(p.fan_in), p.shape) for p in model.params}


def _batch(model: Model, n: int = 5, seed: int = 1) -> tuple[np.ndarray, np.ndarray]:
    rng = np.random.default_rng(seed)
    return rng.uniform(-1, 1, (n, *model.layers[0].in_shape)), rng.integers(0, 10, n)


def test_the_models_cover_every_layer_type_and_option() -> None:
    layers = [layer for m in MODELS.values() for layer in m.layers]
    assert {layer.type for layer in layers} == {"dense", "relu", "tanh", "flatten", "conv2d", "maxpool2d"}
    convs = {(layer["kernel"] % 2, layer["stride"], layer["padding"]) for layer in layers if layer.type == "conv2d"}
    assert {(1, 1, "same"), (0, 1, "same"), (0, 2, "valid"), (1, 2, "valid")} <= convs
    pools = {(layer["size"], layer["stride"]) for layer in layers if layer.type == "maxpool2d"}
    assert {(2, 2), (3, 2)} <= pools


@pytest.mark.parametrize("name", list(MODELS))
def test_gradients_match_central_finite_differences(name: str) -> None:
    model = MODELS[name]
    params = _params(model)
    x, y = _batch(model)
    loss, grads = loss_and_grads(model, params, x, y)
    assert set(grads) == set(model.param_names)
    h = 1e-6
    for pname, w in params.items():
        fd = np.empty_like(w)
        for i in np.ndindex(w.shape):
            keep = w[i]
            w[i] = keep + h
            up = loss_and_grads(model, params, x, y)[0]
            w[i] = keep - h
            down = loss_and_grads(model, params, x, y)[0]
            w[i] = keep
            fd[i] = (up - down) / (2 * h)
        assert grads[pname].shape == w.shape
        np.testing.assert_allclose(grads[pname], fd, rtol=1e-5, atol=1e-9, err_msg=f"{name} {pname}")
        assert np.abs(fd).max() > 1e-4, (name, pname)  # the check is not vacuous: every tensor learns
    assert np.isclose(loss, loss_and_grads(model, params, x, y)[0])


def test_loss_is_the_mean_softmax_cross_entropy() -> None:
    model = MODELS["mlp"]
    params = _params(model)
    x, y = _batch(model, n=7)
    a = x.reshape(7, -1)
    hidden = np.tanh(np.maximum(a @ params["w1"] + params["b1"], 0) @ params["w2"] + params["b2"])
    z = hidden @ params["w3"] + params["b3"]
    p = np.exp(z) / np.exp(z).sum(axis=1, keepdims=True)
    assert loss_and_grads(model, params, x, y)[0] == pytest.approx(-np.mean(np.log(p[np.arange(7), y])), rel=1e-14)


def _naive_conv(x: np.ndarray, w: np.ndarray, b: np.ndarray, stride: int, padding: str) -> np.ndarray:
    n, h, wd, c = x.shape
    k, _, _, o = w.shape
    lo = (k - 1) // 2 if padding == "same" else 0
    hi = k - 1 - lo if padding == "same" else 0
    xp = np.zeros((n, h + lo + hi, wd + lo + hi, c))
    xp[:, lo:lo + h, lo:lo + wd] = x
    ho, wo = (xp.shape[1] - k) // stride + 1, (xp.shape[2] - k) // stride + 1
    out = np.zeros((n, ho, wo, o))
    for b_ in range(n):
        for i in range(ho):
            for j in range(wo):
                for f in range(o):
                    total = b[f]
                    for di in range(k):
                        for dj in range(k):
                            for ch in range(c):
                                total += xp[b_, i * stride + di, j * stride + dj, ch] * w[di, dj, ch, f]
                    out[b_, i, j, f] = total
    return out


@pytest.mark.parametrize("kernel, stride, padding", [
    (1, 1, "valid"), (3, 1, "valid"), (3, 2, "valid"), (2, 3, "valid"), (4, 2, "valid"),
    (1, 1, "same"), (2, 1, "same"), (3, 1, "same"), (4, 1, "same"), (5, 1, "same"),
])
def test_conv_forward_matches_a_plain_loop(kernel: int, stride: int, padding: str) -> None:
    rng = np.random.default_rng(kernel * 10 + stride)
    x, w, b = rng.normal(size=(2, 6, 7, 3)), rng.normal(size=(kernel, kernel, 3, 4)), rng.normal(size=4)
    layer = _model((6, 7, 3), conv(4, kernel, stride, padding), FLATTEN, dense(10)).layers[0]
    got, _ = conv2d_forward(x, w, b, stride, pads(layer))
    want = _naive_conv(x, w, b, stride, padding)
    assert got.shape == want.shape == (2, *layer.out_shape)  # the shape models.layers works out
    np.testing.assert_allclose(got, want, rtol=1e-12, atol=1e-12)


@pytest.mark.parametrize("size, stride", [(2, 2), (3, 2), (2, 1), (3, 3)])
def test_maxpool_forward_matches_a_plain_loop(size: int, stride: int) -> None:
    x = np.random.default_rng(size).normal(size=(2, 7, 8, 3))
    got, arg = maxpool2d_forward(x, size, stride)
    ho, wo = (7 - size) // stride + 1, (8 - size) // stride + 1
    assert got.shape == (2, ho, wo, 3)
    for n, i, j, c in np.ndindex(got.shape):
        window = x[n, i * stride:i * stride + size, j * stride:j * stride + size, c]
        assert got[n, i, j, c] == window.max() and arg[n, i, j, c] == window.argmax()


def test_maxpool_ties_go_to_the_first_maximum_or_to_the_last() -> None:
    x = np.array([[1.0, 3.0], [3.0, 0.0]]).reshape(1, 2, 2, 1)
    assert maxpool2d_forward(x, 2, 2)[1].item() == 1  # row-major first, as torch on the CPU
    assert maxpool2d_forward(x, 2, 2, ties="last")[1].item() == 2


def test_maxpool_ties_on_real_digits_change_no_gradient_beyond_rounding() -> None:
    """MNIST's background is exact zeros: a conv over it gives its bias everywhere, so most pool
    windows of LeNet-5 hold tied maxima. The tied elements have identical inputs, so which one gets
    the gradient (torch: the first; XLA/TensorFlow may pick another) moves no parameter's gradient
    by more than float64 rounding."""
    data = load_dataset(conf_group("data", "mnist_embedded"), log=lambda msg: None)
    model = parse_model(conf_group("model", "lenet5"))
    params = {k: v.astype(np.float64) for k, v in initial_weights(0, model).items()}
    x, y = as_float(data.x_train[:64]).astype(np.float64), data.y_train[:64]
    _, first = loss_and_grads(model, params, x, y, ties="first")
    _, last = loss_and_grads(model, params, x, y, ties="last")
    for name in model.param_names:
        np.testing.assert_allclose(last[name], first[name], rtol=0, atol=1e-14 * np.abs(first[name]).max())
    # and the ties are real: a quarter or more of the first pool's windows hold two equal positive maxima
    a = np.maximum(conv2d_forward(x.reshape(-1, 28, 28, 1), params["w1"], params["b1"], 1, (2, 2))[0], 0)
    win = a.reshape(64, 14, 2, 14, 2, 6).transpose(0, 1, 3, 5, 2, 4).reshape(64, 14, 14, 6, 4)
    top = win.max(axis=-1)
    assert np.mean(((win == top[..., None]).sum(axis=-1) > 1) & (top > 0)) > 0.1


def test_random_float_inputs_have_no_ties() -> None:
    model = MODELS["convnet"]
    params = _params(model)
    x, y = _batch(model, n=16)
    first, last = loss_and_grads(model, params, x, y)[1], loss_and_grads(model, params, x, y, ties="last")[1]
    assert all(np.array_equal(first[k], last[k]) for k in first)


def test_chunked_batches_give_the_same_gradients() -> None:
    model = MODELS["convnet"]
    params = _params(model)
    x, y = _batch(model, n=23)
    loss, whole = loss_and_grads(model, params, x, y)
    loss_c, chunked = loss_and_grads(model, params, x, y, chunk_bytes=1)  # one sample per chunk
    assert loss_c == pytest.approx(loss, rel=1e-13)
    for k in whole:
        np.testing.assert_allclose(chunked[k], whole[k], rtol=1e-12, atol=1e-15)


def _old_mlp_grads(p: dict, x: np.ndarray, y: np.ndarray) -> dict:
    """The hand-derived gradients of the tutorial's MLP that bench.parity.exact had before models were data."""
    h = x @ p["w1"] + p["b1"]
    a = np.maximum(h, 0.0)
    z = a @ p["w2"] + p["b2"]
    e = np.exp(z - z.max(axis=1, keepdims=True))
    dz = e / e.sum(axis=1, keepdims=True)
    dz[np.arange(len(y)), y] -= 1.0
    dz /= len(y)
    dh = (dz @ p["w2"].T) * (h > 0)
    return {"w1": x.T @ dh, "b1": dh.sum(axis=0), "w2": a.T @ dz, "b2": dz.sum(axis=0)}


@pytest.mark.parametrize("rule, batch", [("adam", 32), ("adam_eps_hat", 32), ("momentum", 1), ("sgd", 1500)])
def test_mlp_trajectory_is_exactly_the_old_hand_derived_one(rule: str, batch: int) -> None:
    model = parse_model(conf_group("model", "mlp"))
    rng = np.random.default_rng(3)
    pixels = rng.integers(0, 256, (1500, 784)) * (rng.random((1500, 784)) < 0.3)  # mostly background
    x, y = (pixels / 255.0).astype(np.float32), rng.integers(0, 10, 1500)
    batches = [rng.permutation(1500)[:batch] for _ in range(6)]
    hp = {"lr": 0.01, "beta": 0.9, "beta1": 0.9, "beta2": 0.999, "eps": 1e-8}
    start = initial_weights(0, model)
    got = float64_trajectory(start, x, y, batches, rule, hp, [0, 1, 4, 6], model)

    update = get_rule(rule)
    theta = {k: w.astype(np.float64) for k, w in start.items()}
    state = {k: {slot: np.zeros_like(w) for slot in update.slots} for k, w in theta.items()}
    want = {k: [w] for k, w in theta.items()}
    for t, idx in enumerate(batches, 1):
        grads = _old_mlp_grads(theta, x[idx].astype(np.float64), y[idx])
        for k in theta:
            delta, state[k] = update.update(theta[k], grads[k], state[k], NumpyStep(t), hp)
            theta[k] = theta[k] - delta
            if t in (1, 4, 6):
                want[k].append(theta[k])
    assert list(got) == ["w1", "b1", "w2", "b2"]
    for k in got:
        assert got[k].shape == (4, *start[k].shape)
        assert np.array_equal(got[k], np.stack(want[k])), k  # bit for bit


def test_lenet5_trajectory_learns_and_native_keras_adam_is_its_own_rule() -> None:
    model = parse_model(conf_group("model", "lenet5"))
    rng = np.random.default_rng(4)
    x, y = rng.random((64, 784)).astype(np.float32), rng.integers(0, 10, 64)
    batches = [np.arange(64)] * 5
    hp = {"lr": 1e-3, "beta1": 0.9, "beta2": 0.999, "eps": 1e-3}  # a large ε, so that ε-hat shows
    start = initial_weights(0, model)
    ref = float64_trajectory(start, x, y, batches, computed_rule("adam", "tensorflow", "reference"), hp, [5], model)
    keras = float64_trajectory(start, x, y, batches, computed_rule("adam", "tensorflow", "native"), hp, [5], model)
    assert set(ref) == set(model.param_names) and ref["w1"].shape == (2, 5, 5, 1, 6)
    loss = lambda p: loss_and_grads(model, p, x.astype(np.float64), y)[0]  # noqa: E731
    at = lambda run, i: {k: w[i] for k, w in run.items()}  # noqa: E731
    assert loss(at(ref, 1)) < loss(at(ref, 0)) - 0.01
    assert not np.allclose(ref["w1"][1], keras["w1"][1], rtol=1e-6, atol=0)


def test_exact_imports_no_framework() -> None:
    code = ("import sys, bench.parity.exact, bench.parity.compare; "
            "print(sorted(m for m in ('torch', 'tensorflow', 'jax', 'keras') if m in sys.modules))")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, cwd=ROOT, timeout=120,
                         env={"PYTHONPATH": str(ROOT), "PATH": "/usr/bin:/bin"})
    assert out.returncode == 0, out.stderr
    assert out.stdout.strip() == "[]"


def test_compare_measures_the_jobs_model_against_its_float64_run(tmp_path: Path) -> None:
    """``bench.parity.compare`` on a LeNet-5 job, with stand-in framework results (float64 runs of
    each framework's rule, rounded to float32): the model comes from the job's spec, each framework
    is within float32 rounding of its own rule, and Keras' native Adam is its own formula."""
    job = make_job("k", compose_config("model=lenet5", "optimizer=adam", "steps=3", "param_points=3",
                                       config_name="parity"))
    model, data = job_model(job), job_data(job)
    assert model.name == "lenet5" and result_name(job) == "adam-native-bs32-s0-lenet5-n3"
    opt = job["specs"]["torch"]["optimizer"]
    batches = batch_plan(0, data.n_train, job["batch_size"], job["steps"])
    start = initial_weights(0, model)
    result = {}
    for fw in job["specs"]:
        run = float64_trajectory(start, as_float(data.x_train), data.y_train, batches,
                                 computed_rule("adam", fw, "native"), opt, job["param_steps"], model)
        result[fw] = {"loss": np.full(3, 2.3), "param_steps": np.array(job["param_steps"]),
                      **{k: w.astype(np.float32) for k, w in run.items()}}
    rows = compare(job, result, data, ("torch", "tensorflow"))
    last = rows[-1]
    assert last["param_torch_vs_f64"] < 1e-6 and last["param_tf_vs_f64"] < 1e-6, last
    assert last["param_forms_diff"] > 1e-4 and "differ by formula" in verdict(job, rows)
    assert f"of {model.n_params} weights" in verdict(job, rows)
    csv_rows = result_rows(job, rows)
    assert csv_rows[0]["model"] == "lenet5" and csv_rows[0]["n_params"] == model.n_params
    write_csv(tmp_path / "parity" / f"{result_name(job)}.csv", csv_rows, COLUMNS)
    section = report_section(tmp_path)
    assert section is not None and section.table["setup"][0].startswith("lenet5 · bs 32")
    assert "Native adam (torch–tensorflow, lenet5)" in section.text
    assert f"of {model.n_params} weights" in section.text


def test_the_nudged_start_is_one_float32_rounding_away() -> None:
    start = initial_weights(0, parse_model(conf_group("model", "mlp")))
    moved = nudged(start)
    for name, w in start.items():
        rel = np.abs(moved[name] / w.astype(np.float64) - 1)[w != 0]
        assert np.allclose(rel, 2.0**-24) and moved[name].dtype == np.float64
    moved = nudged(start, precision="fp64")  # a float64 check: one float64 rounding
    for name, w in start.items():
        rel = np.abs(moved[name] / w.astype(np.float64) - 1)[w != 0]
        assert np.all(rel < 2.0**-50) and np.any(rel > 0)


def test_sensitivity_tells_chaos_from_a_framework_gap() -> None:
    """With sensitivity=true, a gap that float64 itself reaches from a start one rounding away is said to be
    rounding's reach, not a framework difference; a gap far above it stays a difference."""
    job = make_job("k", compose_config("optimizer=adam", "steps=2", "sensitivity=true", config_name="parity"))
    base = {"param_max_rel_diff": 0.0, "params_over_bound": 0, "param_forms_diff": 0.0,
            "param_torch_vs_f64": 0.0, "param_tf_vs_f64": 0.0}
    wide = {**base, "param_max_rel_diff": 0.3, "params_over_bound": 50_000, "param_tf_vs_f64": 0.3}
    assert job["sensitivity"] is True
    assert "as rounding allows" in verdict(job, [base, {**wide, "param_f64_ulp_start": 0.2}])
    assert "DIFFER beyond rounding" in verdict(job, [base, {**wide, "param_f64_ulp_start": 1e-6}])
    assert "DIFFER beyond rounding" in verdict(job, [base, wide])  # not measured: no excuse


def test_first_kink_finds_the_decision_the_two_runs_take_apart() -> None:
    """A conv bias moved just past one ReLU input's kink: that step, that layer, that one decision."""
    model = MODELS["convnet"]
    rng = np.random.default_rng(3)
    x = rng.uniform(0, 1, (15, 12 * 12 * 2)).astype(np.float32)
    batches = [np.arange(0, 5), np.arange(5, 10), np.arange(10, 15)]
    start = initial_weights(0, model)
    ref = {name: np.stack([w.astype(np.float64)] * 4) for name, w in start.items()}  # after steps 0 to 3
    assert first_kink(model, ref, ref, [0, 1, 2, 3], x, batches) is None  # the same weights decide alike
    kinks: list = []
    _forward(model, {n: w[2] for n, w in ref.items()}, x[batches[2]].astype(np.float64).reshape(5, 12, 12, 2),
             "first", kinks)
    layer, _, z = kinks[0]
    assert layer == 1 and [k[0] for k in kinks] == [1, 4, 6, 7]  # the ReLUs and the max pools, in order
    e = np.unravel_index(np.argmin(np.abs(z[..., 0])), z[..., 0].shape)
    z_e = z[..., 0][e]
    run = {name: w.copy() for name, w in ref.items()}
    run["b1"][2, 0] -= z_e * (1 + 1e-6)  # the weights after step 2: channel 0's closest input crosses 0
    hit = first_kink(model, run, ref, [0, 1, 2, 3], x, batches)
    assert hit is not None and (hit["step"], hit["layer"], hit["count"]) == (3, 1, 1)
    assert hit["margin_ref"] == pytest.approx(z_e) and np.sign(hit["margin_run"]) == -np.sign(z_e)
    assert hit["scale"] == pytest.approx(np.abs(z).max())
    assert abs(hit["margin_run"]) < 1e-5 * abs(z_e) + 1e-15
    # a step whose weights were not saved is not judged
    assert first_kink(model, run, ref, [0, 1, 9, 3], x, batches) is None


def test_a_kink_rounding_tipped_is_said_not_called_a_difference() -> None:
    job = make_job("k", compose_config("optimizer=adam", "steps=3", config_name="parity"))
    base = {"param_max_rel_diff": 0.0, "params_over_bound": 0, "param_forms_diff": 0.0,
            "param_torch_vs_f64": 0.0, "param_tf_vs_f64": 0.0}
    wide = {**base, "param_max_rel_diff": 4e-3, "params_over_bound": 5_000, "param_tf_vs_f64": 4e-3}
    kink = {"kink_step": 2, "kink_framework": "tensorflow", "kink_layer": "relu at layer 3", "kink_decisions": 1,
            "kink_margin_f64": -4e-7, "kink_margin_fw": 1.6e-6, "kink_scale": 2.5, "kink_gap_before": 7e-4,
            "kink_over_before": 12}
    said = verdict(job, [base, base, {**base, "param_max_rel_diff": 7e-4}, {**wide, **kink}])
    assert said.startswith("agree until a kink: to float32 rounding (7.0e-04 apart, 12 weights beyond the bound) "
                           "until step 2, where tensorflow's")
    assert "input -4.0e-07 from float64's weights, 1.6e-06 from tensorflow's" in said
    pooled = verdict(job, [base, base, base, {**wide, **kink, "kink_layer": "maxpool2d at layer 3"}])
    assert "lead of the window's maximum -4.0e-07" in pooled
    # before the kink more weights apart than rounding's isolated steps: the kink does not explain the gap
    assert verdict(job, [base, base, base, {**wide, **kink, "kink_over_before": 5_000}]).startswith(
        "DIFFER beyond rounding")
    # a decision far from its kink is not one rounding tipped
    assert verdict(job, [base, base, base, {**wide, **kink, "kink_margin_f64": -0.1}]).startswith(
        "DIFFER beyond rounding")


def test_the_report_says_where_a_kink_parted_a_pair(tmp_path: Path) -> None:
    job = make_job("k", compose_config("optimizer=adam", "steps=3", config_name="parity"))
    base = {"param_max_rel_diff": 0.0, "params_over_bound": 0, "param_forms_diff": 0.0, "param_rel_to_moved": 0.0,
            "param_torch_vs_f64": 0.0, "param_tf_vs_f64": 0.0, "loss_rel_diff": 0.0}
    kink = {"kink_step": 2, "kink_framework": "tensorflow", "kink_layer": "relu at layer 3", "kink_decisions": 1,
            "kink_margin_f64": -4e-7, "kink_margin_fw": 1.6e-6, "kink_scale": 2.5, "kink_gap_before": 7e-5,
            "kink_over_before": 0}
    rows = [{**base, "step": k} for k in range(3)] + [
        {**base, "step": 3, "param_max_rel_diff": 4e-3, "params_over_bound": 5_000, "param_tf_vs_f64": 4e-3, **kink}]
    write_csv(tmp_path / "parity" / f"{result_name(job)}.csv", result_rows(job, rows), COLUMNS)
    section = report_section(tmp_path)
    assert section is not None and list(section.table["agree (≤1e-4)"]) == ["until a kink (step 2)"]
    assert "until step 2, where tensorflow's rounding put a ReLU input on the other side of zero" in section.text
    assert "look for a bug" not in section.text

"""Models as data: the layer lists are checked, counted and built the same way in every framework.

The checks without a framework run here; the builders run in one child process per framework
(frameworks never enter the pytest process), over every model in conf/model/.
"""
from __future__ import annotations

import json
import re
from pathlib import Path

import numpy as np
import pytest
from conftest import ROOT, run_cli, run_python
from helpers import assert_one_line_error, no_framework_env

from bench import frameworks
from bench.spec import conf_group
from models.init import initial_weights
from models.layers import ModelError, parse_model

MODELS = sorted(p.stem for p in (ROOT / "conf" / "model").glob("*.yaml"))


def model(name: str):
    return parse_model(conf_group("model", name))


def test_the_three_shipped_models_are_there() -> None:
    assert {"mlp", "mlp_deep", "lenet5"} <= set(MODELS)


def test_flops_per_sample_match_hand_counts() -> None:
    # mlp: 2 x (forward 784·128 + 128·10, weight grads the same, input grad of layer 2: 128·10)
    assert model("mlp").flops_per_sample() == 2 * (2 * (784 * 128 + 128 * 10) + 128 * 10) == 409_088
    # lenet5 multiply-adds: conv1 28·28·6·25·1, conv2 10·10·16·25·6, dense 400·120, 120·84, 84·10
    fwd = 28 * 28 * 6 * 25 + 10 * 10 * 16 * 25 * 6 + 400 * 120 + 120 * 84 + 84 * 10
    assert model("lenet5").flops_per_sample() == 2 * (2 * fwd + fwd - 28 * 28 * 6 * 25) == 2_263_920


def test_blocks_cut_the_list_at_each_layer() -> None:
    lenet = model("lenet5")
    assert lenet.blocks() == [(0, 1), *[(i, i + 1) for i in range(1, 12)]]
    assert model("mlp").blocks() == [(0, 2), (2, 3), (3, 4)]  # flatten has nothing to differentiate alone
    # each layer's share of a step: the first with parameters has no input gradient, the rest do
    # (3 × 2 × its MACs); layers without parameters count none
    assert [f for f in lenet.step_flops() if f] == [
        4 * 28 * 28 * 6 * 25, 6 * 10 * 10 * 16 * 150, 6 * 400 * 120, 6 * 120 * 84, 6 * 840]
    for name in MODELS:
        m = model(name)
        assert sum(m.step_flops()) == m.flops_per_sample()
        assert len(m.step_flops()) == len(m.layers) and m.blocks()[-1][1] == len(m.layers)
        assert [bool(f) for f in m.step_flops()] == [layer.has_params for layer in m.layers]
        assert [e for _, e in m.blocks()[:-1]] == [s for s, _ in m.blocks()[1:]]  # contiguous, in order
        assert m.layers[m.blocks()[0][1] - 1].has_params
        assert [sum(p.flops for p in g) for g in m.gemms(32)] == [32 * f for f in m.step_flops()]
    # the forward; the weight gradient, its stored input read transposed; the input gradient, the
    # [in, out] kernel read transposed (none for the first layer with parameters)
    assert lenet.gemms(32)[0] == [(32 * 28 * 28, 25, 6, False, False), (25, 32 * 28 * 28, 6, True, False)]
    assert lenet.gemms(32)[3] == [(3200, 150, 16, False, False), (150, 3200, 16, True, False),
                                  (3200, 16, 150, False, True)]


def test_shapes_and_parameters_follow_the_layer_list() -> None:
    lenet = model("lenet5")
    assert [layer.out_shape for layer in lenet.layers][:7] == [
        (28, 28, 6), (28, 28, 6), (14, 14, 6), (10, 10, 16), (10, 10, 16), (5, 5, 16), (400,)]
    assert [p.shape for p in lenet.params][:4] == [(5, 5, 1, 6), (6,), (5, 5, 6, 16), (16,)]
    assert lenet.n_params == 61_706 and lenet.image_input and lenet.flatten_after_image() == {7}
    mlp = model("mlp")
    assert mlp.param_names == ("w1", "b1", "w2", "b2") and not mlp.image_input


def test_the_tutorials_mlp_keeps_its_initial_weights() -> None:
    """The draws optbench made before models were data: same generator, same order, same shapes."""
    rng = np.random.default_rng([7, 0x1417])
    old = {}
    for i, (fan_in, fan_out) in enumerate(((784, 128), (128, 10)), start=1):
        bound = 1.0 / np.sqrt(fan_in)
        old[f"w{i}"] = rng.uniform(-bound, bound, (fan_in, fan_out)).astype(np.float32)
        old[f"b{i}"] = rng.uniform(-bound, bound, (fan_out,)).astype(np.float32)
    new = initial_weights(7, model("mlp"))
    assert list(new) == list(old) and all(np.array_equal(new[k], old[k]) for k in old)


@pytest.mark.parametrize("name", MODELS)
def test_initial_weights_are_seeded_and_bounded_by_fan_in(name: str) -> None:
    m = model(name)
    a, b, c = initial_weights(0, m), initial_weights(0, m), initial_weights(1, m)
    assert {k: v.shape for k, v in a.items()} == {p.name: p.shape for p in m.params}
    assert all(np.array_equal(a[k], b[k]) for k in a) and not np.array_equal(a["w1"], c["w1"])
    for p in m.params:
        assert np.abs(a[p.name]).max() <= 1 / np.sqrt(p.fan_in) and a[p.name].dtype == np.float32


@pytest.mark.parametrize("layers,needle", [
    ([{"type": "flatten"}, {"type": "dropout"}, {"type": "dense", "units": 10}], "layer type 'dropout'"),
    ([{"type": "dense", "units": 10}], "put a flatten before it"),
    ([{"type": "conv2d", "filters": 4, "kernel": 30}, {"type": "flatten"}, {"type": "dense", "units": 10}],
     "does not fit"),
    ([{"type": "flatten"}, {"type": "conv2d", "filters": 4, "kernel": 3}, {"type": "dense", "units": 10}],
     "needs an image input"),
    ([{"type": "flatten"}, {"type": "dense", "units": 12}], "the last layer must be dense with units 10"),
    ([{"type": "flatten"}, {"type": "dense"}], "dense needs units"),
    ([{"type": "flatten"}, {"type": "dense", "units": 10, "size": 2}], "unknown key 'size'"),
    ([{"type": "conv2d", "filters": 4, "kernel": 3, "padding": "full"}], "padding must be one of"),
    ([{"type": "conv2d", "filters": 4, "kernel": 3, "stride": 2, "padding": "same"}], "needs stride 1"),
    ([{"type": "flatten"}, {"type": "dense", "units": 0}], "units must be an integer >= 1"),
    ([], "non-empty list"),
])
def test_bad_layer_lists_are_one_line_errors(layers, needle: str) -> None:
    with pytest.raises(ModelError, match=None) as err:
        parse_model({"name": "bad", "layers": layers})
    assert needle in str(err.value) and "\n" not in str(err.value)


def test_a_bad_model_is_refused_before_any_framework_is_imported(tmp_path: Path) -> None:
    conf = tmp_path / "conf" / "model"
    conf.mkdir(parents=True)
    (conf / "wide.yaml").write_text("name: wide\nlayers:\n  - {type: dense, units: 10}\n")
    proc = run_cli(f"hydra.searchpath=[file://{tmp_path / 'conf'}]", "model=wide", "framework=torch",
                   f"results_dir={tmp_path / 'r'}", env=no_framework_env(tmp_path))
    assert_one_line_error(proc, "put a flatten before it")
    assert not (tmp_path / "r" / "runs").exists()


BUILD = r"""
import json, sys
import numpy as np
from bench import frameworks
from bench.spec import conf_group
from models.init import initial_weights
from models.layers import parse_model
fw, names, x_path = sys.argv[1], json.loads(sys.argv[2]), sys.argv[3]
x = np.load(x_path)
out = {}
for name in names:
    model = parse_model(conf_group("model", name))
    w = initial_weights(7, model)
    if fw == "torch":
        import torch
        from models import torch_model as b
        net = b.build(model); b.load_shared(net, w)
        with torch.no_grad():
            logits = net(torch.from_numpy(x)).numpy()
        back = b.export_shared(net)
    elif fw == "tensorflow":
        from models import tf_model as b
        net = b.build(model); b.load_shared(net, w)
        logits = np.asarray(net(x, training=False)); back = b.export_shared(net)
    else:
        import jax
        from models import jax_model as b
        params = b.load_shared(w, jax.devices("cpu")[0])
        logits = np.asarray(b.make_forward(model)(params, x)); back = b.export_shared(params)
    np.save(f"{x_path}.{fw}.{name}.npy", logits)
    out[name] = sorted(k for k in w if np.array_equal(back[k], w[k]))
print(json.dumps(out))
"""


@pytest.mark.slow
def test_every_model_computes_the_same_function_in_every_framework(tmp_path: Path) -> None:
    """Same numpy start, same logits: conv kernels converted (OIHW vs HWIO) and, for lenet5, the
    first dense layer's rows permuted (torch flattens C, H, W; the others H, W, C) — without that
    permutation torch's logits would differ from the others' by O(1)."""
    x = np.random.default_rng(0).random((32, 784), dtype=np.float32)
    np.save(tmp_path / "x.npy", x)
    for fw in frameworks.NAMES:
        proc = run_python(BUILD.replace("sys.argv[1]", repr(fw)).replace("sys.argv[2]", repr(json.dumps(MODELS)))
                          .replace("sys.argv[3]", repr(str(tmp_path / "x.npy"))), timeout=600)
        assert proc.returncode == 0, proc.stderr[-2000:]
        exported = json.loads(proc.stdout.strip().splitlines()[-1])
        for name in MODELS:  # export gives back exactly what was loaded, in the canonical layout
            assert exported[name] == sorted(initial_weights(7, model(name))), (fw, name)
    for name in MODELS:
        outs = {fw: np.load(tmp_path / f"x.npy.{fw}.{name}.npy") for fw in frameworks.NAMES}
        base = outs[frameworks.BASE]
        scale = np.abs(base).max()
        assert base.shape == (32, 10)
        for fw, logits in outs.items():
            assert np.abs(logits - base).max() / scale < 1e-5, (name, fw)


# ------------------------------------------------------------------ a model file given by its path
def test_a_model_file_given_by_path_is_read_and_checked_like_a_conf_model(tmp_path) -> None:
    """bench.perf and bench.scaling take a model file's path (they are not Hydra apps): block-style
    YAML as Hydra reads it, the file's name as the model's, one line for each thing wrong."""
    from bench.exits import BadInput
    from bench.spec import compose, model_group

    mine = tmp_path / "model" / "mine.yaml"
    mine.parent.mkdir()
    mine.write_text("name: mine\nlayers:\n  - type: flatten\n  - type: dense\n    units: 10\n")
    assert model_group(str(mine)) == {"name": "mine", "layers": [{"type": "flatten"}, {"type": "dense", "units": 10}]}
    assert compose("torch", "adam", "mnist_embedded", str(mine))["model"]["name"] == "mine"
    assert model_group("lenet5")["name"] == "lenet5"  # a name is still a conf/model/ file
    other = tmp_path / "model" / "other.yaml"
    for text, words in (("name: mine\nlayers: []\n", "calls its model 'mine'; write name: other"),
                        ("name: other\nlayers: [ {type: dense\n", "not valid YAML (line 3)"),
                        ("- just\n- a list\n", "a model file is a mapping")):
        other.write_text(text)
        with pytest.raises(BadInput, match=re.escape(words)):
            model_group(str(other))
    with pytest.raises(BadInput, match="cannot read it"):
        model_group(str(tmp_path / "nope.yaml"))

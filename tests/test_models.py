"""Both frameworks start from the identical point: the shared numpy weights load identically."""
from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from conftest import run_python

from models.init import initial_weights

TORCH = """
import numpy as np, torch
from models.init import initial_weights
from models.torch_mlp import MLP
m = MLP(); m.load_shared(initial_weights(7))
x = np.load(r'{x}')
with torch.no_grad():
    np.save(r'{out}', m(torch.from_numpy(x)).numpy())
back = m.export_shared()
assert all(np.array_equal(back[k], v) for k, v in initial_weights(7).items())
"""
TF = """
import numpy as np
from models.init import initial_weights
from models.tf_mlp import build_mlp, load_shared, export_shared
m = build_mlp(); load_shared(m, initial_weights(7))
x = np.load(r'{x}')
np.save(r'{out}', np.asarray(m(x, training=False)))
back = export_shared(m)
assert all(np.array_equal(back[k], v) for k, v in initial_weights(7).items())
"""


def _numpy_forward(w: dict[str, np.ndarray], x: np.ndarray) -> np.ndarray:
    h = np.maximum(x.astype(np.float64) @ w["w1"] + w["b1"], 0)
    return h @ w["w2"] + w["b2"]


def test_initial_weights_are_deterministic_and_seeded() -> None:
    a, b, c = initial_weights(0), initial_weights(0), initial_weights(1)
    assert {k: v.shape for k, v in a.items()} == {"w1": (784, 128), "b1": (128,), "w2": (128, 10), "b2": (10,)}
    assert all(np.array_equal(a[k], b[k]) for k in a)
    assert not np.array_equal(a["w1"], c["w1"])
    assert np.abs(a["w1"]).max() <= 1 / np.sqrt(784)


@pytest.mark.slow
def test_forward_pass_agrees_across_frameworks(tmp_path: Path) -> None:
    x = np.random.default_rng(0).random((64, 784), dtype=np.float32)
    np.save(tmp_path / "x.npy", x)
    for name, code in (("torch", TORCH), ("tf", TF)):
        proc = run_python(code.format(x=tmp_path / "x.npy", out=tmp_path / f"{name}.npy"))
        assert proc.returncode == 0, proc.stderr[-2000:]
    ref = _numpy_forward(initial_weights(7), x)
    torch_out, tf_out = np.load(tmp_path / "torch.npy"), np.load(tmp_path / "tf.npy")
    scale = np.abs(ref).max()
    assert np.abs(torch_out - ref).max() / scale < 1e-5
    assert np.abs(tf_out - ref).max() / scale < 1e-5
    assert np.abs(torch_out - tf_out).max() / scale < 1e-5

"""The tutorial's toy: numpy follows the tutorial's code, and every framework's optimizers follow numpy.

The framework paths come from child processes (``bench.toy.framework_paths``), so this
process imports neither framework.
"""
from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from conftest import run_cli

from bench import toy
from bench.optimizers import METHODS

QUADRATIC = toy.make_problems()[0]


def tutorial_code_path(method: str) -> list[float]:
    """The tutorial's own loops (full gradient 2x), transcribed."""
    x, v, s, m, path = 10.0, 0.0, 0.0, 0.0, [10.0]
    for t in range(1, 21):
        grad = 2 * x
        if method == "bgd":
            x = x - 0.1 * grad
        elif method == "momentum":
            v = 0.9 * v + 0.1 * grad
            x = x - 0.1 * v
        elif method == "rmsprop":
            s = 0.9 * s + 0.1 * grad**2
            x = x - 0.1 * grad / (np.sqrt(s) + 1e-8)
        else:
            m = 0.9 * m + 0.1 * grad
            v = 0.999 * v + 0.001 * grad**2
            x = x - 0.1 * (m / (1 - 0.9**t)) / (np.sqrt(v / (1 - 0.999**t)) + 1e-8)
        path.append(x)
    return path


@pytest.mark.parametrize("method", ["bgd", "momentum", "rmsprop", "adam"])
def test_numpy_full_batch_paths_are_the_tutorials(method: str) -> None:
    np.testing.assert_allclose(toy.numpy_path(QUADRATIC, method)[:, 0], tutorial_code_path(method), rtol=1e-12)


def test_sgd_and_minibatch_sample_for_real() -> None:
    assert abs(QUADRATIC.samples.mean()) < 1e-12 and QUADRATIC.samples.std() > 1
    sizes = {m: {len(b) for b in QUADRATIC.batches[m]} for m in METHODS}
    assert sizes["sgd"] == {1} and sizes["minibatch"] == {5} and sizes["bgd"] == {len(QUADRATIC.samples)}
    bgd, sgd, mini = (toy.numpy_path(QUADRATIC, m)[:, 0] for m in ("bgd", "sgd", "minibatch"))
    # Same η, so the noise alone separates the paths; a batch of 5 averages part of it away.
    assert np.abs(sgd - bgd).max() > np.abs(mini - bgd).max() > 0.05


@pytest.mark.slow
def test_framework_paths_equal_the_numpy_path() -> None:
    results = {}
    for fw in toy.FRAMEWORKS:
        result, note = toy.framework_paths(fw, [QUADRATIC])
        assert result, note
        assert note == ""  # the reference optimizers import
        results[fw] = result
    dev = toy.max_deviation(toy.trajectories([QUADRATIC], results))
    assert len(dev) == len(METHODS) * len(toy.FRAMEWORKS) * 2
    # Reference impl: the tutorial's formulas in each framework. Native: the same math for all six
    # here (Keras' ε-hat and ε-inside-the-root are far below 1e-5 at these gradient sizes).
    worst = dev.sort_values("max_rel_dev").iloc[-1]
    assert worst["max_rel_dev"] < 1e-5, worst.to_dict()


@pytest.mark.slow
def test_cli_writes_csv_and_figures(tmp_path: Path) -> None:
    out = tmp_path / "toy"
    proc = run_cli(f"out={out}", "frameworks=", module="bench.toy", timeout=300)
    assert proc.returncode == 0, proc.stderr
    traj = pd.read_csv(out / "trajectories.csv")
    assert list(traj.columns) == ["method", "framework", "impl", "step", "x", "loss"]
    assert set(traj["method"]) == set(METHODS) and set(traj["framework"]) == {"numpy"}
    assert traj.groupby("method")["step"].max().eq(20).all()
    surface = pd.read_csv(out / "surface.csv")
    assert {"x", "y", "loss"} <= set(surface.columns)
    for name in [f"toy_{m}" for m in METHODS] + ["toy_all_methods", "toy_surface"]:
        assert (out / f"{name}.png").stat().st_size > 0 and (out / f"{name}.svg").exists()


@pytest.mark.parametrize("args, line", [
    (["frameworks=bogus"], "frameworks=bogus: a comma-separated list of " + ", ".join(toy.FRAMEWORKS)),
    (["frameworks=torch,,jax"], "frameworks=torch,,jax: an empty name between commas"),
    (["out="], "out=: give a path"),
    (["out=/proc/optbench"], "out=/proc/optbench: cannot write there"),  # said before any path is computed
])
def test_cli_rejects_bad_input_in_one_line(tmp_path: Path, args: list[str], line: str) -> None:
    out = [] if any(a.startswith("out=") for a in args) else [f"out={tmp_path}"]
    proc = run_cli(*out, *args, module="bench.toy", timeout=60)
    assert proc.returncode == 2 and "Traceback" not in proc.stderr
    (said,) = proc.stderr.strip().splitlines()
    assert said.startswith(f"error: {line}"), said

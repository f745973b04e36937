"""The tutorial's toy, for real: ``python -m bench.toy`` → ``results/toy/``.

The tutorial draws each method's path on the loss x² (start 10, η 0.1, 20 iterations, β as
it gives them) and fakes SGD's noise with a random factor. Here the noise is real: the loss
is a mean over fixed points a_i (drawn with `seed` 0) with mean 0,

    f(x) = mean_i (x − a_i)² = x² + mean_i a_i²,

and SGD uses one a_i per step, mini-batch five, batch GD all of them (the other three
methods, like the tutorial's, see the whole set). Every path is computed three ways — plain
numpy from the tutorial's formulas, PyTorch's, TensorFlow's and optax's optimizers (native, and
the reference implementation of the tutorial's formulas) — on the same samples, in float64.
A 2-D surface (Rosenbrock, with the same kind of sampled linear noise) shows where the
methods' behaviours differ.

Outputs: ``trajectories.csv`` (method, framework, impl, step, x, loss; the loss is the
tutorial's x², i.e. f minus its constant), ``surface.csv`` (… x, y, loss), one figure per
method, ``toy_all_methods`` and ``toy_surface`` (PNG and SVG).

This process imports neither framework: each one runs in its own child process
(``python -m bench.frameworks.<package>.toy <job.json> <out.json>``, see ``CHILD_MODULES``).
"""
from __future__ import annotations

import argparse
import json
import subprocess
import sys
import tempfile
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import matplotlib
import numpy as np
import pandas as pd
from matplotlib.figure import Figure

from bench.cli import entry
from bench.exits import BadInput
from bench.optimizers import METHODS
from bench.run import proc

SEED = 0
# framework -> the module that computes its paths in a child process; adding a framework is one entry
# here (and its PATH_STYLES).
CHILD_MODULES = {"torch": "bench.frameworks.torch.toy", "tensorflow": "bench.frameworks.tf.toy",
                 "jax": "bench.frameworks.jax.toy"}
FRAMEWORKS = tuple(CHILD_MODULES)
IMPLS = ("native", "reference")  # each framework's own optimizer, and the tutorial's formulas in it
METHOD_COLOURS = {"bgd": "#000000", "sgd": "#9c36b5", "minibatch": "#2f9e44", "momentum": "#e67700",
                  "rmsprop": "#1971c2", "adam": "#c2255c"}
# How each (framework, impl) path is drawn on top of the numpy one.
PATH_STYLES = {
    ("numpy", "formula"): dict(color="#000000", marker="o", ms=7, mfc="none", label="numpy (tutorial's formula)"),
    # Sizes differ so that coinciding points stay visible: big torch marks behind small TF and JAX ones.
    ("torch", "native"): dict(color="#e8590c", marker="x", ms=9, label="torch native"),
    ("torch", "reference"): dict(color="#e8590c", marker="+", ms=13, label="torch reference"),
    ("tensorflow", "native"): dict(color="#1c7ed6", marker="x", ms=5, label="tensorflow native"),
    ("tensorflow", "reference"): dict(color="#1c7ed6", marker="+", ms=8, label="tensorflow reference"),
    ("jax", "native"): dict(color="#2b8a3e", marker="x", ms=3, label="jax native"),
    ("jax", "reference"): dict(color="#2b8a3e", marker="+", ms=5, label="jax reference"),
}
matplotlib.rcParams.update({"svg.hashsalt": "optbench-toy", "font.size": 9})


@dataclass(frozen=True)
class Problem:
    """A toy objective: a full-batch loss plus sampled noise whose mean over all samples is 0."""

    name: str  # quadratic | rosenbrock
    start: tuple[float, ...]
    steps: int
    hp: Mapping[str, Mapping[str, float]]  # method -> the tutorial's hyperparameters
    samples: np.ndarray  # quadratic: a_i, shape (n,); rosenbrock: c_i, shape (n, 2)
    batches: Mapping[str, list[list[int]]]  # method -> per step, the sample indices it sees


def _tutorial_hp(lr: Mapping[str, float]) -> dict[str, dict[str, float]]:
    """The tutorial's β and ε values with a learning rate per method."""
    extra = {"momentum": {"beta": 0.9}, "rmsprop": {"beta": 0.9, "eps": 1e-8},
             "adam": {"beta1": 0.9, "beta2": 0.999, "eps": 1e-8}}
    return {m: {"lr": float(lr[m]), **extra.get(m, {})} for m in METHODS}


def _batches(rng: np.random.Generator, n: int, steps: int) -> dict[str, list[list[int]]]:
    """SGD one sample per step, mini-batch five, every other method all of them."""
    every = list(range(n))
    sgd = np.concatenate([rng.permutation(n) for _ in range(-(-steps // n))])[:steps]
    out = {m: [every] * steps for m in METHODS}
    out["sgd"] = [[int(i)] for i in sgd]
    out["minibatch"] = [sorted(int(i) for i in rng.choice(n, 5, replace=False)) for _ in range(steps)]
    return out


def make_problems(seed: int = SEED) -> list[Problem]:
    rng = np.random.default_rng(seed)
    a = rng.normal(0.0, 3.0, 50)
    a -= a.mean()  # mean exactly 0: the full-batch gradient is the tutorial's 2x
    quadratic = Problem("quadratic", (10.0,), 20, _tutorial_hp({m: 0.1 for m in METHODS}), a,
                        _batches(rng, len(a), 20))
    c = rng.normal(0.0, 15.0, (50, 2))
    c -= c.mean(axis=0)
    # Rosenbrock's curvature (up to ~2,000 at the start) caps plain GD at η ≈ 1e-3; the adaptive
    # methods take steps of about η per coordinate, so they get a larger one.
    lrs = {"bgd": 1e-3, "sgd": 1e-3, "minibatch": 1e-3, "momentum": 1e-2, "rmsprop": 2e-2, "adam": 5e-2}
    rosen = Problem("rosenbrock", (-1.5, 2.0), 500, _tutorial_hp(lrs), c, _batches(rng, len(c), 500))
    return [quadratic, rosen]


# ---------------------------------------------------------------- numpy: the tutorial's formulas
def full_loss(problem: str, theta: np.ndarray) -> float:
    """The loss drawn and logged: x² (f minus its constant) or Rosenbrock's value."""
    if problem == "quadratic":
        return float(theta[0] ** 2)
    x, y = theta
    return float((1 - x) ** 2 + 100 * (y - x * x) ** 2)


def sampled_grad(p: Problem, theta: np.ndarray, idx: Sequence[int]) -> np.ndarray:
    if p.name == "quadratic":
        return np.array([np.mean(2.0 * (theta[0] - p.samples[list(idx)]))])
    x, y = theta
    g = np.array([-2 * (1 - x) - 400 * x * (y - x * x), 200 * (y - x * x)])
    return g + p.samples[list(idx)].mean(axis=0)


def numpy_path(p: Problem, method: str) -> np.ndarray:
    """θ after each step (row 0 = start), by the tutorial's update rules as written."""
    hp, rule = p.hp[method], METHODS[method].rule
    theta = np.array(p.start, dtype=float)
    v = np.zeros_like(theta)
    s = np.zeros_like(theta)
    m = np.zeros_like(theta)
    path = [theta.copy()]
    for t, idx in enumerate(p.batches[method], start=1):
        g = sampled_grad(p, theta, idx)
        if rule == "sgd":
            theta = theta - hp["lr"] * g
        elif rule == "momentum":
            v = hp["beta"] * v + (1 - hp["beta"]) * g
            theta = theta - hp["lr"] * v
        elif rule == "rmsprop":
            s = hp["beta"] * s + (1 - hp["beta"]) * g**2
            theta = theta - hp["lr"] * g / (np.sqrt(s) + hp["eps"])
        else:
            m = hp["beta1"] * m + (1 - hp["beta1"]) * g
            v = hp["beta2"] * v + (1 - hp["beta2"]) * g**2
            m_hat, v_hat = m / (1 - hp["beta1"] ** t), v / (1 - hp["beta2"] ** t)
            theta = theta - hp["lr"] * m_hat / (np.sqrt(v_hat) + hp["eps"])
        path.append(theta.copy())
    return np.array(path)


# ---------------------------------------------------------------- framework children
def _job(problems: Sequence[Problem]) -> dict[str, Any]:
    return {"problems": [{"name": p.name, "start": list(p.start), "hp": p.hp, "samples": p.samples.tolist(),
                          "batches": p.batches} for p in problems]}


def sampled_loss(name: str, theta, samples, mean: Callable):
    """The sampled objective in framework ops (operators work on every framework's arrays)."""
    if name == "quadratic":
        return mean((theta[0] - samples) ** 2)
    x, y = theta[0], theta[1]
    c = mean(samples, 0)
    return (1 - x) ** 2 + 100 * (y - x * x) ** 2 + c[0] * x + c[1] * y


def framework_paths(framework: str, problems: Sequence[Problem], timeout: float = 300) -> tuple[dict, str]:
    """Run one framework's optimizers in its child process: ({"version", "paths"}, "") or ({}, the error)."""
    with tempfile.TemporaryDirectory() as tmp:
        job, out = Path(tmp) / "job.json", Path(tmp) / "out.json"
        job.write_text(json.dumps(_job(problems)))
        try:
            done = proc.run(CHILD_MODULES[framework], [job, out], env=proc.child_env(1, "cpu", framework),
                            timeout=timeout)
        except subprocess.TimeoutExpired:
            return {}, f"{framework}: took over {timeout:.0f} s; left out"
        if done.returncode != 0 or not out.exists():
            return {}, f"{framework}: failed ({proc.last_line(done)}); left out"
        return json.loads(out.read_text()), ""


# ---------------------------------------------------------------- tables and figures
def trajectories(problems: Sequence[Problem], results: Mapping[str, Mapping[str, Any]]) -> pd.DataFrame:
    """Every path as rows: problem, method, framework, impl, step, x, (y), loss."""
    rows = []

    def add(problem: Problem, method: str, framework: str, impl: str, path: Sequence[Sequence[float]]) -> None:
        for step, theta in enumerate(path):
            theta = np.asarray(theta, dtype=float)
            row = {"problem": problem.name, "method": method, "framework": framework, "impl": impl,
                   "step": step, "x": theta[0], "loss": full_loss(problem.name, theta)}
            if len(theta) > 1:
                row["y"] = theta[1]
            rows.append(row)

    for p in problems:
        for method in METHODS:
            add(p, method, "numpy", "formula", numpy_path(p, method))
            for fw in FRAMEWORKS:
                for impl in IMPLS:
                    path = results.get(fw, {}).get("paths", {}).get(f"{p.name}|{method}|{impl}")
                    if path is not None:
                        add(p, method, fw, impl, path)
    return pd.DataFrame(rows)


def max_deviation(traj: pd.DataFrame) -> pd.DataFrame:
    """Per problem, method, framework and impl: the largest distance from the numpy path,
    relative to the path's size (its largest |coordinate|), so that a path crossing 0 does
    not turn a rounding difference into a huge relative one."""
    ref = traj[traj["framework"] == "numpy"].set_index(["problem", "method", "step"])
    rows = []
    for key, grp in traj[traj["framework"] != "numpy"].groupby(["problem", "method", "framework", "impl"]):
        base = ref.loc[[(key[0], key[1], s) for s in grp["step"]]]
        cols = ["x", "y"] if key[0] == "rosenbrock" else ["x"]
        got, want = grp[cols].to_numpy(float), base[cols].to_numpy(float)
        scale = max(float(np.max(np.abs(want))), 1e-12)
        rows.append(dict(zip(["problem", "method", "framework", "impl"], key),
                         max_rel_dev=float(np.max(np.abs(got - want)) / scale)))
    return pd.DataFrame(rows)


def _save(fig: Figure, out_dir: Path, name: str) -> Path:
    png = out_dir / f"{name}.png"
    fig.savefig(png, dpi=110)
    fig.savefig(out_dir / f"{name}.svg", metadata={"Date": None})
    return png


def plot_method(traj: pd.DataFrame, method: str, out_dir: Path) -> Path:
    """The tutorial's picture (path points on the loss curve) with every implementation overlaid."""
    q = traj[(traj["problem"] == "quadratic") & (traj["method"] == method)]
    fig = Figure(figsize=(10, 3.6), layout="constrained")
    left, right = fig.subplots(1, 2)
    xs = np.linspace(-10.5, 10.5, 300)
    left.plot(xs, xs**2, color="#bbb", lw=1.2, label="loss x²")
    for (fw, impl), grp in q.groupby(["framework", "impl"], sort=False):
        style = PATH_STYLES.get((fw, impl), {"color": "#777", "marker": "."})
        left.plot(grp["x"], grp["loss"], ls="none", **style)
        right.plot(grp["step"], grp["x"], ls="-" if fw == "numpy" else "none", lw=1, **style)
    left.set_xlabel("x")
    left.set_ylabel("loss x²")
    left.set_title(f"{method}: path on the tutorial's loss")
    right.set_xlabel("iteration")
    right.set_ylabel("x")
    right.axhline(0, color="#bbb", lw=0.8)
    right.set_title(f"{method}: x per iteration")
    for ax in (left, right):
        ax.grid(alpha=0.3)
    right.legend(fontsize=7, loc="upper right")
    hp = ", ".join(f"{k} {v:g}" for k, v in make_problems()[0].hp[method].items())
    fig.suptitle(f"{method} on f(x) = mean(x − aᵢ)², start 10, {hp}; batch: "
                 f"{ {'sgd': '1 sample', 'minibatch': '5 samples'}.get(method, 'all 50 samples') }", fontsize=10)
    return _save(fig, out_dir, f"toy_{method}")


def plot_all(traj: pd.DataFrame, out_dir: Path) -> Path:
    q = traj[traj["problem"] == "quadratic"]
    fig = Figure(figsize=(10, 3.8), layout="constrained")
    left, right = fig.subplots(1, 2)
    for method in METHODS:
        colour = METHOD_COLOURS[method]
        num = q[(q["method"] == method) & (q["framework"] == "numpy")]
        left.plot(num["step"], num["x"], "-o", color=colour, ms=3, lw=1.4, label=method)
        right.plot(num["step"], num["loss"], "-o", color=colour, ms=3, lw=1.4, label=method)
        for fw in FRAMEWORKS:
            nat = q[(q["method"] == method) & (q["framework"] == fw) & (q["impl"] == "native")]
            if len(nat):
                left.plot(nat["step"], nat["x"], "x", color=colour, ms=5)
    left.axhline(0, color="#bbb", lw=0.8)
    left.set_xlabel("iteration")
    left.set_ylabel("x")
    left.set_title("x per iteration (lines: numpy; ×: torch, TF and JAX native)")
    right.set_yscale("log")
    right.set_xlabel("iteration")
    right.set_ylabel("loss x² (log)")
    right.set_title("loss per iteration (numpy)")
    for ax in (left, right):
        ax.grid(alpha=0.3, which="both")
    right.legend(fontsize=8, ncol=2)
    fig.suptitle("The six methods on the tutorial's toy: x², start 10, η 0.1, 20 iterations", fontsize=10)
    return _save(fig, out_dir, "toy_all_methods")


def plot_surface(traj: pd.DataFrame, problem: Problem, out_dir: Path) -> Path:
    """Paths over Rosenbrock's contours, and the loss per iteration (the paths overlap in the valley)."""
    r = traj[traj["problem"] == "rosenbrock"]
    fig = Figure(figsize=(12, 5.2), layout="constrained")
    ax, right = fig.subplots(1, 2, width_ratios=[1.25, 1])
    gx, gy = np.meshgrid(np.linspace(-2, 2, 400), np.linspace(-1, 3, 400))
    z = (1 - gx) ** 2 + 100 * (gy - gx**2) ** 2
    ax.contour(gx, gy, np.log10(z + 1e-3), levels=20, colors="#aaa", linewidths=0.6, linestyles="solid")
    ax.plot([1], [1], "*", color="#d4a017", ms=14, mec="k", label="minimum (1, 1)")
    for method in METHODS:
        colour = METHOD_COLOURS[method]
        num = r[(r["method"] == method) & (r["framework"] == "numpy")]
        lr = problem.hp[method]["lr"]
        ax.plot(num["x"], num["y"], "-", color=colour, lw=1.4, label=f"{method} (η {lr:g})")
        ax.plot(num["x"].iloc[-1], num["y"].iloc[-1], "o", color=colour, ms=6, mec="k")
        right.plot(num["step"], num["loss"], "-", color=colour, lw=1.4, label=method)
        for fw in FRAMEWORKS:
            nat = r[(r["method"] == method) & (r["framework"] == fw) & (r["impl"] == "native")]
            if len(nat):
                ax.plot(nat["x"].iloc[::25], nat["y"].iloc[::25], "x", color=colour, ms=4, alpha=0.7)
                right.plot(nat["step"].iloc[::25], nat["loss"].iloc[::25], "x", color=colour, ms=4)
    ax.plot(*problem.start, "s", color="k", ms=6, label="start")
    ax.set_xlim(-2, 2)
    ax.set_ylim(-1, 3)
    ax.set_xlabel("x")
    ax.set_ylabel("y")
    ax.legend(fontsize=8, loc="upper right")
    ax.set_title("paths (dot = end; × every 25th step: torch, TF and JAX native)")
    right.set_yscale("log")
    right.set_xlabel("iteration")
    right.set_ylabel("Rosenbrock value (log)")
    right.set_title("loss per iteration")
    right.grid(alpha=0.3, which="both")
    fig.suptitle(f"Rosenbrock (1−x)² + 100(y−x²)² from {problem.start}, {problem.steps} iterations; sgd and "
                 "minibatch see sampled linear noise (mean 0)", fontsize=10)
    return _save(fig, out_dir, "toy_surface")


def build_toy(out_dir: Path, frameworks: Sequence[str] = FRAMEWORKS,
              log: Callable[[str], None] = print) -> pd.DataFrame:
    """Compute every path, write both CSVs and every figure; returns the trajectories."""
    problems = make_problems()
    results = {}
    for fw in frameworks:
        result, note = framework_paths(fw, problems)
        if note:
            log(f"note: {note}")
        if result:
            results[fw] = result
    traj = trajectories(problems, results)
    out_dir.mkdir(parents=True, exist_ok=True)
    quad = traj[traj["problem"] == "quadratic"]
    quad[["method", "framework", "impl", "step", "x", "loss"]].to_csv(out_dir / "trajectories.csv", index=False)
    surf = traj[traj["problem"] == "rosenbrock"]
    surf[["method", "framework", "impl", "step", "x", "y", "loss"]].to_csv(out_dir / "surface.csv", index=False)
    for method in METHODS:
        plot_method(traj, method, out_dir)
    plot_all(traj, out_dir)
    plot_surface(traj, problems[1], out_dir)
    if len(traj["framework"].unique()) > 1:
        dev = max_deviation(traj)
        dev.to_csv(out_dir / "agreement.csv", index=False)
        worst = dev.sort_values("max_rel_dev").iloc[-1]
        log(f"largest distance from the numpy path: {worst['max_rel_dev']:.2g} "
            f"({worst['framework']} {worst['impl']} {worst['method']} on {worst['problem']})")
    return traj


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench.toy", description=__doc__.splitlines()[0])
    parser.add_argument("--out", default="results/toy", help="output folder (default: results/toy)")
    parser.add_argument("--frameworks", default=",".join(FRAMEWORKS),
                        help="comma-separated frameworks to run besides numpy ('' = numpy only)")
    args = parser.parse_args(sys.argv[1:] if argv is None else argv)
    frameworks = [f for f in args.frameworks.split(",") if f]
    unknown = [f for f in frameworks if f not in FRAMEWORKS]
    if unknown:
        raise BadInput(f"unknown framework {unknown[0]!r}; choose from {', '.join(FRAMEWORKS)}")
    out = Path(args.out)
    build_toy(out, frameworks)
    print(f"toy: {out / 'trajectories.csv'} and figures in {out}")
    return 0


if __name__ == "__main__":
    sys.exit(entry(main))

"""The tutorial's toy, for real: ``python -m bench.toy`` → ``results/toy/``.

The tutorial draws each method's path on the loss x² (start 10, η 0.1, 20 iterations, β as
it gives them) and fakes SGD's noise with a random factor. Here the noise is real: the loss
is a mean over fixed points a_i (drawn with `seed` 0) with mean 0,

    f(x) = mean_i (x − a_i)² = x² + mean_i a_i²,

and SGD uses one a_i per step, mini-batch five, batch GD all of them (the other three
methods, like the tutorial's, see the whole set). Every path is computed several ways — numpy
running each method's rule (``bench.optimizers``, written once), and every registered framework's
optimizers (native, and the same rule in its reference adapter) — on the same samples, in float64.
The methods beyond the tutorial's six take the same paths with their own hyperparameters.
A 2-D surface (Rosenbrock, with the same kind of sampled linear noise) shows where the
methods' behaviours differ.

Outputs: ``trajectories.csv`` (method, framework, impl, step, x, loss; the loss is the
tutorial's x², i.e. f minus its constant), ``surface.csv`` (… x, y, loss), one figure per
method, ``toy_all_methods`` and ``toy_surface`` (PNG and SVG).

This process imports neither framework: each one runs in its own child process
(``python -m bench.frameworks.<package>.toy <job.json> <out.json>``, the registry names it).
"""
from __future__ import annotations

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

from bench import frameworks
from bench.cli import entry
from bench.optimizers import METHODS, NumpyStep, get_rule, required_hparams
from bench.run import proc
from bench.spec import conf_group

SEED = 0
FRAMEWORKS = frameworks.NAMES  # each computes its paths in a child: bench.frameworks.<package>.toy
IMPLS = ("native", "reference")  # each framework's own optimizer, and the tutorial's formulas in it


def _path_styles() -> dict[tuple[str, str], dict[str, Any]]:
    """How each (framework, impl) path is drawn on top of the numpy one. Sizes shrink framework by
    framework, so that coinciding points stay visible: big first marks behind smaller later ones."""
    styles = {("numpy", "formula"): dict(color="#000000", marker="o", ms=7, mfc="none",
                                         label="numpy (the formula)")}
    for k, fw in enumerate(frameworks.FRAMEWORKS.values()):
        styles[(fw.name, "native")] = dict(color=fw.colour, marker="x", ms=max(9 - 3 * k, 3), label=f"{fw.name} native")
        styles[(fw.name, "reference")] = dict(color=fw.colour, marker="+", ms=max(13 - 4 * k, 4),
                                              label=f"{fw.name} reference")
    return styles


PATH_STYLES = _path_styles()
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
    """Each method's hyperparameters from its conf file (the tutorial's β and ε), with the given
    learning rate per method."""
    out = {}
    for m in METHODS:
        conf = conf_group("optimizer", m)
        out[m] = {key: float(lr[m]) if key == "lr" else float(conf[key]) for key in required_hparams(m)}
    return out


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
    lrs = {m: method.toy_lr for m, method in METHODS.items()}  # see METHODS for why they differ
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
    """θ after each step (row 0 = start), by the method's rule (``bench.optimizers``) in float64."""
    hp, rule = p.hp[method], get_rule(METHODS[method].rule)
    theta = np.array(p.start, dtype=float)
    state = {name: np.zeros_like(theta) for name in rule.slots}
    path = [theta.copy()]
    for t, idx in enumerate(p.batches[method], start=1):
        delta, state = rule.update(theta, sampled_grad(p, theta, idx), state, NumpyStep(t), hp)
        theta = theta - delta
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
            done = proc.run(frameworks.get(framework).module("toy"), [job, out],
                            env=proc.child_env(1, "cpu", framework),
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


def _line(method: str) -> str:
    """Solid for the tutorial's six, dashed for the methods beyond it."""
    return "-" if METHODS[method].tutorial else "--"


def plot_all(traj: pd.DataFrame, out_dir: Path) -> Path:
    q = traj[traj["problem"] == "quadratic"]
    fig = Figure(figsize=(10, 3.8), layout="constrained")
    left, right = fig.subplots(1, 2)
    for method in METHODS:
        colour = METHODS[method].colour
        num = q[(q["method"] == method) & (q["framework"] == "numpy")]
        ls = _line(method)
        left.plot(num["step"], num["x"], marker="o", ls=ls, color=colour, ms=3, lw=1.4, label=method)
        right.plot(num["step"], num["loss"], marker="o", ls=ls, color=colour, ms=3, lw=1.4, label=method)
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
    fig.suptitle(f"The {len(METHODS)} methods on the tutorial's toy: x², start 10, η 0.1, 20 iterations "
                 "(dashed: beyond the tutorial)", fontsize=10)
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
        colour = METHODS[method].colour
        num = r[(r["method"] == method) & (r["framework"] == "numpy")]
        lr = problem.hp[method]["lr"]
        ax.plot(num["x"], num["y"], ls=_line(method), color=colour, lw=1.4, label=f"{method} (η {lr:g})")
        ax.plot(num["x"].iloc[-1], num["y"].iloc[-1], "o", color=colour, ms=6, mec="k")
        right.plot(num["step"], num["loss"], ls=_line(method), color=colour, lw=1.4, label=method)
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
    from bench.options import Option, Options, names, pathname, writable_folder

    options = Options("python -m bench.toy", """The tutorial's toy, for real: each method's path on
        the loss x² (start 10, η 0.1, 20 iterations) with real sampling noise, and on a Rosenbrock
        surface, computed with numpy from the tutorial's formulas and with each framework's
        optimizers (native and reference), each framework in a child process of its own. Writes
        trajectories.csv, surface.csv and the figures to `out`.""", {
        "out": Option("results/toy", "output folder", pathname),
        "frameworks": Option(list(FRAMEWORKS), "frameworks to run besides numpy, comma-separated "
                             "(empty: numpy only)", names(FRAMEWORKS, empty=True)),
    })
    args = options.parse(sys.argv[1:] if argv is None else argv)
    out = writable_folder("out", args["out"])  # before the paths are computed, not after
    build_toy(out, args["frameworks"])
    print(f"toy: {out / 'trajectories.csv'} and figures in {out}")
    return 0


if __name__ == "__main__":
    sys.exit(entry(main))

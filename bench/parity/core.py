"""Do the frameworks agree?  ``python -m bench.parity <overrides>`` checks it step by step.

Runs the first N training steps of a run in PyTorch and in TensorFlow, each in its own child
process (they cannot share one), from the same initial weights on the same batches, saves
every step's loss and the parameters at about ``param_points`` steps, and compares them:

* ``loss_rel_diff``      |ℓ_torch − ℓ_tf| / |ℓ_torch|; the loss of step k is computed from the
                         parameters after k − 1 steps, so step 1 compares the forward passes.
* ``param_max_rel_diff`` the largest, over the four tensors (w1, b1, w2, b2), of
                         max|θ_torch − θ_tf| / max(max|θ_torch|, max|θ_tf|): the worst
                         element difference measured against the tensor's own scale. An
                         element-wise ratio would be dominated by weights that sit near zero.
* ``param_rel_to_moved`` the same difference against how far the tensor moved from its start,
                         max|θ_torch − θ_tf| / max(max|θ_torch − θ₀|, max|θ_tf − θ₀|): the share
                         of the training progress the frameworks disagree on. It is the stricter
                         number after few steps, when the weights have hardly moved.
* ``params_over_bound``  how many weights differ by more than TOLERANCE of their tensor's scale.
* ``param_torch_vs_f64``, ``param_tf_vs_f64``  each framework against a float64 numpy run of the
                         formula it is meant to compute (same start, same batches): its float32
                         rounding, or its formula if that is not the one it should be.
* ``param_forms_diff``   the float64 runs of the two frameworks' formulas against each other:
                         0 when both compute the same formula (reference, SGD, momentum), the
                         effect of the formula alone for native RMSProp/Adam (Keras' ε).

Writes ``results_dir/parity/<optimizer>-<impl>-bs<bs>-s<seed>[-tags].csv`` (one row per step)
and a ``.json`` beside it (versions, devices, date), and prints the comparison at steps 1, 10
and N. :func:`report_section` summarises every parity CSV for ``bench.report``.

Exit codes: 0 compared (whether or not the frameworks agree: a difference is a result),
1 a framework's process failed, 2 bad input (one line on stderr).
This module imports neither framework; ``python -m bench.parity --child`` is its child side.
"""
from __future__ import annotations

import functools
import json
import math
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any, Mapping, Sequence

import numpy as np
from threadpoolctl import threadpool_limits

from bench.data import Dataset, DataError, as_float, epoch_order, load_dataset
from bench.cli import entry, error
from bench.exits import EXIT_BAD_INPUT
from bench.optimizers import METHODS, REQUIRED_HPARAMS, RESIDUAL
from bench.run.proc import spec_env, start
from bench.report.sections import ReportSection
from bench.results import write_csv, write_json
from bench.spec import FRAMEWORKS, IMPLS, BadInput, build_spec
from models.init import LAYERS, PARAM_NAMES

TOLERANCE = 1e-4  # the claim: reference implementations agree to this after N steps (float32)
BOUND = f"{TOLERANCE:.0e}".replace("e-0", "e-")  # "1e-4", for tables and messages
COLUMNS = (
    "optimizer", "impl", "framework_a", "framework_b", "batch_size", "seed", "steps", "dataset",
    "n_train", "init", "mode", "device", "precision", "lr", "step", "loss_torch", "loss_tensorflow",
    "loss_rel_diff", "param_max_abs_diff", "param_max_rel_diff", "params_over_bound", "param_rel_to_moved",
    "param_torch_vs_f64", "param_tf_vs_f64", "param_forms_diff",
)


class ParityError(Exception):
    """A framework's child process failed; the message is one line for the user."""

    def __init__(self, message: str, code: int) -> None:
        super().__init__(message)
        self.code = code  # the child's exit code


def _positive_int(name: str, value: Any) -> int:
    if isinstance(value, bool) or not isinstance(value, int) or value < 1:
        raise BadInput(f"{name} must be an integer >= 1, got {value!r}")
    return value


# ------------------------------------------------------------------ shared by both sides
def batch_plan(seed: int, n_train: int, batch_size: int, steps: int) -> list[np.ndarray]:
    """The first ``steps`` batches of a real run: epoch 1's order cut in batches, then epoch 2's..."""
    batches: list[np.ndarray] = []
    epoch = 0
    while len(batches) < steps:
        epoch += 1
        order = epoch_order(seed, epoch, n_train)
        batches.extend(order[s:s + batch_size] for s in range(0, n_train, batch_size))
    return batches[:steps]


def param_steps(steps: int, points: int) -> list[int]:
    """Steps after which the parameters are saved: about ``points`` of them, always 0, 1, 10, N."""
    every = max(1, steps // points)
    return sorted({0, 1, min(10, steps), steps} | set(range(every, steps + 1, every)))


# ------------------------------------------------------------------ child side
def child_main(workdir: Path, framework: str) -> int:
    """Run every job of ``workdir/jobs.json`` in this framework; one npz + json per job."""
    from bench.run.child import make_runner
    from models.init import initial_weights

    jobs = json.loads((workdir / "jobs.json").read_text())
    datasets: dict[str, Any] = {}
    for job in jobs:
        spec = job["specs"][framework]
        data_key = json.dumps(spec["data"], sort_keys=True)
        try:
            if data_key not in datasets:
                datasets[data_key] = load_dataset(spec["data"], log=lambda msg: print(msg, file=sys.stderr))
        except DataError as exc:
            print(f"error: {exc}", file=sys.stderr)
            return EXIT_BAD_INPUT
        data = datasets[data_key]
        runner = make_runner(spec, data, initial_weights(spec["seed"]))
        save = set(job["param_steps"])
        snaps = {name: [w] for name, w in runner.weights().items()}
        losses = np.empty(job["steps"])
        for k, idx in enumerate(batch_plan(spec["seed"], data.n_train, job["batch_size"], job["steps"]), 1):
            losses[k - 1] = runner.train_epoch(idx, len(idx))[0]  # one call = one step
            if k in save:
                for name, w in runner.weights().items():
                    snaps[name].append(w)
        np.savez(workdir / f"{job['key']}-{framework}.npz", loss=losses, param_steps=np.array(sorted(save)),
                 **{name: np.stack(ws) for name, ws in snaps.items()})
        write_json(workdir / f"{job['key']}-{framework}.json", runner.describe())
    return 0


# ------------------------------------------------------------------ parent side
@functools.lru_cache(maxsize=4)
def _load(data_json: str) -> Dataset:
    return load_dataset(json.loads(data_json))


def job_data(job: Mapping[str, Any]) -> Dataset:
    """The dataset a job trains on (loaded once per process)."""
    return _load(json.dumps(job["specs"]["torch"]["data"], sort_keys=True))


def make_job(key: str, cfg: Mapping[str, Any], overrides: Sequence[str] = ()) -> dict[str, Any]:
    """One comparison from a composed ``conf/parity.yaml`` (``frameworks.<fw>`` holds each runner's group).

    ``overrides`` are the command line's, to catch ``impl=`` and ``optimizer.impl=`` disagreeing.
    Raises BadInput on bad input, bad data included.
    """
    from bench.run.child import resolve_batch_size

    plain = json.loads(json.dumps(dict(cfg)))  # a deep, plain copy
    impl = plain.pop("impl", None)
    if impl is not None:
        if impl not in IMPLS:
            raise BadInput(f"impl={impl!r} is not one of {', '.join(IMPLS)}")
        given = [o.split("=", 1)[1] for o in overrides if o.startswith("optimizer.impl=")]
        if given and given[-1] != impl:
            raise BadInput(f"impl={impl} and optimizer.impl={given[-1]} disagree; give one")
        plain["optimizer"]["impl"] = impl
    steps = _positive_int("steps", plain["steps"])
    points = _positive_int("param_points", plain["param_points"])
    specs = {}
    for fw in FRAMEWORKS:
        run_cfg = {k: v for k, v in plain.items() if k != "frameworks"}
        run_cfg.update(framework=plain["frameworks"][fw], epochs=1, progress="none")
        specs[fw] = build_spec(run_cfg)
    try:
        data = _load(json.dumps(specs["torch"]["data"], sort_keys=True))
        batch_size = resolve_batch_size(specs["torch"], data.n_train)
    except DataError as exc:
        raise BadInput(str(exc)) from None
    return {"key": key, "specs": specs, "steps": steps, "batch_size": batch_size,
            "param_steps": param_steps(steps, points), "dataset": data.name, "n_train": data.n_train}


def run_jobs(jobs: Sequence[Mapping[str, Any]], workdir: Path) -> dict[str, dict[str, Any]]:
    """Run all jobs in one child process per framework (both at once); returns key -> results.

    Results per key: ``{"torch": npz arrays, "tensorflow": npz arrays, "describe": {fw: dict}}``.
    """
    workdir.mkdir(parents=True, exist_ok=True)
    write_json(workdir / "jobs.json", list(jobs))
    procs = {}
    try:
        for fw in FRAMEWORKS:
            spec = jobs[0]["specs"][fw]
            log = open(workdir / f"stderr-{fw}.log", "w")
            python = spec["framework"].get("python") or sys.executable
            try:
                proc = start("bench.parity", ["--child", workdir, fw], env=spec_env(spec), python=python,
                             stdout=log, stderr=subprocess.STDOUT)
            except OSError as exc:
                log.close()
                raise ParityError(f"cannot start {python} for {fw}: {exc.strerror or exc}", EXIT_BAD_INPUT) from None
            procs[fw] = (proc, log)
        codes = {fw: proc.wait() for fw, (proc, _) in procs.items()}
    finally:
        for proc, log in procs.values():
            if proc.poll() is None:
                proc.terminate()
                proc.wait()
            log.close()
    for fw, code in codes.items():
        if code:
            lines = (workdir / f"stderr-{fw}.log").read_text(errors="replace").strip().splitlines()
            last = lines[-1] if lines else "no output"
            raise ParityError(f"the {fw} process failed (exit {code}): {last}", code)
    out: dict[str, dict[str, Any]] = {}
    for job in jobs:
        key = job["key"]
        out[key] = {fw: dict(np.load(workdir / f"{key}-{fw}.npz")) for fw in FRAMEWORKS}
        out[key]["describe"] = {fw: json.loads((workdir / f"{key}-{fw}.json").read_text()) for fw in FRAMEWORKS}
    return out


def _max_abs(x: np.ndarray) -> float:
    return float(np.max(np.abs(x))) if x.size else 0.0


def _ratio(num: float, den: float) -> float:
    if den > 0:
        return num / den
    return 0.0 if num == 0 else math.inf


def param_diff(x: Mapping[str, np.ndarray], y: Mapping[str, np.ndarray]) -> tuple[float, float, int]:
    """(max abs difference, max relative difference, elements over TOLERANCE) of two parameter sets.

    Relative = per tensor max|x − y| / max(max|x|, max|y|), the largest over the tensors; an
    element counts as over when |x − y| exceeds TOLERANCE times its tensor's scale.
    """
    abs_diff = rel = 0.0
    over = 0
    for name in PARAM_NAMES:
        tx, ty = np.asarray(x[name], np.float64), np.asarray(y[name], np.float64)
        diff = np.abs(tx - ty)
        scale = max(_max_abs(tx), _max_abs(ty))
        abs_diff = max(abs_diff, _max_abs(diff))
        rel = max(rel, _ratio(_max_abs(diff), scale))
        over += int(np.count_nonzero(diff > TOLERANCE * scale))
    return abs_diff, rel, over


# ------------------------------------------------------------------ exact arithmetic
def expected_form(rule: str, framework: str, impl: str) -> str:
    """Which update formula a framework's optimizer computes: the seed's, or Keras' native one."""
    return "keras" if impl == "native" and RESIDUAL.get((rule, framework)) else "seed"


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
    """One step of DESIGN.md's formula (form="seed") or of Keras' native variant (form="keras")."""
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


def _at(params: Mapping[str, np.ndarray], i: int) -> dict[str, np.ndarray]:
    return {name: params[name][i] for name in PARAM_NAMES}


def compare(job: Mapping[str, Any], result: Mapping[str, Any], data: Dataset) -> list[dict[str, float]]:
    """Per-step differences of one job's results (step 0 = the start); see the module docstring.

    Besides torch vs TensorFlow, each framework is measured against a float64 run of the formula
    it is meant to compute (``param_torch_vs_f64``, ``param_tf_vs_f64``), and the two formulas'
    float64 runs against each other (``param_forms_diff``: 0 when both compute the same one).
    """
    a, b = result["torch"], result["tensorflow"]
    opt = job["specs"]["torch"]["optimizer"]
    rule = METHODS[opt["name"]].rule
    saved = [int(s) for s in a["param_steps"]]
    batches = batch_plan(job["specs"]["torch"]["seed"], data.n_train, job["batch_size"], job["steps"])
    x = as_float(data.x_train)
    exact: dict[str, dict[str, np.ndarray]] = {}
    # numpy's BLAS gets the frameworks' thread budget: many threads on a busy machine cost more than they give
    with threadpool_limits(limits=int(job["specs"]["torch"]["threads"])):
        for fw in FRAMEWORKS:
            form, start = expected_form(rule, fw, opt["impl"]), _at(result[fw], 0)
            same = [other for other in exact if expected_form(rule, other, opt["impl"]) == form
                    and all(np.array_equal(start[n], result[other][n][0]) for n in PARAM_NAMES)]
            exact[fw] = exact[same[0]] if same else float64_trajectory(
                start, x, data.y_train, batches, rule, opt, form, saved)
    index = {step: i for i, step in enumerate(saved)}
    rows = []
    for step in range(job["steps"] + 1):
        row: dict[str, float] = {"step": step}
        if step:
            la, lb = float(a["loss"][step - 1]), float(b["loss"][step - 1])
            row.update(loss_torch=la, loss_tensorflow=lb, loss_rel_diff=_ratio(abs(la - lb), abs(la)))
        if step in index:
            i = index[step]
            pa, pb = _at(a, i), _at(b, i)
            abs_diff, rel, over = param_diff(pa, pb)
            moved = math.nan
            if step:
                travel = {name: max(_max_abs(pa[name] - a[name][0]), _max_abs(pb[name] - b[name][0]))
                          for name in PARAM_NAMES}
                moved = max(_ratio(_max_abs(pa[n].astype(np.float64) - pb[n]), travel[n]) for n in PARAM_NAMES)
            row.update(param_max_abs_diff=abs_diff, param_max_rel_diff=rel, params_over_bound=over,
                       param_rel_to_moved=moved,
                       param_torch_vs_f64=param_diff(pa, _at(exact["torch"], i))[1],
                       param_tf_vs_f64=param_diff(pb, _at(exact["tensorflow"], i))[1],
                       param_forms_diff=param_diff(_at(exact["torch"], i), _at(exact["tensorflow"], i))[1])
        rows.append(row)
    return rows


def result_name(job: Mapping[str, Any]) -> str:
    """``<optimizer>-<impl>-bs<bs>-s<seed>``, plus a tag for each setting away from the defaults."""
    spec = job["specs"]["torch"]
    opt = spec["optimizer"]
    name = f"{opt['name']}-{opt['impl']}-bs{job['batch_size']}-s{spec['seed']}"
    tags = [job["dataset"] if job["dataset"] != "mnist_embedded" else "",
            f"n{job['steps']}" if job["steps"] != 50 else "",
            "init_native" if spec["init"] == "native" else "",
            spec["mode"] if spec["mode"] != "eager" else "",
            spec["device"] if spec["device"] != "cpu" else "",
            spec["precision"] if spec["precision"] != "fp32" else ""]
    return "-".join([name] + [t for t in tags if t])


def result_rows(job: Mapping[str, Any], diffs: Sequence[Mapping[str, float]]) -> list[dict[str, Any]]:
    spec = job["specs"]["torch"]
    base = {"optimizer": spec["optimizer"]["name"], "impl": spec["optimizer"]["impl"],
            "framework_a": "torch", "framework_b": "tensorflow", "batch_size": job["batch_size"],
            "seed": spec["seed"], "steps": job["steps"], "dataset": job["dataset"], "n_train": job["n_train"],
            "init": spec["init"], "mode": spec["mode"], "device": spec["device"],
            "precision": spec["precision"], "lr": spec["optimizer"]["lr"]}
    return [{**base, **row} for row in diffs]


def report_steps(steps: int) -> list[int]:
    return sorted({1, min(10, steps), steps})


def _fmt(x: Any, spec: str = ".1e") -> str:
    return "-" if x is None or (isinstance(x, float) and math.isnan(x)) else format(x, spec)


N_PARAMS = sum(i * o + o for i, o in LAYERS)
# Rounding shows in isolated weights (a gradient that cancels to float32 noise); a wrong formula
# moves nearly all of them. Beyond this many weights over the bound a difference is not rounding.
ISOLATED = N_PARAMS // 1000


def verdict(job: Mapping[str, Any], diffs: Sequence[Mapping[str, float]]) -> str:
    """One line on the comparison after the last step, worded from the numbers."""
    last = diffs[-1]
    n, rel, over = job["steps"], last["param_max_rel_diff"], int(last["params_over_bound"])
    if diffs[0]["param_max_rel_diff"] > 0:
        return (f"differ from the start (init={job['specs']['torch']['init']}): {diffs[0]['param_max_rel_diff']:.1e} "
                f"apart before the first step, {rel:.1e} after {n}; each framework is within "
                f"{max(last['param_torch_vs_f64'], last['param_tf_vs_f64']):.1e} of float64 from its own start")
    rule = METHODS[job["specs"]["torch"]["optimizer"]["name"]].rule
    exact = (f"float64 arithmetic of the same formula is {last['param_torch_vs_f64']:.1e} from torch and "
             f"{last['param_tf_vs_f64']:.1e} from tensorflow")
    if rel <= TOLERANCE:
        return f"agree: parameters within {rel:.1e} of their scale after {n} steps (bound {BOUND})"
    if last["param_forms_diff"] > TOLERANCE:
        return (f"differ by formula: {rel:.1e} apart after {n} steps, {over} of {N_PARAMS} weights beyond the "
                f"bound; float64 runs of the two frameworks' formulas are {last['param_forms_diff']:.1e} apart "
                f"(torch {last['param_torch_vs_f64']:.1e}, tensorflow {last['param_tf_vs_f64']:.1e} from their "
                f"own). {RESIDUAL[(rule, 'tensorflow')]}")
    if over <= ISOLATED:
        return (f"agree to float32 rounding: {rel:.1e} apart after {n} steps, in {over} of {N_PARAMS} weights "
                f"beyond the bound; {exact}: rounding in gradients that cancel to almost zero, which the "
                f"per-weight scaling of {rule} turns into full-size steps")
    return (f"DIFFER beyond rounding: {rel:.1e} apart after {n} steps in {over} of {N_PARAMS} weights, with the "
            f"same formula on both sides; {exact}")


def print_table(job: Mapping[str, Any], diffs: Sequence[Mapping[str, float]]) -> None:
    spec = job["specs"]["torch"]
    opt = spec["optimizer"]
    print(f"parity {opt['name']} impl={opt['impl']}: torch vs tensorflow, {job['steps']} steps of batch "
          f"{job['batch_size']} on {job['dataset']} ({job['n_train']} train), seed {spec['seed']}, "
          f"init {spec['init']}, {spec['mode']}, {spec['device']}")
    head = ("step", "loss torch", "loss tf", "loss rel", "param rel", "rel to moved", "torch vs f64",
            "tf vs f64", "formulas")
    keys = ("loss_torch", "loss_tensorflow", "loss_rel_diff", "param_max_rel_diff", "param_rel_to_moved",
            "param_torch_vs_f64", "param_tf_vs_f64", "param_forms_diff")
    print(f"{head[0]:>5} {head[1]:>10} {head[2]:>10}" + "".join(f" {h:>12}" for h in head[3:]))
    for step in [0] + report_steps(job["steps"]):
        r = diffs[step]
        print(f"{step:>5} {_fmt(r.get(keys[0]), '.6f'):>10} {_fmt(r.get(keys[1]), '.6f'):>10}"
              + "".join(f" {_fmt(r.get(k)):>12}" for k in keys[2:]))
    print(verdict(job, diffs))


def run(cfg: Mapping[str, Any], overrides: Sequence[str] = ()) -> int:
    """The whole check for one composed parity config; returns the exit code."""
    job = make_job("parity", cfg, overrides)
    name = result_name(job)
    out_dir = Path(str(cfg["results_dir"])) / "parity"
    keep = bool(cfg["keep_arrays"])
    workdir = out_dir / name if keep else Path(tempfile.mkdtemp(prefix="parity-"))
    try:
        result = run_jobs([job], workdir)["parity"]
    finally:
        if not keep:
            shutil.rmtree(workdir, ignore_errors=True)
    diffs = compare(job, result, job_data(job))
    write_csv(out_dir / f"{name}.csv", result_rows(job, diffs), COLUMNS)
    write_json(out_dir / f"{name}.json", {
        "date": time.strftime("%Y-%m-%dT%H:%M:%S%z"), "job": job, "frameworks": result["describe"]})
    print_table(job, diffs)
    print(f"per-step results: {out_dir / (name + '.csv')}")
    return 0


# ------------------------------------------------------------------ the report's section
def _summary(csv_path: Path) -> dict[str, Any] | None:
    """The numbers of one parity CSV at steps 0, 1, 10 and N (None if it is not one)."""
    import pandas as pd

    try:
        df = pd.read_csv(csv_path)
    except (OSError, ValueError):
        return None
    if set(COLUMNS) - set(df.columns) or df.empty:
        return None
    first = df.iloc[0]
    n = int(first["steps"])
    at = df.set_index("step")
    out = {key: first[key] for key in ("optimizer", "impl", "init", "mode", "device", "precision", "dataset")}
    out.update(batch=int(first["batch_size"]), seed=int(first["seed"]), n=n, start=at.at[0, "param_max_rel_diff"])
    for label, step in (("1", 1), ("10", min(10, n)), ("N", n)):
        out[f"loss@{label}"] = at.at[step, "loss_rel_diff"]
        out[f"param@{label}"] = at.at[step, "param_max_rel_diff"]
    for key in ("params_over_bound", "param_rel_to_moved", "param_torch_vs_f64", "param_tf_vs_f64",
                "param_forms_diff"):
        out[key] = at.at[n, key]
    return out


def _display(summary) -> Any:
    """The report's table: one row per check, the differences at steps 1, 10 and N."""
    def setup(r: Mapping[str, Any]) -> str:
        extra = [f"init {r['init']}" if r["init"] != "shared" else "", r["mode"] if r["mode"] != "eager" else "",
                 r["device"] if r["device"] != "cpu" else "", r["precision"] if r["precision"] != "fp32" else ""]
        return " · ".join([f"bs {r['batch']}", f"seed {r['seed']}", f"N {r['n']}", r["dataset"]] + [e for e in extra if e])

    return summary.assign(setup=summary.apply(setup, axis=1), agree=(summary["param@N"] <= TOLERANCE).map(
        {True: "yes", False: "no"}))[
        ["optimizer", "impl", "setup", "loss@1", "loss@10", "loss@N", "param@1", "param@10", "param@N",
         "params_over_bound", "param_torch_vs_f64", "param_tf_vs_f64", "param_forms_diff", "agree"]
    ].rename(columns={
        "optimizer": "method", "loss@1": "loss @1", "loss@10": "loss @10", "loss@N": "loss @N",
        "param@1": "params @1", "param@10": "params @10", "param@N": "params @N",
        "params_over_bound": f"weights over {BOUND} @N", "param_torch_vs_f64": "torch vs float64 @N",
        "param_tf_vs_f64": "tf vs float64 @N", "param_forms_diff": "formulas apart @N",
        "agree": f"agree (≤{BOUND})"})


def _figure(csv_paths: Sequence[Path], out: Path) -> Path | None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    import pandas as pd

    fig, ax = plt.subplots(figsize=(7, 4))
    drawn = 0
    for path in csv_paths:
        df = pd.read_csv(path).dropna(subset=["param_max_rel_diff"])
        df = df[(df["step"] > 0) & (df["param_max_rel_diff"] > 0)]
        if df.empty:
            continue
        first = df.iloc[0]
        style = "-" if first["impl"] == "reference" else "--"  # colour = method, line = impl
        colour = f"C{list(METHODS).index(first['optimizer'])}" if first["optimizer"] in METHODS else None
        label = f"{first['optimizer']} {first['impl']}" + (f" init {first['init']}" if first["init"] != "shared" else "")
        if first["seed"] != 0:
            label += f" seed {first['seed']}"
        ax.plot(df["step"], df["param_max_rel_diff"], style, color=colour, label=label,
                lw=0.8 if first["init"] != "shared" else 1.5)
        drawn += 1
    if not drawn:
        plt.close(fig)
        return None
    ax.axhline(TOLERANCE, color="grey", lw=0.8)
    ax.set(yscale="log", xlabel="step", ylabel="max |θ_torch − θ_tf| / tensor scale",
           title="Parameters, PyTorch vs TensorFlow (same start, same batches)")
    ax.legend(fontsize=7, ncol=2)
    fig.tight_layout()
    out.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(out, dpi=120)
    plt.close(fig)
    return out


def _words(summary) -> str:
    """The explanation, worded from the numbers in ``summary`` (one row per parity CSV)."""
    paras = [
        "Each check trains the same MLP for N steps in PyTorch and in TensorFlow, in separate processes, "
        "from the same initial weights on the same batches (the first N of a real run). *loss* is the "
        "relative difference of the step's training loss; *params* the largest element difference in any "
        "weight tensor divided by that tensor's largest magnitude; "
        f"*weights over* counts the elements beyond {BOUND} of their tensor's scale. *torch/tf vs "
        "float64* measure each framework against exact (float64 numpy) arithmetic of the formula it is meant "
        "to compute, *formulas apart* the exact runs of the two frameworks' formulas against each other "
        f"(0 when both compute the same one). The bound is {BOUND} (float32)."
    ]
    shared = summary[summary["init"] == "shared"]
    ref = shared[shared["impl"] == "reference"]
    if len(ref):
        inside = ref[ref["param@N"] <= TOLERANCE]
        worst = inside.loc[inside["param@N"].idxmax()] if len(inside) else None
        text = (f"With impl=reference (the seed's formulas, written once per framework) {len(inside)} of "
                f"{len(ref)} checks agree within the bound")
        if worst is not None:
            text += f"; the largest difference among them is {worst['param@N']:.1e} ({worst['optimizer']})"
        paras.append(text + ".")
        for _, r in ref[ref["param@N"] > TOLERANCE].iterrows():
            paras.append(
                f"Reference {r['optimizer']} (seed {r['seed']}) is {r['param@N']:.1e} apart after {r['n']} steps, "
                f"in {int(r['params_over_bound'])} of {N_PARAMS} weights, with the same formula on both sides and "
                f"the loss {r['loss@N']:.1e} apart; exact arithmetic is {r['param_torch_vs_f64']:.1e} from torch "
                f"and {r['param_tf_vs_f64']:.1e} from TensorFlow. "
                + ("That is float32 rounding: such a weight's gradient is a sum that cancels to almost zero, so "
                   "rounding changes it by percents, and the per-weight scaling of RMSProp/Adam turns that into "
                   "a full-size step. The bound holds for most seeds, not for every one."
                   if r["params_over_bound"] <= ISOLATED else "That is more than rounding: look for a bug."))
    native = shared[shared["impl"] == "native"]
    for _, r in native.iterrows():
        rule = METHODS[r["optimizer"]].rule if r["optimizer"] in METHODS else ""
        residual = RESIDUAL.get((rule, "tensorflow"), "")
        same = ref[(ref["optimizer"] == r["optimizer"]) & (ref["seed"] == r["seed"])]
        versus = f" (reference: {same['param@N'].max():.1e})" if len(same) else ""
        if residual and r["param_forms_diff"] > TOLERANCE:
            paras.append(
                f"Native {r['optimizer']}: {r['param@N']:.1e} apart after {r['n']} steps{versus}, in "
                f"{int(r['params_over_bound'])} of {N_PARAMS} weights; the loss {r['loss@N']:.1e} apart. "
                f"Not a bug: {residual}. Exact arithmetic of torch's formula (the seed's) and of Keras' formula "
                f"gives runs {r['param_forms_diff']:.1e} apart, while each framework is within "
                f"{max(r['param_torch_vs_f64'], r['param_tf_vs_f64']):.1e} of its own formula: the difference is "
                f"the ε placement, largest for weights whose gradients are tiny (√s or √v̂ comparable to ε).")
        else:
            how = " (with lr·(1−β) for the seed's EMA momentum)" if rule == "momentum" else ""
            paras.append(f"Native {r['optimizer']}: {r['param@N']:.1e} apart after {r['n']} steps{versus}; the "
                         f"built-in optimizers compute the seed's update here{how}.")
    for _, r in summary[summary["init"] == "native"].iterrows():
        paras.append(
            f"init=native ({r['optimizer']}, {r['impl']}): each framework's own default initialisation; the "
            f"parameters start {r['start']:.2f} of their scale apart (torch: U(±1/√fan_in) weights and biases; "
            f"Keras: Glorot-uniform kernels, zero biases), so curves from native inits differ from the start.")
    return "\n\n".join(paras)


def epoch_agreement(results_dir: Path) -> Any:
    """Full runs with impl=reference in both frameworks: the largest relative difference of the
    per-epoch training loss, per method (a DataFrame; empty when no such pair exists)."""
    import pandas as pd

    frames = []
    for path in sorted((Path(results_dir) / "runs").glob("*/metrics.csv")):
        try:
            frames.append(pd.read_csv(path))
        except (OSError, ValueError):
            continue
    columns = ["optimizer", "batch_size", "seed", "dataset", "n_train", "lr", "epochs", "max rel diff"]
    if not frames:
        return pd.DataFrame(columns=columns)
    runs = pd.concat(frames, ignore_index=True)
    key = ["optimizer", "batch_size", "seed", "dataset", "n_train", "lr", "mode", "device", "epoch"]
    if not set(key + ["impl", "framework", "train_loss"]) <= set(runs.columns):
        return pd.DataFrame(columns=columns)
    runs = runs[(runs["impl"] == "reference") & (runs["epoch"] > 0) & runs["train_loss"].notna()]
    wide = runs.pivot_table(index=key, columns="framework", values="train_loss", aggfunc="last")
    if not {"torch", "tensorflow"} <= set(wide.columns):
        return pd.DataFrame(columns=columns)
    wide = wide.dropna(subset=["torch", "tensorflow"])
    wide["rel"] = (wide["torch"] - wide["tensorflow"]).abs() / wide["torch"].abs()
    out = wide.reset_index().groupby(key[:-1], as_index=False).agg(epochs=("epoch", "max"), rel=("rel", "max"))
    return out.rename(columns={"rel": "max rel diff"})[columns]


def report_section(results_dir: Path) -> ReportSection | None:
    """'Do the frameworks agree?': every parity CSV under ``results_dir/parity``, or None."""
    import pandas as pd

    paths = sorted((Path(results_dir) / "parity").glob("*.csv"))
    rows = [r for r in (_summary(p) for p in paths) if r is not None]
    if not rows:
        return None
    epochs = epoch_agreement(Path(results_dir))
    order = {name: i for i, name in enumerate(METHODS)}
    summary = pd.DataFrame(rows).sort_values(
        ["init", "impl", "optimizer", "seed"], ascending=[False, False, True, True], ignore_index=True,
        key=lambda col: col.map(order) if col.name == "optimizer" else col)
    figure = _figure([p for p in paths if _summary(p) is not None], Path(results_dir) / "parity" / "parity.png")
    text = _words(summary)
    if len(epochs):
        worst = epochs.loc[epochs["max rel diff"].idxmax()]
        text += (f"\n\nFull runs with impl=reference in both frameworks ({len(epochs)} pairs, "
                 f"{', '.join(dict.fromkeys(epochs['optimizer']))}): the per-epoch training losses agree to "
                 f"{worst['max rel diff']:.1e} relative at worst ({worst['optimizer']}, {int(worst['epochs'])} "
                 f"epoch(s)); the target is 1e-3.")
    return ReportSection(title="Do the frameworks agree?", text=text, table=_display(summary),
                         figures=[figure] if figure else [])


# ------------------------------------------------------------------ entry points
def main() -> int:
    import hydra
    from hydra.core.hydra_config import HydraConfig
    from omegaconf import DictConfig, OmegaConf

    codes: list[int] = []

    @hydra.main(version_base="1.3", config_path="../../conf", config_name="parity")
    def _main(cfg: DictConfig) -> None:
        try:
            codes.append(run(OmegaConf.to_container(cfg, resolve=True), HydraConfig.get().overrides.task))
        except BadInput as exc:
            codes.append(error(str(exc)))
        except ParityError as exc:
            print(f"error: {exc}", file=sys.stderr, flush=True)
            codes.append(EXIT_BAD_INPUT if exc.code == EXIT_BAD_INPUT else 1)

    def _checks() -> int:
        _main()
        return max(codes, default=0)  # with -m, the worst of the checks

    return entry(_checks)

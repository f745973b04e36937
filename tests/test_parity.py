"""PyTorch and TensorFlow, step by step: same start, same batches, 50 steps.

All comparisons run in one child process per framework (``bench.parity.run.run_jobs``), on the
4,000 embedded training digits with each method's own batch (bgd: all 4,000, sgd: 1, else 32);
the pytest process itself imports neither framework. The verdict's wording for float32
rounding is checked on a case built on purpose, not on an accident of this CPU.
"""
from __future__ import annotations

import csv
import re
from pathlib import Path

import numpy as np
import pytest
from conftest import ROOT, run_cli
from hydra import compose, initialize_config_dir
from omegaconf import OmegaConf

from bench.frameworks import NAMES
from bench.optimizers import METHODS, NumpyStep, computed_rule, get_rule
from bench.parity.compare import COLUMNS, TOLERANCE, compare, isolated, param_diff, result_rows, verdict
from bench.parity.run import job_data, job_pairs, make_job, result_name, run_jobs
from bench.parity.section import report_section
from bench.results import METRIC_COLUMNS, write_csv
from bench.spec import conf_group
from models.init import initial_weights
from models.layers import parse_model

# Every case trains in child processes; one xdist worker runs them all, so the module's
# batch of parity runs is computed once.
pytestmark = [pytest.mark.slow, pytest.mark.xdist_group("parity")]

N = 50
# Methods whose native optimizer computes the method's rule in every framework, and those where some
# framework's native optimizer computes a variant (Keras' ε placements, optax's Adagrad): bench.optimizers says.
EXACT_NATIVE = [n for n, m in METHODS.items() if all(computed_rule(m.rule, fw, "native") == m.rule for fw in NAMES)]
VARIANT_NATIVE = [n for n in METHODS if n not in EXACT_NATIVE]
MLP = parse_model(conf_group("model", "mlp"))  # every check here trains the tutorial's MLP (the default)
N_PARAMS = MLP.n_params
ISOLATED = isolated(N_PARAMS)


def _jobs() -> list[dict]:
    def job(key: str, *overrides: str) -> dict:
        cfg = OmegaConf.to_container(compose(config_name="parity", overrides=list(overrides)), resolve=True)
        return make_job(key, cfg)

    with initialize_config_dir(config_dir=str(ROOT / "conf"), version_base="1.3"):
        jobs = [job(f"{name}-{impl}", f"optimizer={name}", f"impl={impl}")
                for impl in ("reference", "native") for name in METHODS]
        jobs.append(job("init-native", "optimizer=minibatch", "init=native", "steps=1"))
    return jobs


@pytest.fixture(scope="module")
def batch(tmp_path_factory: pytest.TempPathFactory) -> dict:
    jobs = _jobs()
    results = run_jobs(jobs, tmp_path_factory.mktemp("parity"))
    return {job["key"]: {"job": job, "raw": results[job["key"]],
                         "rows": compare(job, results[job["key"]], job_data(job))}
            for job in jobs}


@pytest.mark.parametrize("name", list(METHODS))
def test_reference_agrees_to_1e4_after_50_steps(batch: dict, name: str) -> None:
    """At the default seed 0. For RMSProp and Adam the bound is not seed-proof (a weight whose
    gradient cancels to float32 noise can cross it): see test_rounding_in_one_cancelling_weight_*."""
    last = batch[f"{name}-reference"]["rows"][N]
    assert last["param_max_rel_diff"] < 1e-4 and last["params_over_bound"] == 0, last
    assert last["loss_rel_diff"] < 1e-6, last
    assert last["param_forms_diff"] == 0.0  # both frameworks are meant to compute the same formula


@pytest.mark.parametrize("name", EXACT_NATIVE)
def test_native_optimizers_that_compute_the_rule_agree_to_1e4(batch: dict, name: str) -> None:
    last = batch[f"{name}-native"]["rows"][N]
    assert last["param_max_rel_diff"] < 1e-4, last


@pytest.mark.parametrize("name", VARIANT_NATIVE)
def test_native_variants_differ_by_their_formula(batch: dict, name: str) -> None:
    """The gap is the formula (Keras' ε inside the root or ε-hat): numpy with the variant reproduces it,
    rounding cannot."""
    native = batch[f"{name}-native"]["rows"][N]
    reference = batch[f"{name}-reference"]["rows"][N]
    measured = native["param_max_rel_diff"]
    assert measured > 1e-2 and measured > 1000 * reference["param_max_rel_diff"], (native, reference)
    # Exact (float64) runs of torch's formula and of Keras' formula are as far apart as the frameworks...
    assert 0.5 < native["param_forms_diff"] / measured < 2, native
    # ...and each framework is close to its own formula: the difference is the formula, not rounding.
    assert native["param_tf_vs_f64"] < 1e-2 * measured and native["param_torch_vs_f64"] < 1e-2 * measured, native
    assert native["params_over_bound"] > ISOLATED  # not a few weights: all the small-gradient ones
    assert "differ by formula" in verdict(batch[f"{name}-native"]["job"], batch[f"{name}-native"]["rows"])


RMSPROP = {"lr": 1e-3, "beta": 0.9, "eps": 1e-8}
CANCELLING = ("w1", 300, 7)  # the weight whose gradient is a sum that cancels to almost zero


def _one_step(grads: dict, lr_factor: float = 1.0) -> dict:
    """The shared start after one RMSProp step (the tutorial's formula, float64) with ``grads``."""
    start = initial_weights(0, MLP)
    hp = {**RMSPROP, "lr": RMSPROP["lr"] * lr_factor}
    rule, out = get_rule("rmsprop"), {}
    for n in MLP.param_names:
        theta = start[n].astype(np.float64)
        out[n] = theta - rule.update(theta, grads[n], {"s": np.zeros_like(theta)}, NumpyStep(1), hp)[0]
    return out


def _cancelling_case(lr_factor_b: float = 1.0) -> tuple[dict, list[dict]]:
    """Two frameworks one RMSProp step apart in one weight only, as float32 rounding does it.

    Every gradient is the same on both sides, except that one weight's gradient is a sum whose
    terms cancel: the exact sum is 0, and each side's rounding leaves ±1e-7 of it. That is tiny
    in absolute terms, 200 % in relative ones, and RMSProp divides each gradient by its own RMS,
    so ±1e-7 becomes a step of ±2.4·lr, as large as any other weight's.
    """
    rng = np.random.default_rng(1)
    grads = {n: rng.normal(0, 1e-2, w.shape) for n, w in initial_weights(0, MLP).items()}
    exact, a, b = ({n: g.copy() for n, g in grads.items()} for _ in range(3))
    name, i, j = CANCELLING
    exact[name][i, j], a[name][i, j], b[name][i, j] = 0.0, 1e-7, -1e-7
    assert abs(a[name][i, j] - b[name][i, j]) < 1e-6 < abs(a[name][i, j] - b[name][i, j]) / abs(a[name][i, j])
    pa, pb, p64 = _one_step(a), _one_step(b, lr_factor_b), _one_step(exact)
    start = initial_weights(0, MLP)
    rows = [{"step": 0, "param_max_rel_diff": param_diff(start, start)[1]}]
    _, rel, over = param_diff(pa, pb)
    rows.append({"step": 1, "loss_torch": 0.7, "loss_tensorflow": 0.7, "loss_rel_diff": 0.0,
                 "param_max_rel_diff": rel, "params_over_bound": over,
                 "param_torch_vs_f64": param_diff(pa, p64)[1], "param_tf_vs_f64": param_diff(pb, p64)[1],
                 "param_forms_diff": 0.0})  # the same formula on both sides
    job = {"steps": 1, "specs": {"torch": {"init": "shared", "optimizer": {"name": "rmsprop", **RMSPROP},
                                           "model": MLP.as_config()}}}
    return job, rows


def test_rounding_in_one_cancelling_weight_reads_as_rounding() -> None:
    job, rows = _cancelling_case()
    last = rows[-1]
    assert last["param_max_rel_diff"] > 10 * TOLERANCE and last["params_over_bound"] == 1, last
    assert "agree to float32 rounding" in verdict(job, rows)
    assert f"in 1 of {N_PARAMS} weights" in verdict(job, rows)


def test_a_difference_in_every_weight_does_not_read_as_rounding() -> None:
    """The same case with a 1.5x learning rate on one side: every weight moves apart."""
    job, rows = _cancelling_case(lr_factor_b=1.5)
    assert rows[-1]["params_over_bound"] > ISOLATED
    assert verdict(job, rows).startswith("DIFFER beyond rounding")


def test_shared_init_is_identical_and_native_init_is_not(batch: dict) -> None:
    for name in METHODS:
        assert batch[f"{name}-reference"]["rows"][0]["param_max_rel_diff"] == 0.0
    native = batch["init-native"]
    assert native["rows"][0]["param_max_rel_diff"] > 0.5
    assert verdict(native["job"], native["rows"]).startswith("differ from the start (init=native)")
    torch0, tf0 = native["raw"]["torch"], native["raw"]["tensorflow"]
    assert np.all(tf0["b1"][0] == 0) and np.all(tf0["b2"][0] == 0)  # Keras: zero biases
    assert np.all(torch0["b1"][0] != 0)  # torch: U(±1/√fan_in) biases
    shared = batch["minibatch-reference"]["raw"]["torch"]
    assert not np.array_equal(torch0["w1"][0], shared["w1"][0])  # torch's RNG, not the numpy draw


def test_cli_writes_csv_prints_the_table_and_repeats_across_processes(batch: dict, results: Path) -> None:
    proc = run_cli("optimizer=adam", "impl=reference", f"results_dir={results}", module="bench.parity")
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert "agree: parameters within" in proc.stdout
    path = results / "parity" / "adam-reference-bs32-s0.csv"
    with open(path, newline="") as fh:
        rows = list(csv.DictReader(fh))
    assert set(COLUMNS) <= set(rows[0]) and [int(r["step"]) for r in rows] == list(range(N + 1))
    assert (results / "parity" / "adam-reference-bs32-s0.json").is_file()
    # New processes, the same numbers as the batch above: both runners are bitwise repeatable.
    for fw in ("torch", "tensorflow"):
        assert [float(r[f"loss_{fw}"]) for r in rows[1:]] == batch["adam-reference"]["raw"][fw]["loss"].tolist()

    section = report_section(results)
    assert section is not None and section.title == "Do the frameworks agree?"
    # One row per pair of frameworks: torch–tensorflow, torch–jax, tensorflow–jax.
    assert list(section.table["frameworks"]) == ["torch–tensorflow", "torch–jax", "tensorflow–jax"]
    assert set(section.table["agree (≤1e-4)"]) == {"yes"}
    assert (results / "parity" / "adam-reference-bs32-s0-torch-jax.csv").is_file()


def test_report_section_explains_the_native_residuals(batch: dict, tmp_path: Path) -> None:
    for key in ("rmsprop-native", "adam-native", "rmsprop-reference", "adam-reference", "sgd-native",
                "init-native"):
        entry = batch[key]
        name = result_name(entry["job"])
        write_csv(tmp_path / "parity" / f"{name}.csv", result_rows(entry["job"], entry["rows"]), COLUMNS)
    for fw, loss in (("torch", 0.5), ("tensorflow", 0.5001)):  # two full runs, one epoch each
        write_csv(tmp_path / "runs" / fw / "metrics.csv", [
            {"framework": fw, "optimizer": "adam", "impl": "reference", "mode": "eager", "lr": 0.001,
             "batch_size": 32, "seed": 0, "dataset": "mnist_embedded", "n_train": 4000, "device": "cpu",
             "epoch": epoch, "train_loss": 2.3 if epoch == 0 else loss} for epoch in (0, 1)], METRIC_COLUMNS)
    section = report_section(tmp_path)
    assert section is not None and len(section.table) == 6
    assert "per-epoch training losses agree to 2.0e-04 relative at worst (adam" in section.text
    assert "2 of 2 checks agree" in section.text
    assert "ε inside the root" in section.text and "ε-hat" in section.text
    assert "init=native" in section.text
    assert section.figures and section.figures[0].is_file()
    assert report_section(tmp_path / "nothing") is None


# Every model but the tutorial's MLP, in float64. In float32 the adaptive rules on these deeper
# models turn rounding into full-size steps (docs/parity.md); in float64 nothing is left to amplify,
# so the frameworks must agree with each other and with the numpy reference to near float64's
# own precision: the same layers, layouts, start, batches and rule, for every method.
OTHER_MODELS = sorted(p.stem for p in (ROOT / "conf" / "model").glob("*.yaml") if p.stem != "mlp")
F64_STEPS, F64_BOUND = 10, 1e-9


@pytest.fixture(scope="module")
def float64(tmp_path_factory: pytest.TempPathFactory) -> dict:
    with initialize_config_dir(config_dir=str(ROOT / "conf"), version_base="1.3"):
        jobs = [make_job(f"{model}-{name}", OmegaConf.to_container(compose(config_name="parity", overrides=[
                    f"model={model}", f"optimizer={name}", "impl=reference", "precision=fp64", "seed=7",
                    f"steps={F64_STEPS}", "batch_size=32"]), resolve=True))
                for model in OTHER_MODELS for name in METHODS]
    results = run_jobs(jobs, tmp_path_factory.mktemp("parity64"))  # a process per framework, all in float64
    out = {}
    for job in jobs:
        exact: dict = {}
        out[job["key"]] = {tuple(pair): compare(job, results[job["key"]], job_data(job), pair, exact)
                           for pair in job_pairs(job)}
    return out


@pytest.mark.parametrize("model", OTHER_MODELS)
@pytest.mark.parametrize("name", list(METHODS))
def test_in_float64_every_pair_of_frameworks_computes_the_same_steps(float64: dict, model: str, name: str) -> None:
    for pair, rows in float64[f"{model}-{name}"].items():
        for row in rows:
            if "param_max_rel_diff" in row:
                assert row["param_max_rel_diff"] < F64_BOUND, (pair, row)
                assert max(row["param_a_vs_f64"], row["param_b_vs_f64"]) < F64_BOUND, (pair, row)
            if row["step"]:
                assert row["loss_rel_diff"] < F64_BOUND, (pair, row)


@pytest.mark.parametrize("args, message", [
    (["steps=0"], "steps must be an integer >= 1"),
    (["impl=bogus"], "impl='bogus' is not one of"),
    (["sensitivity=maybe"], "sensitivity must be true or false, got 'maybe'"),
    (["keep_arrays=maybe"], "keep_arrays must be true or false, got 'maybe'"),
    (["~data"], "~data: a run cannot do without its data group"),
    # one bad check in a sweep: bad input for the whole sweep, the good one is not run either
    (["-m", "steps=0,3"], "steps=0 results_dir="),
])
def test_bad_input_is_one_line_and_exit_2(args: list[str], message: str, results: Path) -> None:
    proc = run_cli(*args, f"results_dir={results}", module="bench.parity")
    assert proc.returncode == 2, proc.stderr
    assert proc.stderr.strip().splitlines() == [proc.stderr.strip()] and message in proc.stderr
    assert not (results / "parity").exists() and "parity " not in proc.stdout
    if "-m" not in args:
        assert not results.exists()  # not even Hydra's own folder


@pytest.mark.slow
def test_a_sweep_of_checks_prints_one_line_each_and_writes_every_table(results: Path) -> None:
    proc = run_cli("-m", "optimizer=sgd,adam", "impl=reference", "steps=5", f"results_dir={results}",
                   module="bench.parity")
    assert proc.returncode == 0, proc.stderr[-3000:]
    lines = [line for line in proc.stdout.splitlines() if line.startswith("parity ")]
    assert [line.split()[1] for line in lines] == ["sgd/reference", "adam/reference"], proc.stdout
    for line in lines:  # every pair of the registry's frameworks, each with a worded verdict and its figure
        assert line.count(" vs ") == len(NAMES) * (len(NAMES) - 1) // 2
        assert all(re.search(r"(agree|differ|DIFFER)[^;]* \(\d\.\de[-+]\d\d\)", part) for part in line.split("; "))
    assert "per-step results" not in proc.stdout  # no table: they are in the CSVs
    assert len(list((results / "parity").glob("*.csv"))) == 2 * len(NAMES) * (len(NAMES) - 1) // 2

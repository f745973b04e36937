"""Execution modes compute the same thing; bench.perf and bench.perf.gpu_check run and write sane
tables. No speed is asserted here: timings on a shared machine are not test material."""
from __future__ import annotations

import csv
import math
import os
from pathlib import Path

import pytest

from bench import frameworks
from bench.optimizers import METHODS
from bench.perf import layers
from bench.perf.cases import COLUMNS, build_rows
from bench.perf.section import report_section
from bench.report.sections import ReportSection
from bench.spec import build_spec
from bench.spec import compose as compose_plain
from models.layers import parse_model
from tests.conftest import ROOT, SMALL, run_cli


def _last_epoch(results: Path) -> dict[str, str]:
    (metrics,) = (results / "runs").glob("*/metrics.csv")
    with open(metrics, newline="") as fh:
        return list(csv.DictReader(fh))[-1]


@pytest.mark.slow
@pytest.mark.parametrize("framework", ["torch", "tensorflow"])
def test_compiled_matches_eager_after_an_epoch(tmp_path: Path, framework: str) -> None:
    last = {}
    for mode in ("eager", "compiled"):
        out = tmp_path / mode
        proc = run_cli(f"framework={framework}", f"mode={mode}", "optimizer=adam", "epochs=1",
                       "progress=none", f"results_dir={out}", *SMALL)
        assert proc.returncode == 0, proc.stderr[-2000:]
        last[mode] = _last_epoch(out)
        assert last[mode]["mode"] == mode and last[mode]["status"] == "completed"
        assert 0 <= float(last[mode]["overhead_frac"]) < 1
    for key in ("train_loss", "step_loss_mean", "test_loss"):
        eager, compiled = float(last["eager"][key]), float(last["compiled"][key])
        assert abs(compiled / eager - 1) < 1e-5, (key, eager, compiled)


@pytest.mark.slow
def test_perf_quick_writes_a_sane_table(tmp_path: Path) -> None:
    proc = run_cli("quick=true", "batches=32", "modes=eager", f"results_dir={tmp_path}", module="bench.perf",
                   timeout=600)
    assert proc.returncode == 0, proc.stderr[-2000:]
    with open(tmp_path / "perf" / "perf.csv", newline="") as fh:
        rows = list(csv.DictReader(fh))
    assert list(rows[0]) == list(COLUMNS)
    assert {"epoch_time_s_lo", "epoch_time_s_hi", "vs_naive_torch_lo", "x_floor_hi", "vs_torch_lo"} <= set(COLUMNS)
    cases = {r["case"] for r in rows}
    assert cases == {"naive torch DataLoader", "naive keras fit", "naive jax loop", "harness torch eager",
                     "harness tensorflow eager", "harness jax eager"}
    for row in rows:
        assert row["error"] == "", row
        assert float(row["epoch_time_s"]) > 0 and float(row["samples_per_s"]) > 0
        assert all(math.isfinite(float(row[k])) for k in ("vs_naive_torch", "vs_naive_tf", "vs_naive_jax"))
        assert float(row["floor_s"]) > 0 and float(row["x_floor"]) > 0
        assert float(row["gemm_floor_s"]) > 0 and float(row["x_gemm"]) > 0  # the products at their shapes
        assert row["reps"] == "1" and math.isnan(float(row["epoch_time_s_lo"]))  # quick: one epoch, no interval
    section = report_section(tmp_path)
    assert isinstance(section, ReportSection) and section.title == "Speed" and len(section.table) == 6
    assert "Batch 32, best mode" in section.text and "Failed" not in section.text
    assert "(n=1, no interval)" in section.table.iloc[0]["epoch time (s)"]
    assert report_section(tmp_path / "nothing") is None


MLP = compose_plain("torch", "adam", "mnist_embedded")["model"]
LENET = compose_plain("torch", "adam", "mnist_embedded", "lenet5")["model"]


def _case(kind: str, framework: str, times: list[float], batch: int | str = 32, model: dict = MLP) -> tuple:
    job = {"device": "cpu", "threads": 1, "kind": kind, "framework": framework,
           "mode": "naive" if kind == "naive" else "eager", "batch": batch, "model": model}
    return job, {"epoch_times": times, "cpu_times": times, "steps": 10, "n_train": 320}


def test_ratios_are_against_the_naive_loop_of_the_same_batch() -> None:
    results = [_case("naive", "torch", [12.0]), _case("naive", "tensorflow", [4.0]),
               _case("harness", "torch", [2.0]), _case("harness", "tensorflow", [1.0]),
               ({"device": "cpu", "threads": 1, "kind": "harness", "framework": "torch", "mode": "eager",
                 "batch": "full", "model": MLP}, {"error": "boom"}),
               _case("harness", "jax", [2.0], model=LENET)]
    rows = build_rows(results, {"gflop": 100.0, "times": [1.0]}, dataset="x")  # 100 GFLOP/s
    assert rows[2]["vs_naive_torch"] == 6.0 and rows[2]["vs_naive_tf"] == 2.0
    # The floor is the model's FLOPs at the matmul rate: 409,088 per sample for the MLP, 2,263,920 for LeNet-5.
    assert rows[2]["floor_s"] == pytest.approx(320 * 409_088 / 100e9) and rows[2]["model"] == "mlp"
    assert rows[5]["floor_s"] == pytest.approx(320 * 2_263_920 / 100e9) and rows[5]["model"] == "lenet5"
    assert rows[2]["step_time_us"] == pytest.approx(2e5)
    assert rows[3]["vs_torch"] == 2.0 and "vs_torch" not in rows[2]  # tensorflow eager against torch eager
    assert rows[4]["error"] == "boom" and "x_floor" not in rows[4]
    assert math.isnan(rows[2]["epoch_time_s_lo"])  # one epoch: no interval


def test_every_time_and_ratio_has_an_interval_around_its_median() -> None:
    naive = [12.0, 12.5, 11.8, 12.2, 13.0, 12.1, 11.9]
    harness = [2.0, 2.1, 1.9, 2.05, 2.4, 1.95, 2.02]
    results = [_case("naive", "torch", naive), _case("harness", "torch", harness)]
    matmul = {"gflop": 100.0, "times": [1.0, 1.1, 0.9, 1.05, 0.95], "cpu_times": [1.0, 1.2, 0.9, 1.1, 0.95]}
    row = build_rows(results, matmul, dataset="x")[1]
    assert row["epoch_time_s"] == pytest.approx(2.02) and row["reps"] == 7
    for key in ("epoch_time_s", "step_time_us", "samples_per_s", "cpu_time_s", "vs_naive_torch", "x_floor",
                "cpu_vs_naive_torch", "cpu_x_floor"):
        assert row[f"{key}_lo"] < row[f"{key}_hi"], key
        assert row[f"{key}_lo"] <= row[key] <= row[f"{key}_hi"], key
    assert row["vs_naive_torch"] == pytest.approx(12.1 / 2.02)  # the ratio of the medians
    assert row["vs_naive_torch_lo"] > 5  # the samples barely spread: the interval stays near 6x
    assert "x_gemm" not in row  # no products timed: no second floor, not a wrong one


def test_the_second_floor_sums_the_steps_products_round_by_round() -> None:
    """x_gemm: the epoch against its steps' matrix products, each timed at its own shape and layout."""
    products = [p for per_layer in parse_model(MLP).gemms(32) for p in per_layer]
    assert [tuple(p[3:]) for p in products] == [(False, False), (True, False), (False, False), (True, False),
                                                (False, True)]  # the weight gradients read their input transposed
    rounds = [1.0, 1.2, 0.8, 1.1, 0.9]  # a machine speeding up and slowing down: every product with it
    gemm = {p: [p.flops / 50e9 * r for r in rounds] for p in products}  # 50 GFLOP/s at every shape
    assert layers.gemm_floor(gemm, products) == pytest.approx([409_088 * 32 / 50e9 * r for r in rounds])
    harness = [2.0, 2.1, 1.9, 2.05, 2.4, 1.95, 2.02]
    full = ({"device": "cpu", "threads": 1, "kind": "harness", "framework": "torch", "mode": "eager",
             "batch": "full", "model": MLP}, {"epoch_times": [3.0], "steps": 1, "n_train": 320})
    row, whole = build_rows([_case("harness", "torch", harness), full], {"gflop": 100.0, "times": [1.0]}, "x", gemm)
    floor = 10 * 409_088 * 32 / 50e9  # ten steps of batch 32
    assert row["gemm_floor_s"] == pytest.approx(floor) and row["x_gemm"] == pytest.approx(2.02 / floor)
    assert row["x_gemm_lo"] < row["x_gemm"] < row["x_gemm_hi"]
    assert "x_gemm" not in whole  # the full batch's products are not timed
    assert "x_gemm" not in build_rows([_case("harness", "torch", harness)], {"gflop": 100.0, "times": [1.0]}, "x",
                                      dict(list(gemm.items())[1:]))[0]  # one product missing: no floor


def test_blocks_are_differences_of_prefixes_paired_by_round() -> None:
    """Prefix k's pass less prefix k-1's, round by round; the rest is the harness step less all layers."""
    job = {"framework": "jax", "mode": "eager", "batch": 32, "model": LENET}
    rounds = 5
    block_s = [4e-4, 1e-4, 2e-4, 6e-4, 5e-5, 6e-5, 1e-5, 1e-4, 3e-5, 5e-5, 1e-5, 2e-5]  # LeNet-5's 12 layers
    drift = [1.0, 1.1, 0.9, 1.05, 1.2]  # a machine getting slower and faster round by round
    call_s = 3e-5  # what every pass pays: the empty prefix
    prefixes = [[(call_s + sum(block_s[:k])) * d for d in drift] for k in range(len(block_s) + 1)]
    harness = {"epoch_times": [0.2, 0.21, 0.19], "steps": 100}  # 2 ms a step
    lenet = parse_model(LENET)
    gemm = {p: [p.flops / 50e9] * rounds for g in lenet.gemms(32) for p in g}  # 50 GFLOP/s at every shape
    rows = layers.rows(job, {"pass_times": prefixes}, harness, {"gflops": 171.8}, gemm)
    assert [r["block"] for r in rows] == [layers.CALL, *range(1, 13), layers.WHOLE, layers.REST, layers.STEP]
    assert [r["layers"] for r in rows[1:5]] == ["conv2d 6@5x5 same", "relu", "maxpool2d 2", "conv2d 16@5x5 valid"]
    call, rows = rows[0], rows[1:]
    assert call["time_us"] == pytest.approx(call_s * 1.05e6) and math.isnan(call["x_gemm"])
    for row, t in zip(rows, block_s):
        assert row["time_us"] == pytest.approx(t * 1e6 * 1.05)  # the median round's drift, paired
        assert row["time_us_lo"] <= row["time_us"] <= row["time_us_hi"] and row["rounds"] == rounds
    for row, flops in zip(rows, lenet.step_flops()):  # 171.8 GFLOP/s: the rate is FLOPs over time
        assert row["flop_per_sample"] == flops
        if not flops:  # relu, pooling, flatten: time but no rate, no floor
            assert math.isnan(row["gflops"]) and math.isnan(row["x_floor"]) and math.isnan(row["x_gemm"])
            continue
        assert row["gflops"] == pytest.approx(flops * 32 / (row["time_us"] * 1e-6) / 1e9)
        assert row["x_floor"] == pytest.approx(171.8 / row["gflops"])
        assert row["gemm_floor_us"] == pytest.approx(flops * 32 / 50e3)  # its products at their shapes' rate
        assert row["x_gemm"] == pytest.approx(50 / row["gflops"])
    whole, rest, step = rows[12:]
    assert whole["time_us"] == pytest.approx((call_s + sum(block_s)) * 1.05e6) and whole["flop_per_sample"] == 2_263_920
    assert step["time_us"] == pytest.approx(2000) and rest["time_us"] == pytest.approx(2000 - whole["time_us"])
    assert rest["time_us_lo"] <= rest["time_us"] <= rest["time_us_hi"] and math.isnan(rest["gflops"])
    assert rest["share_of_step"] + whole["share_of_step"] == pytest.approx(1)
    assert whole["gemm_floor_us"] == step["gemm_floor_us"] == pytest.approx(2_263_920 * 32 / 50e3)
    split = layers.parts([call, *rows])  # the figure's stacked parts of the step
    assert list(split) == [name for name, _ in layers.PARTS]
    assert list(split.values()) == pytest.approx([31.5, 1050, 178.5, 483, 2000 - 1743])
    said = layers.summary([call, *rows])
    assert said == [f"Where the step goes (lenet5, batch 32; bench.perf.layers): jax eager: 2,000 µs a step, "
                    f"{step['x_gemm']:.3g}× the floor its products' shapes allow ({step['x_floor']:.3g}× the FLOP "
                    "floor); costliest: conv2d 16@5x5 valid 32%, conv2d 6@5x5 same 21%, maxpool2d 2 10%; "
                    "the call 2%, the rest of the step 13%."]
    missing = layers.rows(job, {"pass_times": prefixes}, harness, {"gflops": 171.8},
                          dict(list(gemm.items())[1:]))  # a shape not timed: no shape-aware floor, not a wrong one
    assert math.isnan(missing[13]["x_gemm"]) and sum(math.isfinite(r["x_gemm"]) for r in missing) < 5
    failed = layers.rows(job, {"error": "boom"}, harness, {})
    assert failed == [{"framework": "jax", "mode": "eager", "model": "lenet5", "batch_size": 32,
                       "block": layers.WHOLE, "error": "boom"}]


def test_passes_are_interleaved_round_by_round_after_a_warm_up() -> None:
    calls: list[str] = []
    passes = [lambda name=name: calls.append(name) for name in "abc"]
    out = layers.time_passes(passes, rounds=3, sample_s=0)
    assert calls[:9] == list("aaabbbccc")  # two warm-up calls and one sizing call each
    assert calls[9:] == list("abc") * 3  # then one sample of each per round (one call: sample_s=0)
    assert [len(t) for t in out] == [3, 3, 3] and all(x >= 0 for t in out for x in t)


def test_compose_reads_the_conf_files_as_hydra_does(compose) -> None:
    """bench.spec.compose (no omegaconf: make gpu-check uses it) gives Hydra's config, so the same spec."""
    for fw in ("torch", "tensorflow"):
        for method in METHODS:
            hydra_cfg = compose(f"framework={fw}", f"optimizer={method}", "data=fashion_mnist")
            hydra_cfg.pop("hydra", None)
            assert build_spec(compose_plain(fw, method, "fashion_mnist")) == build_spec(hydra_cfg)


@pytest.mark.parametrize("args", [["bogus=1"], ["batches=0"], ["modes=jit"], ["threads=two"]])
def test_perf_bad_input_is_one_line_and_exit_2(args: list[str]) -> None:
    proc = run_cli(*args, module="bench.perf", timeout=60)
    assert proc.returncode == 2
    assert len(proc.stderr.strip().splitlines()) == 1 and proc.stderr.startswith("error:")


@pytest.mark.slow
@pytest.mark.parametrize("model", ["lenet5", "mlp_deep"])
def test_perf_layers_splits_every_frameworks_step_into_layers(tmp_path: Path, model: str) -> None:
    """Each registered framework's prefix pass builds and times every cut of the model, through the CLI."""
    proc = run_cli("quick=true", "batches=32", "modes=eager", "naive=false", "layers=true", f"model={model}",
                   f"results_dir={tmp_path}", module="bench.perf", timeout=900)
    assert proc.returncode == 0, proc.stderr[-2000:]
    with open(tmp_path / "perf" / "layers.csv", newline="") as fh:
        rows = list(csv.DictReader(fh))
    assert list(rows[0]) == list(layers.COLUMNS)
    n_blocks = len(parse_model(compose_plain("torch", "adam", "mnist_embedded", model)["model"]).blocks())
    for fw in frameworks.NAMES:
        mine = [r for r in rows if r["framework"] == fw]
        assert [r["block"] for r in mine] == [layers.CALL, *map(str, range(1, n_blocks + 1)), layers.WHOLE,
                                              layers.REST, layers.STEP], (fw, mine)
        assert all(r["error"] == "" and r["model"] == model and r["batch_size"] == "32" for r in mine)
        whole = next(r for r in mine if r["block"] == layers.WHOLE)
        assert float(whole["time_us"]) > 0 and float(whole["gflops"]) > 0 and float(whole["x_floor"]) > 0
        # the shape-aware floor: every product shape of the model was timed
        assert 0 < float(whole["gemm_floor_us"]) and float(whole["x_gemm"]) > 0
        assert all(math.isfinite(float(r["time_us"])) for r in mine)
    assert "Where each step's time goes" in proc.stdout and "rest of the step" in proc.stdout
    section = report_section(tmp_path)  # the report's Speed section says and draws where the step goes
    assert section is not None and f"Where the step goes ({model}, batch 32" in section.text
    assert [p.name for p in section.figures] == [f"layers_{model}_bs32.png"]
    assert all(f" {fw} " in section.text or f": {fw} " in section.text for fw in frameworks.NAMES)


@pytest.mark.slow
def test_gpu_check_runs_its_path_on_cpu(tmp_path: Path) -> None:
    """Without Hydra, omegaconf, PyYAML, TensorFlow or JAX importable, as on a bare GPU box."""
    blocker = tmp_path / "blocker"
    blocker.mkdir()
    (blocker / "sitecustomize.py").write_text(
        "import sys\nfor m in ('hydra', 'omegaconf', 'yaml', 'tensorflow', 'keras', 'jax'):\n"
        "    sys.modules[m] = None\n")
    proc = run_cli("device=cpu", f"out={tmp_path}", "methods=sgd,adam", "modes=eager", "limit_train=64",
                   "perf=false", module="bench.perf.gpu_check", timeout=300,
                   env={"PYTHONPATH": f"{blocker}{os.pathsep}{ROOT}"})
    assert proc.returncode == 0, proc.stderr[-2000:]
    with open(tmp_path / "gpu_check.csv", newline="") as fh:
        summary = list(csv.DictReader(fh))
    assert [(r["optimizer"], r["status"]) for r in summary] == [("sgd", "completed"), ("adam", "completed")]
    assert (tmp_path / "gpu_runs.csv").is_file() and (tmp_path / "gpu_check.json").is_file()
    assert [ln for ln in proc.stdout.splitlines() if "JAX" in ln] == [
        next(ln for ln in proc.stdout.splitlines() if ln.startswith("[gpu-check] JAX left out: jax is not importable"))]


def test_the_speed_section_says_only_the_figures_the_run_has(tmp_path: Path) -> None:
    """naive=false: no '- naive torch' in the sentence; both floors where both were measured."""
    from bench.results import write_csv

    products = [p for per_layer in parse_model(MLP).gemms(32) for p in per_layer]
    gemm = {p: [p.flops / 50e9] * 3 for p in products}
    rows = build_rows([_case("harness", "torch", [2.0, 2.1, 1.9]), _case("harness", "jax", [1.0, 1.1, 0.9])],
                      {"gflop": 100.0, "times": [1.0, 1.0, 1.0], "cpu_times": [1.0, 1.0, 1.0]}, "x", gemm)
    (tmp_path / "perf").mkdir()
    write_csv(tmp_path / "perf" / "perf.csv", rows, COLUMNS)
    section = report_section(tmp_path)
    assert section is not None
    (best,) = [line for line in section.text.split("\n\n") if line.startswith("Batch 32")]
    assert "naive" not in best and "Keras" not in best and "- " not in best, best
    assert "FLOP floor, " in best and best.count("its products' floor") == 2, best
    assert "2× [" in best and "torch eager" in best  # jax against torch, with its interval

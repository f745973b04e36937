"""Several models in one results folder, and methods beyond the tutorial, in the report, the
timing pass and ``bench.report.compare``.

Runs and timing passes are synthetic (the harness' own CSV writer and columns): no framework.
Two configurations that differ only by model are never merged, averaged or compared as one;
methods beyond the tutorial's six get a block of their own and never enter the claims.
"""
from __future__ import annotations

import html
import json
import math
import re
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from conftest import run_cli
from helpers import write_fake_run

from bench.optimizers import METHODS, TUTORIAL_METHODS, Method
from bench.report import aggregate, claims, compare, load, speed
from bench.report.groups import BEYOND, model_infos, split_methods
from bench.report.load import RUN_FIGURES
from bench.report.page import build_report
from bench.results import write_csv, write_json
from bench.spec import conf_group
from bench.timing.core import COLUMNS as TIMING_COLUMNS
from bench.timing.core import KEY, sweep_configs
from bench.timing.core import label as core_label
from models.layers import parse_model

pytestmark = pytest.mark.xdist_group("report_models")

N_TRAIN = 320
BATCH = {"minibatch": 32, "sgd": 1, "adam": 32, "nesterov": 32, "adamw": 32}
BEYOND_METHODS = ("nesterov", "adamw")  # not among the tutorial's six, whether METHODS knows them yet or not
# The same configuration in two models; lenet5 reaches other accuracies, and tf's time ratio differs.
FINAL = {"mlp": {"minibatch": 0.80, "sgd": 0.85, "adam": 0.90, "nesterov": 0.88, "adamw": 0.91},
         "lenet5": {"minibatch": 0.60, "sgd": 0.65, "adam": 0.95, "nesterov": 0.93, "adamw": 0.96}}
TF_RATIO = {"mlp": 1.5, "lenet5": 3.0}


def model_config(name: str) -> dict:
    return parse_model(conf_group("model", name)).as_config()


def make_run(results: Path, framework: str, method: str, seed: int, model: str, final: float,
             old_style: bool = False) -> str:
    """One run as the harness writes it. ``old_style``: a run from before models were selectable
    (no model in metrics.csv nor in run.json's spec): it must read as the tutorial's mlp."""
    batch = BATCH[method]
    run_id = f"{framework}-{method}-bs{batch}-s{seed}-{model}"
    base = dict(run_id=run_id, framework=framework, optimizer=method, impl="native", mode="eager", lr=0.01,
                batch_size=batch, seed=seed, dataset="mnist_embedded", n_train=N_TRAIN, n_test=100, device="cpu")
    if not old_style:
        base["model"] = model
    spec = {"framework": {"name": framework}, "optimizer": {"name": method, "impl": "native", "lr": 0.01},
            "mode": "eager", "batch_size": batch, "seed": seed, "data": {"name": "mnist_embedded"},
            "device": "cpu", "threads": 1}
    if not old_style:
        spec["model"] = model_config(model)
    return write_fake_run(results, run_id, base, final, N_TRAIN, spec)


def two_models(results: Path, methods: tuple[str, ...] = ("minibatch", "sgd", "adam", *BEYOND_METHODS),
               models: tuple[str, ...] = ("mlp", "lenet5")) -> None:
    for model in models:
        for fw in ("torch", "tensorflow"):
            for method in methods:
                for seed in (0, 1):
                    make_run(results, fw, method, seed, model, FINAL[model][method], old_style=model == "mlp")


def write_timing(results: Path, ratios: dict[str, float], methods: tuple[str, ...] = ("minibatch", "adam"),
                 with_model: bool = True, seed: int = 0) -> None:
    """A timing pass of torch and tensorflow per model: tensorflow ``ratios[model]`` times torch's time."""
    rng = np.random.default_rng(seed)
    rows = []
    for r in range(7):
        drift = 1 + 0.05 * rng.standard_normal()
        for model, ratio in ratios.items():
            for method in methods:
                for fw, t in (("torch", 1e-3), ("tensorflow", 1e-3 * ratio)):
                    t = t * drift * (1 + 0.005 * rng.standard_normal())
                    rows.append({"framework": fw, "optimizer": method, "impl": "native", "mode": "eager",
                                 "batch_size": BATCH[method], "lr": 0.01, "dataset": "mnist_embedded",
                                 "n_train": N_TRAIN, "device": "cpu", "threads": 1, "round": r, "steps": 100,
                                 "time_s": 100 * t, "time_per_step_s": t, "cpu_time_s": 100 * t,
                                 "contention": 0.0, "model": model})
    columns = TIMING_COLUMNS if with_model else [c for c in TIMING_COLUMNS if c != "model"]
    write_csv(results / "timing" / "timing.csv", rows, columns)
    write_json(results / "timing" / "timing.json", {"started": "2026-11-27T00:00:00Z", "host": "test",
                                                    "rounds": 7, "warmup_rounds": 1})


@pytest.fixture
def nesterov_in_methods(monkeypatch: pytest.MonkeyPatch) -> None:
    """nesterov as METHODS will hold it: a method with tutorial=False (added here if it is not there yet)."""
    if "nesterov" not in METHODS:
        monkeypatch.setitem(METHODS, "nesterov", Method("nesterov", "momentum", 32, "#5c940d", 1e-2, tutorial=False))
    assert not METHODS["nesterov"].tutorial and "nesterov" not in TUTORIAL_METHODS


# ------------------------------------------------------------------ keys: model is part of every one
def test_summary_has_a_row_per_model_and_model_as_its_last_column(tmp_path: Path) -> None:
    two_models(tmp_path)
    write_timing(tmp_path, TF_RATIO)
    runs = load.load_runs(tmp_path)
    timing, _ = load.load_timing(tmp_path)
    assert set(runs.metrics["model"]) == {"mlp", "lenet5"}  # old-style runs read as mlp
    summary = aggregate.summarize(aggregate.run_stats(runs.metrics, runs.steps), timing.rows)
    # model was appended, then the run's memory and start-up figures after it, then framework_version
    assert list(summary.columns)[-len(RUN_FIGURES) - 2:] == ["model", *RUN_FIGURES, "framework_version"]
    assert list(summary.columns)[:2] == ["dataset", "device"]
    assert len(summary) == 2 * 2 * 5  # models x frameworks x methods: nothing merged
    adam = summary[(summary["optimizer"] == "adam") & (summary["framework"] == "torch")].set_index("model")
    assert adam.loc["mlp", "final_acc_mean"] == pytest.approx(0.905)
    assert adam.loc["lenet5", "final_acc_mean"] == pytest.approx(0.955)
    tf = summary[(summary["optimizer"] == "adam") & (summary["framework"] == "tensorflow")].set_index("model")
    for model, ratio in TF_RATIO.items():  # each model's ratio from its own timing rows only
        assert tf.loc[model, "time_ratio_vs_torch"] == pytest.approx(ratio, rel=0.02)
        assert tf.loc[model, "tf_over_torch_time"] == pytest.approx(ratio, rel=0.02)
    curves = aggregate.aggregate_curves(runs.metrics)
    assert set(curves["n"]) == {2}  # two seeds per point, never four from two models
    assert list(summary["model"]).index("lenet5") > max(i for i, m in enumerate(summary["model"]) if m == "mlp")


def test_model_descriptions_come_from_the_spec_or_the_conf_file(tmp_path: Path) -> None:
    two_models(tmp_path, methods=("adam",))
    runs = load.load_runs(tmp_path)
    assert list(runs.models) == ["mlp", "lenet5"]
    mlp, lenet = runs.models["mlp"], runs.models["lenet5"]
    assert mlp.layers == "flatten → dense 128 → relu → dense 10" and mlp.n_params == 101_770
    assert lenet.layers.startswith("conv2d 6@5x5 same") and lenet.n_params == parse_model(
        conf_group("model", "lenet5")).n_params
    assert mlp.runs == lenet.runs == 4
    # One name, two layer lists: one model to the report, and a warning that says so.
    other = {**model_config("mlp"), "layers": [{"type": "flatten"}, {"type": "dense", "units": 10}]}
    infos, warnings = model_infos({"a": {"model": model_config("mlp")}, "b": {"model": other}},
                                  {"a": "mlp", "b": "mlp"})
    assert len(infos) == 1 and len(warnings) == 1 and "2 different layer lists" in warnings[0]


def test_timing_pass_finds_one_configuration_per_model(tmp_path: Path) -> None:
    two_models(tmp_path, methods=("adam",))
    configs = sweep_configs(tmp_path)
    assert "model" in KEY and "model" in TIMING_COLUMNS  # appended: columns written later come after it
    assert sorted((c["row"]["framework"], c["row"]["model"]) for c in configs) == [
        ("tensorflow", "lenet5"), ("tensorflow", "mlp"), ("torch", "lenet5"), ("torch", "mlp")]


def test_timing_keys_hold_the_model_and_an_old_timing_pass_is_the_mlp(tmp_path: Path) -> None:
    write_timing(tmp_path, {"mlp": 1.5}, with_model=False)
    timing, _ = load.load_timing(tmp_path)
    assert set(timing.rows["model"]) == {"mlp"}
    keys = speed.round_times(timing.rows)
    assert all(k[speed.TIMING_KEYS.index("model")] == "mlp" for k in keys)
    key = next(iter(keys))
    assert speed.key_framework(speed.with_framework(key, "jax")) == "jax"
    assert speed.config_key({**dict(zip(speed.TIMING_KEYS, key)), "model": math.nan}) == key


# ------------------------------------------------------------------ claims: the tutorial's six, per model
def test_claims_ignore_methods_beyond_the_tutorial_and_are_judged_per_model(tmp_path: Path) -> None:
    two_models(tmp_path)
    runs = load.load_runs(tmp_path)
    stats = aggregate.run_stats(runs.metrics, runs.steps)
    summary = aggregate.summarize(stats)
    found = claims.check_claims(summary, stats)
    assert {c.method for c in found} <= set(TUTORIAL_METHODS)
    text = " ".join(f"{c.interval} {c.lr} {c.evidence}" for c in found)
    assert not any(m in text for m in BEYOND_METHODS)
    assert {c.model for c in found} == {"mlp", "lenet5"}
    per_model = {m: [(c.method, c.claim, c.framework) for c in found if c.model == m] for m in ("mlp", "lenet5")}
    assert per_model["mlp"] == per_model["lenet5"]
    unmeasured = sum(c.framework == "—" for c in found if c.model == "mlp")  # claims on bgd, momentum, rmsprop
    assert 0 < unmeasured < len(claims.CLAIMS)
    assert len(per_model["mlp"]) == 2 * (len(claims.CLAIMS) - unmeasured) + unmeasured
    # Each model's verdicts are its own runs': the same as judging that model alone.
    alone = claims.check_claims(summary[summary["model"] == "lenet5"], stats)
    assert [(c.verdict, c.interval) for c in alone] == [(c.verdict, c.interval) for c in found if c.model == "lenet5"]
    fast = {c.model: c for c in found if (c.method, c.claim, c.framework) == ("adam", "converges fast", "torch")}
    assert "adam 0.8" in fast["mlp"].evidence and "adam 0.85" in fast["lenet5"].evidence
    # Beyond methods in the summary change no verdict.
    tutorial_only = claims.check_claims(split_methods(summary)[0], stats)
    assert [(c.verdict, c.interval) for c in tutorial_only] == [(c.verdict, c.interval) for c in found]
    with pytest.raises(ValueError, match="one model"):
        aggregate.reference_rows(summary)
    assert all(spec.method in TUTORIAL_METHODS for spec in claims.CLAIMS)


# ------------------------------------------------------------------ compare: no cross-model matching
def test_compare_matches_ratios_within_a_model_only(tmp_path: Path) -> None:
    a, b = tmp_path / "a", tmp_path / "b"
    write_timing(a, TF_RATIO, seed=1)
    write_timing(b, TF_RATIO, seed=2)
    ra = compare.ratios(a)
    models = sorted(k[speed.TIMING_KEYS.index("model")] for k in ra)
    assert models == ["lenet5", "lenet5", "mlp", "mlp"]
    for key, iv in ra.items():
        assert iv.est == pytest.approx(TF_RATIO[key[speed.TIMING_KEYS.index("model")]], rel=0.02)
    table = compare.compare_ratios(ra, compare.ratios(b), 0.10)
    assert len(table) == 4 and table["agree"].all()
    assert {c.split()[1] for c in table["configuration"]} == {"mlp", "lenet5"}
    # B times only lenet5, at mlp's ratio: nothing of A's mlp may be matched with it.
    c = tmp_path / "c"
    write_timing(c, {"lenet5": 1.5}, seed=3)
    crossed = compare.compare_ratios(ra, compare.ratios(c), 0.10)
    assert len(crossed) == 2 and not crossed["agree"].any()


def test_compare_cli_keys_claims_on_model_and_reads_old_folders_as_mlp(tmp_path: Path) -> None:
    a, b = tmp_path / "a", tmp_path / "b"
    write_timing(a, {"mlp": 1.2}, with_model=False, seed=1)  # an older folder: no model column anywhere
    write_timing(b, TF_RATIO, seed=2)
    claim = {"dataset": "mnist_embedded", "method": "adam", "claim": "converges fast", "framework": "torch"}
    (a / "report").mkdir()
    pd.DataFrame([{**claim, "verdict": "supported"}]).to_csv(a / "report" / "claims.csv", index=False)
    (b / "report").mkdir()
    pd.DataFrame([{**claim, "verdict": "supported", "model": "mlp"},
                  {**claim, "verdict": "not supported", "model": "lenet5"}]).to_csv(b / "report" / "claims.csv",
                                                                                    index=False)
    both = compare.compare_claims(a, b)
    assert len(both) == 1 and both.iloc[0]["model"] == "mlp" and not both["flip"].any()
    write_timing(b, {"mlp": 1.2, "lenet5": 3.0}, seed=2)
    proc = run_cli(str(a), str(b), module="bench.report.compare", timeout=120)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert "AGREE" in proc.stdout and "lenet5" not in proc.stdout.split("claims:")[0]


# ------------------------------------------------------------------ the page
# The page of two models draws about 24 figures (15-20 s on two cores): make test builds it, the edit
# loop (make test-fast) leaves it to the single-model page of test_report.py.
SLOW_PAGE = pytest.mark.slow


@pytest.fixture(scope="module")
def built(tmp_path_factory: pytest.TempPathFactory) -> Path:
    results = tmp_path_factory.mktemp("models") / "results"
    two_models(results)
    write_timing(results, TF_RATIO)
    with pytest.MonkeyPatch.context() as mp:
        if "nesterov" not in METHODS:
            mp.setitem(METHODS, "nesterov", Method("nesterov", "momentum", 32, "#5c940d", 1e-2, tutorial=False))
        build_report(results, results / "report", extra_modules=(), log=lambda s: None)
    return results / "report"


def _headings(page: str) -> list[tuple[str, str]]:
    return [(level, html.unescape(title)) for level, title in re.findall(r'<h([23]) id="[^"]+">([^<]+)</h[23]>', page)]


@SLOW_PAGE
def test_page_has_a_section_per_model_and_a_beyond_the_tutorial_block(built: Path) -> None:
    page = (built / "index.html").read_text()
    heads = _headings(page)
    titles = [t for _, t in heads]
    assert ("2", "Model mlp") in heads and ("2", "Model lenet5") in heads
    assert titles.index("Model mlp") < titles.index("Model lenet5")
    for model in ("mlp", "lenet5"):  # each model: comparison, claims, curves, then beyond the tutorial
        start = titles.index(f"Model {model}")
        sub = titles[start + 1: start + 5]
        assert sub == ["Comparison", "The tutorial's claims, checked", "Curves", BEYOND], sub
        assert all(level == "3" for level, _ in heads[start + 1: start + 5])
    assert "flatten → dense 128 → relu → dense 10, 101,770 parameters" in page
    assert "models: mlp, lenet5 (a section each)" in page
    assert "six gradient-descent methods and 2 more" in page
    assert f"nesterov: {METHODS['nesterov'].formula}" in page if "nesterov" in METHODS else "nesterov: " in page
    assert "adamw: not in bench/optimizers.py" in page or "adamw" in METHODS
    nav = page.split("<nav>")[1].split("</nav>")[0]
    assert "Model lenet5" in nav and "Comparison" not in nav  # the navigation lists the models
    md = (built / "report.md").read_text()
    assert "## Model lenet5" in md and "### Beyond the tutorial" in md


@SLOW_PAGE
def test_at_a_glance_leads_with_each_models_answer_from_its_own_runs(built: Path) -> None:
    page = (built / "index.html").read_text()
    assert _headings(page)[0] == ("2", "At a glance")
    glance = html.unescape(page.split('<h2 id="glance">')[1].split("<h2 ")[0])
    blocks = re.split(r"<p><strong>Model ", glance)[1:]
    titles = [b.split("</strong>")[0] for b in blocks]
    assert titles == ["mlp — the tutorial's methods", "mlp — beyond the tutorial",
                      "lenet5 — the tutorial's methods", "lenet5 — beyond the tutorial"]
    for block, model in zip(blocks[::2], ("mlp", "lenet5"), strict=True):
        # The timing pass: tensorflow TF_RATIO[model] times torch on this model's minibatch and adam only.
        ratio = re.search(r"Time per step over torch's, with its 95 % interval: tensorflow ([\d.]+) \[", block)
        assert "<strong>Fastest: torch</strong>" in block and "the 2 configurations" in block
        assert float(ratio.group(1)) == pytest.approx(TF_RATIO[model], rel=0.02)
        # Both frameworks were given the same accuracies: no difference is invented.
        assert "has the same mean final test accuracy in each" in block and "Largest" not in block
        assert "<strong>The tutorial's claims</strong>: " in block
    for block in blocks[1::2]:  # the timing pass timed no method beyond the tutorial: no winner named
        assert "Fastest" not in block and "no clean sample of these configurations" in block
        assert "makes no claims about these methods" in block
    assert "Not recorded by these runs" in glance  # synthetic runs carry no memory figures


@SLOW_PAGE
def test_page_tables_and_figures_keep_models_and_methods_apart(built: Path) -> None:
    page = (built / "index.html").read_text()
    blocks = re.split(r"<h[23] id=", page)
    tutorial = next(b for b in blocks if b.startswith('"table-mnist-embedded-lenet5"'))
    beyond = next(b for b in blocks if b.startswith('"beyond-mnist-embedded-lenet5"'))
    assert "adam" in tutorial and "nesterov" not in tutorial and "adamw" not in tutorial
    assert "nesterov" in beyond and "adamw" in beyond and "<td>adam</td>" not in beyond
    pngs = {p.stem for p in built.glob("*.png")}
    for model in ("mlp", "lenet5"):
        tag = f"mnist-embedded-{model}"
        assert {f"test_acc_vs_epoch_{tag}", f"time_per_step_{tag}", f"step_loss_{tag}",
                f"test_acc_vs_epoch_{tag}-beyond", f"time_per_step_{tag}-beyond"} <= pngs
    assert page.count('src="data:image/png;base64,') == len(pngs)
    summary = pd.read_csv(built / "summary.csv")
    assert len(summary) == 20 and list(summary.columns[-len(RUN_FIGURES) - 2:]) == ["model", *RUN_FIGURES,
                                                                                   "framework_version"]
    verdicts = pd.read_csv(built / "claims.csv")
    assert set(verdicts["model"]) == {"mlp", "lenet5"} and set(verdicts["method"]) <= set(TUTORIAL_METHODS)
    assert list(verdicts.columns[-2:]) == ["dataset", "model"]


def test_one_model_looks_as_before_and_names_its_model(tmp_path: Path, nesterov_in_methods: None) -> None:
    two_models(tmp_path, methods=("minibatch", "adam", "nesterov"), models=("lenet5",))
    build_report(tmp_path, tmp_path / "report", extra_modules=(), log=lambda s: None)
    page = (tmp_path / "report" / "index.html").read_text()
    heads = _headings(page)
    assert not any(t.startswith("Model ") for _, t in heads)
    assert [t for _, t in heads][:6] == ["At a glance", "Runs and status", "Comparison",
                                         "The tutorial's claims, checked", "Curves", BEYOND]
    glance = html.unescape(page.split('<h2 id="glance">')[1].split("<h2 ")[0])
    assert "The tutorial's methods** (minibatch, adam)" not in glance  # markdown rendered, not shown raw
    assert "<strong>The tutorial's methods</strong> (minibatch, adam)" in glance
    assert "<strong>Beyond the tutorial</strong> (nesterov)" in glance and "Model " not in glance
    assert all(level == "2" for level, _ in heads)
    assert "model: lenet5 (conv2d 6@5x5 same" in page  # the header says which model
    assert "model lenet5" in page  # the environment table, and the comparison text
    assert "nesterov: " + METHODS["nesterov"].formula in page
    pngs = {p.stem for p in (tmp_path / "report").glob("*.png")}
    assert {"test_acc_vs_epoch_mnist-embedded", "test_acc_vs_epoch_mnist-embedded-beyond"} <= pngs


def test_the_title_counts_the_methods_the_folder_holds() -> None:
    from bench.report.page import methods_title

    def title(*methods: str) -> str:
        return methods_title(pd.DataFrame({"optimizer": list(methods)}))

    assert title(*TUTORIAL_METHODS) == "six gradient-descent methods"
    assert title(*TUTORIAL_METHODS, "adamw", "adamw") == "six gradient-descent methods and 1 more"
    assert title("adam", "sgd", "adam") == "two of the tutorial's six gradient-descent methods"
    assert title("adam", "nesterov") == "one of the tutorial's six gradient-descent methods and 1 more"
    assert title("adamw") == "one gradient-descent method beyond the tutorial's six"
    assert methods_title(pd.DataFrame()) == "no runs"


# ------------------------------------------------------------------ float64 runs: timed apart, named
def test_float64_runs_are_timed_and_matched_apart_from_float32_ones(tmp_path: Path) -> None:
    """A results folder with float32 and float64 runs of one configuration: the timing pass times
    each in its own precision, the speed table matches each run with its own precision's samples,
    and a timing.csv from before the column holds float32 samples only."""
    for precision in ("fp32", "fp64"):
        for fw in ("torch", "tensorflow"):
            run_id = f"{fw}-adam-bs32-s0-{precision}"
            base = dict(run_id=run_id, framework=fw, optimizer="adam", impl="native", mode="eager", lr=0.01,
                        batch_size=32, seed=0, dataset="mnist_embedded", n_train=N_TRAIN, n_test=100, device="cpu",
                        model="mlp", precision=precision)
            spec = {"framework": {"name": fw}, "optimizer": {"name": "adam", "impl": "native", "lr": 0.01},
                    "mode": "eager", "batch_size": 32, "seed": 0, "data": {"name": "mnist_embedded"},
                    "device": "cpu", "threads": 1, "model": model_config("mlp"), "precision": precision}
            write_fake_run(tmp_path, run_id, base, 0.9, N_TRAIN, spec)
    configs = sweep_configs(tmp_path)
    assert sorted((c["row"]["framework"], c["row"]["precision"]) for c in configs) == [
        ("tensorflow", "fp32"), ("tensorflow", "fp64"), ("torch", "fp32"), ("torch", "fp64")]
    assert {c["spec"]["precision"] for c in configs if c["row"]["precision"] == "fp64"} == {"fp64"}
    assert sorted(core_label(c["row"]) for c in configs if c["row"]["framework"] == "torch") == [
        "torch adam/native/eager bs32", "torch adam/native/eager bs32 fp64"]
    ratio = {"fp32": 1.5, "fp64": 0.8}  # TensorFlow over torch, per precision
    rows = [{"framework": fw, "optimizer": "adam", "impl": "native", "mode": "eager", "batch_size": 32,
             "dataset": "mnist_embedded", "n_train": N_TRAIN, "device": "cpu", "threads": 1, "round": r,
             "steps": 100, "time_s": 0.1 * t, "time_per_step_s": 1e-3 * t, "cpu_time_s": 0.1 * t,
             "contention": 0.0, "model": "mlp", "precision": p}
            for r in range(7) for p in ratio for fw, t in (("torch", 1.0), ("tensorflow", ratio[p]))]
    runs = load.load_runs(tmp_path)
    for columns, expected in ((TIMING_COLUMNS, ratio), ([c for c in TIMING_COLUMNS if c != "precision"], None)):
        kept = rows if expected else [r for r in rows if r["precision"] == "fp32"]
        write_csv(tmp_path / "timing" / "timing.csv", kept, columns)
        write_json(tmp_path / "timing" / "timing.json", {"started": "2026-12-03T00:00:00Z", "host": "test",
                                                         "rounds": 7, "warmup_rounds": 1})
        timing, _ = load.load_timing(tmp_path)
        summary = aggregate.summarize(aggregate.run_stats(runs.metrics, runs.steps), timing.rows)
        tf = summary[summary["framework"] == "tensorflow"].set_index("precision")
        assert tf.loc["fp32", "time_ratio_vs_torch"] == pytest.approx(1.5, rel=0.01)
        if expected:
            assert tf.loc["fp64", "time_ratio_vs_torch"] == pytest.approx(0.8, rel=0.01)
        else:  # an old file: float32 samples, never matched with the float64 runs
            assert summary.loc[summary["precision"] == "fp64", "timing_n"].eq(0).all()


def _fp_twins(results: Path, acc: dict[str, float]) -> None:
    """adam and minibatch in torch and tensorflow, 2 seeds, in float32; adam also in float64, whose final
    accuracy is ``acc["fp64"]`` (float32's: ``acc["fp32"]``)."""
    for precision, methods in (("fp32", ("minibatch", "adam")), ("fp64", ("adam",))):
        for fw in ("torch", "tensorflow"):
            for method in methods:
                for seed in (0, 1):
                    run_id = f"{fw}-{method}-bs32-s{seed}-{precision}"
                    base = dict(run_id=run_id, framework=fw, optimizer=method, impl="native", mode="eager",
                                lr=0.01, batch_size=32, seed=seed, dataset="mnist_embedded", n_train=N_TRAIN,
                                n_test=100, device="cpu", model="mlp", precision=precision)
                    spec = {"framework": {"name": fw}, "optimizer": {"name": method, "impl": "native", "lr": 0.01},
                            "mode": "eager", "batch_size": 32, "seed": seed, "data": {"name": "mnist_embedded"},
                            "device": "cpu", "threads": 1, "model": model_config("mlp"), "precision": precision}
                    final = acc[precision] if method == "adam" else 0.8
                    write_fake_run(results, run_id, base, final, N_TRAIN, spec)


def test_float64_twins_stay_apart_in_rows_claims_and_figures(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """A float64 twin of a float32 configuration: the comparison table lists it after the float32 rows
    (not interleaved with them), the rows that stand for a method (claims, speed figure) are the float32
    ones even where float64 scored higher, and the curves draw and name the two apart."""
    _fp_twins(tmp_path, {"fp32": 0.85, "fp64": 0.95})
    runs = load.load_runs(tmp_path)
    summary = aggregate.summarize(aggregate.run_stats(runs.metrics, runs.steps))
    adam = summary[summary["optimizer"] == "adam"]
    assert list(adam["precision"]) == ["fp32", "fp32", "fp64", "fp64"]
    refs = aggregate.reference_rows(summary)
    assert {fw: refs[fw]["adam"]["precision"] for fw in refs} == {"torch": "fp32", "tensorflow": "fp32"}
    assert refs["torch"]["adam"]["final_acc_mean"] == pytest.approx(0.855)
    from bench.report import figures
    drawn = []
    monkeypatch.setattr(figures, "_save", lambda fig, out_dir, name: drawn.append(fig) or out_dir / name)
    curves = aggregate.aggregate_curves(runs.metrics)
    figures.plot_curves(curves, summary, "test_acc", "epoch", tmp_path, "acc")
    panel = next(ax for ax in drawn[0].axes if ax.get_title().startswith("adam"))
    lines = {line.get_label(): line.get_linestyle() for line in panel.get_lines()}
    assert set(lines) == {"torch fp32", "torch fp64", "tensorflow fp32", "tensorflow fp64"}
    assert lines["torch fp32"] != lines["torch fp64"]
    assert panel.get_legend() is not None


def test_the_comparison_text_names_the_floor_in_each_runs_precision(tmp_path: Path) -> None:
    _fp_twins(tmp_path, {"fp32": 0.85, "fp64": 0.85})
    build_report(tmp_path, tmp_path / "report", extra_modules=(), log=lambda s: None)
    page = html.unescape((tmp_path / "report" / "index.html").read_text())
    assert "float32 floor" not in page and "float64 for fp64 rows" in page


def test_a_timing_pass_with_no_clean_sample_is_not_called_no_timing_pass(tmp_path: Path) -> None:
    """Every sample contended: the report says the pass is there but left everything out, and how
    much, rather than that there was no timing pass."""
    two_models(tmp_path, methods=("minibatch", "adam"), models=("mlp",))
    write_timing(tmp_path, {"mlp": 1.5})
    timing = pd.read_csv(tmp_path / "timing" / "timing.csv")
    timing["contention"] = 0.9
    timing.to_csv(tmp_path / "timing" / "timing.csv", index=False)
    build_report(tmp_path, tmp_path / "report", extra_modules=(), log=lambda s: None)
    page = html.unescape((tmp_path / "report" / "index.html").read_text())
    assert "No timing pass" not in page
    assert "No clean timing of these configurations" in page and f"({len(timing)} of its {len(timing)} samples" in page
    assert "no clean sample of these configurations" in page  # At a glance names no fastest framework, and why


def test_the_report_names_what_the_timing_pass_could_not_time(tmp_path: Path) -> None:
    two_models(tmp_path, methods=("minibatch", "adam"), models=("mlp",))
    write_timing(tmp_path, {"mlp": 1.5})
    meta = json.loads((tmp_path / "timing" / "timing.json").read_text())
    meta["configs"] = [{"framework": "jax", "optimizer": "adam", "impl": "native", "mode": "eager", "batch_size": 32,
                        "model": "lenet5", "precision": "fp64", "error": "RuntimeError: it broke"},
                       {"framework": "torch", "optimizer": "adam", "impl": "native", "mode": "eager",
                        "batch_size": 32, "model": "mlp", "error": None}]
    write_json(tmp_path / "timing" / "timing.json", meta)
    build_report(tmp_path, tmp_path / "report", extra_modules=(), log=lambda s: None)
    page = html.unescape((tmp_path / "report" / "index.html").read_text())
    assert "The pass could not time 1 configuration</strong> (jax adam/native/eager bs32 lenet5 fp64: " \
           "RuntimeError: it broke)" in page
    assert speed.failed_text({"configs": meta["configs"][1:]}) == ""
    assert speed.failed_text({"configs": 4}) == ""  # an older timing.json counted its configurations

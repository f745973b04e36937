"""Two releases of one framework in one results folder: the timing pass, the report and
``bench.report.compare`` tell them apart (``framework_version``).

Runs, timing passes and parity CSVs are synthetic (the harness' own writers and columns): no framework
is imported and nothing trains, except in the one slow test at the end, which times and reports the
two-release sweep of ``tests/test_versions.py`` (its session fixture: the venv of the other JAX release
and four trained runs).
"""
from __future__ import annotations

import csv
import html
import json
import math
import re
import shutil
import sys
from pathlib import Path

import matplotlib
import numpy as np
import pandas as pd
import pytest
from conftest import OTHER_JAX, PINNED_JAX, run_cli
from helpers import write_fake_run

from bench import envs, frameworks
from bench.parity.compare import COLUMNS as PARITY_COLUMNS
from bench.parity.section import pair_label, version_checks
from bench.report import aggregate, claims, compare, load, speed, versions
from bench.report.groups import framework_order, release_ranks, several_versions
from bench.report.page import build_report
from bench.results import write_csv, write_json
from bench.timing import core, protocol
from bench.timing.protocol import Worker

pytestmark = pytest.mark.xdist_group("versions_report")

N_TRAIN = 320
BATCH = {"minibatch": 32, "sgd": 1, "adam": 32}
PINNED_TORCH = envs.project_version(frameworks.get("torch"))
RELEASES = (("torch", PINNED_TORCH), ("jax", OTHER_JAX), ("jax", PINNED_JAX))
# Final accuracies: jax's older release learns worse here, so a number that mixed the releases would show.
FINAL = {("torch", PINNED_TORCH): 0.90, ("jax", PINNED_JAX): 0.91, ("jax", OTHER_JAX): 0.60}
# Time per step: jax 0.9.2 is 1.2 times jax 0.10.2's, which is 1.5 times torch's.
SPEED = {("torch", PINNED_TORCH): 1e-3, ("jax", PINNED_JAX): 1.5e-3, ("jax", OTHER_JAX): 1.8e-3}
OLD_LABEL, NEW_LABEL = f"jax {OTHER_JAX}", f"jax {PINNED_JAX}"


def make_run(results: Path, framework: str, version: str | None, method: str, seed: int, final: float) -> str:
    """One run as the harness writes it, at ``version`` (None: recorded nowhere, an older writer)."""
    batch = BATCH[method]
    other = version is not None and version != envs.project_version(frameworks.get(framework))
    run_id = f"{framework}-{method}-s{seed}" + (f"-{framework}{version}" if other else "")
    base = dict(run_id=run_id, framework=framework, optimizer=method, impl="native", mode="eager", lr=0.01,
                batch_size=batch, seed=seed, dataset="mnist_embedded", n_train=N_TRAIN, n_test=100, device="cpu",
                model="mlp", framework_version=version or "")
    spec = {"framework": {"name": framework, "version": version if other else None},
            "optimizer": {"name": method, "impl": "native", "lr": 0.01}, "mode": "eager", "batch_size": batch,
            "seed": seed, "data": {"name": "mnist_embedded"}, "device": "cpu", "threads": 1, "model": {"name": "mlp"}}
    return write_fake_run(results, run_id, base, final, N_TRAIN, spec,
                          **({"framework_version": version} if version else {}))


def sweep(results: Path, releases=RELEASES, methods=tuple(BATCH), recorded: bool = True) -> None:
    for fw, version in releases:
        for method in methods:
            for seed in (0, 1):
                make_run(results, fw, version if recorded else None, method, seed, FINAL[(fw, version)])


def timing_rows(speeds: dict[tuple[str, str], float], methods=("minibatch", "adam"), processes: int = 3,
                rounds: int = 4, seed: int = 0, versions: bool = True) -> list[dict]:
    """A timing pass of these releases, interleaved: every process has a speed of its own (sd 3 %) and
    every (process, round) a drift (sd 5 %), both shared by every configuration timed in it."""
    rng = np.random.default_rng(seed)
    rows = []
    for k in range(1, processes + 1):
        own = np.exp(0.03 * rng.standard_normal())
        for r in range(1, rounds + 1):
            drift = 1 + 0.05 * rng.standard_normal()
            for (fw, version), t in speeds.items():
                for method in methods:
                    t_step = t * own * drift * (1 + 0.005 * rng.standard_normal())
                    rows.append({"framework": fw, "optimizer": method, "impl": "native", "mode": "eager",
                                 "batch_size": BATCH[method], "lr": 0.01, "dataset": "mnist_embedded",
                                 "n_train": N_TRAIN, "device": "cpu", "threads": 1, "round": r, "steps": 100,
                                 "time_s": 100 * t_step, "time_per_step_s": t_step, "cpu_time_s": 100 * t_step,
                                 "contention": 0.0, "model": "mlp", "process": k, "pass": 1,
                                 **({"framework_version": version} if versions else {})})
    return rows


def write_timing(results: Path, rows: list[dict], columns=core.COLUMNS) -> None:
    write_csv(results / "timing" / "timing.csv", rows, columns)
    write_json(results / "timing" / "timing.json", {"started": "2026-12-02T00:00:00Z", "host": "test",
                                                    "rounds": 4, "warmup_rounds": 1, "pin": True})


def write_parity(results: Path, apart: float, steps: int = 50) -> Path:
    """A parity check of jax at the pinned release (side a) against the other (side b), as bench.parity writes it."""
    rows = [{**dict.fromkeys(PARITY_COLUMNS, 0.0), "optimizer": "adam", "impl": "reference", "framework_a": "jax",
             "framework_b": "jax", "batch_size": 32, "seed": 0, "steps": steps, "dataset": "mnist_embedded",
             "n_train": 4000, "init": "shared", "mode": "eager", "device": "cpu", "precision": "fp32", "lr": 0.001,
             "step": k, "param_max_rel_diff": apart * k / steps, "loss_rel_diff": 1e-7 * k / steps,
             "model": "mlp", "n_params": 101_770, "version_a": PINNED_JAX, "version_b": OTHER_JAX}
            for k in range(steps + 1)]
    path = results / "parity" / f"adam-reference-jax{PINNED_JAX}-jax{OTHER_JAX}.csv"
    write_csv(path, rows, PARITY_COLUMNS)
    return path


def _loaded(results: Path) -> tuple[load.Runs, pd.DataFrame, pd.DataFrame, load.Timing | None]:
    runs = load.load_runs(results)
    timing = load.settle_timing(load.load_timing(results)[0], runs.metrics)
    stats = aggregate.run_stats(runs.metrics, runs.steps)
    return runs, stats, aggregate.summarize(stats, timing.rows if timing else None), timing


# ------------------------------------------------------------------ grouping and labels
def test_releases_are_configurations_of_their_own_and_summary_csv_keeps_its_columns(tmp_path: Path) -> None:
    sweep(tmp_path)
    runs, stats, summary, _ = _loaded(tmp_path)
    assert "framework_version" in aggregate.GROUP_KEYS and "framework_version" in speed.TIMING_KEYS
    assert several_versions(runs.metrics) == {"jax"}
    jax = summary[(summary["framework"] == "jax") & (summary["optimizer"] == "adam")].set_index("framework_version")
    assert sorted(jax.index) == sorted([OTHER_JAX, PINNED_JAX]) and set(jax["runs"]) == {2}  # seeds never fold
    assert jax.loc[OTHER_JAX, "final_acc_mean"] == pytest.approx(0.605)
    assert jax.loc[PINNED_JAX, "final_acc_mean"] == pytest.approx(0.915)
    # Releases in release order (0.9.2 before 0.10.2, which a string sort would put first).
    assert list(summary.loc[summary["optimizer"] == "adam", "framework_version"]) == [PINNED_TORCH, OTHER_JAX,
                                                                                       PINNED_JAX]
    one = tmp_path / "one"
    sweep(one, releases=RELEASES[:1] + RELEASES[2:])
    single = _loaded(one)[2]
    assert list(summary.columns) == list(single.columns) and summary.columns[-1] == "framework_version"
    assert several_versions(load.load_runs(one).metrics) == set()
    assert framework_order([NEW_LABEL, "torch", OLD_LABEL]) == ["torch", OLD_LABEL, NEW_LABEL]
    assert release_ranks(["torch", OLD_LABEL, NEW_LABEL]) == {"torch": 0, NEW_LABEL: 0, OLD_LABEL: 1}


def test_a_run_that_recorded_no_release_joins_its_frameworks_default(tmp_path: Path) -> None:
    sweep(tmp_path, releases=(("jax", OTHER_JAX),))
    sweep(tmp_path, releases=(("torch", PINNED_TORCH),), recorded=False)
    metrics = load.load_runs(tmp_path).metrics
    assert set(metrics.loc[metrics["framework"] == "jax", "framework_version"]) == {OTHER_JAX}
    assert set(metrics.loc[metrics["framework"] == "torch", "framework_version"]) == {PINNED_TORCH}
    assert several_versions(metrics) == set()  # one release each: nothing on the page changes


def test_claims_judge_each_framework_at_its_default_release(tmp_path: Path) -> None:
    sweep(tmp_path)
    _, stats, summary, _ = _loaded(tmp_path)
    found = claims.check_claims(summary, stats)
    assert {c.framework for c in found} - {"—"} == {"torch", "jax"}
    fast = {c.framework: c for c in found if (c.method, c.claim) == ("adam", "converges fast")}
    assert "adam 0.81" in fast["jax"].evidence  # 0.10.2's epoch-1 accuracy, never 0.9.2's 0.5
    alone = claims.check_claims(summary[summary["framework_version"] != OTHER_JAX], stats)
    assert [(c.verdict, c.interval, c.evidence) for c in alone] == [(c.verdict, c.interval, c.evidence) for c in found]


# ------------------------------------------------------------------ the timing pass
def test_the_timing_pass_finds_each_release_and_starts_it_in_its_venv(tmp_path: Path, monkeypatch) -> None:
    sweep(tmp_path, methods=("adam",))
    configs = core.sweep_configs(tmp_path)
    assert "framework_version" in core.KEY and core.COLUMNS[-3:] == ("framework_version", "pace_s", "precision")
    assert sorted((c["row"]["framework"], c["row"]["framework_version"]) for c in configs) == sorted(RELEASES)
    name = core.labeller(c["row"] for c in configs)
    assert {name(c["row"]).split(" adam")[0] for c in configs} == {"torch", OLD_LABEL, NEW_LABEL}
    # The worker of jax 0.9.2 starts in that release's venv; the others in this interpreter.
    monkeypatch.setenv(envs.ENVS_VAR, str(tmp_path / "envs"))
    venv = envs.env_for("jax", OTHER_JAX, "cpu")

    def fake_build(env: envs.Env, folder: Path) -> None:  # a venv that is only its interpreter's path
        (folder / "bin").mkdir(parents=True)
        (folder / "bin" / "python").write_text("")

    envs.ensure(venv, say=lambda line: None, build=fake_build)
    started = []

    def fake_start(module: str, args: list[str], **kwargs) -> None:
        started.append((json.loads(args[1])["framework"], kwargs["python"]))
        raise OSError("not started in this test")

    monkeypatch.setattr(protocol, "start", fake_start)
    for config in configs:
        worker = Worker(config, open(tmp_path / f"{config['run_id']}.log", "w"))
        worker.begin()
        assert worker.error == "cannot start: not started in this test"
        worker.log.close()
    assert {(fw["name"], fw.get("version")): python for fw, python in started} == {
        ("torch", None): sys.executable, ("jax", None): sys.executable, ("jax", OTHER_JAX): str(venv.python)}


def test_two_releases_timed_in_one_pass_give_their_ratio_with_a_two_level_interval(tmp_path: Path, capsys) -> None:
    rows = timing_rows(SPEED)
    rounds = speed.round_times(pd.DataFrame(rows))
    found = speed.version_ratios(rounds)
    assert len(found) == 2 and all(speed.key_version(k) == OTHER_JAX for k in found)
    for key, (newest, iv) in found.items():
        assert speed.key_version(newest) == PINNED_JAX and speed.with_version(key, PINNED_JAX) == newest
        # paired by round, the drift and each process's speed cancel: 1.2 within the samples' 0.5 % noise
        assert iv.est == pytest.approx(1.2, rel=0.01) and iv.lo <= iv.est <= iv.hi < iv.lo * 1.03
        assert (iv.groups, iv.n) == (3, 12)
    found_entries, _ = core.summary(rows, 1.0)
    entries = {e["configuration"]: e for e in found_entries}
    old = entries[f"{OLD_LABEL} adam/native/eager bs32"]
    assert old["version_ratio_to"] == f"{NEW_LABEL} adam/native/eager bs32" and "ratio" not in old  # no torch ratio
    assert old["version_ratio"] == pytest.approx(1.2, rel=0.01) and old["version_ratio_processes"] == 3
    new = entries[f"{NEW_LABEL} adam/native/eager bs32"]
    assert new["ratio_to"] == "torch" and new["ratio"] == pytest.approx(1.5, rel=0.01) and "version_ratio" not in new
    core.print_table(found_entries, 1.0)
    out = capsys.readouterr().out
    assert f"{OLD_LABEL} minibatch/native/eager bs32 / {NEW_LABEL} minibatch/native/eager bs32 = 1.2" in out
    assert "release over its framework's newest" in out
    assert f"adam/native/eager bs32: {NEW_LABEL}/torch = 1.5" in out  # the default release against the baseline


def test_an_old_timing_file_is_the_runs_default_release(tmp_path: Path) -> None:
    sweep(tmp_path, releases=RELEASES[:1] + RELEASES[2:])
    rows = timing_rows({k: v for k, v in SPEED.items() if k != ("jax", OTHER_JAX)}, versions=False)
    write_timing(tmp_path, rows, [c for c in core.COLUMNS if c != "framework_version"])
    _, _, summary, timing = _loaded(tmp_path)
    assert set(timing.rows["framework_version"]) == {PINNED_TORCH, PINNED_JAX}
    jax = summary[(summary["framework"] == "jax") & (summary["optimizer"] == "adam")].iloc[0]
    assert jax["time_ratio_vs_torch"] == pytest.approx(1.5, rel=0.05) and jax["timing_n"] == 12
    bare = speed.round_times(pd.DataFrame(rows))  # no report in between: the pinned release
    assert {speed.key_version(k) for k in bare} == {PINNED_TORCH, PINNED_JAX}


def test_ratios_against_the_baseline_compare_default_releases_only(tmp_path: Path) -> None:
    sweep(tmp_path)
    write_timing(tmp_path, timing_rows(SPEED))
    _, _, summary, _ = _loaded(tmp_path)
    adam = summary[summary["optimizer"] == "adam"].set_index(["framework", "framework_version"])
    assert adam.loc[("jax", PINNED_JAX), "time_ratio_vs_torch"] == pytest.approx(1.5, rel=0.05)
    assert math.isnan(adam.loc[("jax", OTHER_JAX), "time_ratio_vs_torch"])  # compared with jax 0.10.2 instead
    assert adam.loc[("torch", PINNED_TORCH), "time_ratio_vs_torch"] == pytest.approx(1.0)
    assert adam.loc[("jax", OTHER_JAX), "time_per_step_s"] == pytest.approx(1.8e-3, rel=0.05)


# ------------------------------------------------------------------ compare
def test_compare_keys_on_the_release(tmp_path: Path) -> None:
    a, b, c = tmp_path / "a", tmp_path / "b", tmp_path / "c"
    write_timing(a, timing_rows(SPEED, seed=1))
    write_timing(b, timing_rows(SPEED, seed=2))
    ra = compare.ratios(a)
    assert sorted((k[3], speed.key_version(k[:-1]), k[-1]) for k in ra) == sorted(
        2 * [("jax", OTHER_JAX, NEW_LABEL), ("jax", PINNED_JAX, "torch")])  # minibatch and adam each
    table = compare.compare_ratios(ra, compare.ratios(b), 0.10)
    assert len(table) == 4 and table["agree"].all()
    assert any(cfg.endswith(f"{OTHER_JAX} / {NEW_LABEL}") for cfg in table["configuration"])
    # C timed jax 0.9.2 alone against torch: none of A's jax 0.10.2 ratios may be matched with it.
    write_timing(c, timing_rows({("torch", PINNED_TORCH): 1e-3, ("jax", OTHER_JAX): 1.5e-3}, seed=3))
    crossed = compare.compare_ratios(ra, compare.ratios(c), 0.10)
    assert crossed.empty
    for folder in (a, b):
        (folder / "report").mkdir()
        pd.DataFrame([{"dataset": "mnist_embedded", "method": "adam", "claim": "converges fast", "framework": "jax",
                       "verdict": "supported", "model": "mlp"}]).to_csv(folder / "report" / "claims.csv", index=False)
    done = run_cli(str(a), str(b), module="bench.report.compare", timeout=120)
    assert done.returncode == 0, done.stdout + done.stderr
    assert "AGREE" in done.stdout and "other releases: against its newest" in done.stdout
    moved = tmp_path / "moved"
    shutil.copytree(b, moved)
    write_timing(moved, timing_rows({**SPEED, ("jax", OTHER_JAX): 2.4e-3}, seed=2))  # 0.9.2 now 1.6x 0.10.2
    done = run_cli(str(a), str(moved), module="bench.report.compare", timeout=120)
    assert done.returncode == 1 and "DISAGREE" in done.stdout and "2 ratio(s)" in done.stdout


# ------------------------------------------------------------------ parity
def test_parity_checks_of_two_releases_are_found(tmp_path: Path) -> None:
    write_parity(tmp_path, 1.4e-6)
    checks = version_checks(tmp_path)
    assert len(checks) == 1
    row = checks.iloc[0]
    assert (row["framework"], row["version_a"], row["version_b"], row["n"]) == ("jax", PINNED_JAX, OTHER_JAX, 50)
    assert row["param@N"] == pytest.approx(1.4e-6)
    assert pair_label({"framework_a": "jax", "framework_b": "jax", "version_a": PINNED_JAX,
                       "version_b": OTHER_JAX}) == f"{NEW_LABEL}–{OLD_LABEL}"
    assert version_checks(tmp_path / "nothing").empty


def test_the_versions_line_says_why_a_ratio_is_missing(tmp_path: Path) -> None:
    releases, checks = {"jax": [OTHER_JAX, PINNED_JAX]}, version_checks(tmp_path)
    rows = pd.DataFrame(timing_rows(SPEED))
    (line,) = versions.sentences(releases, versions.timed_releases(speed.round_times(rows), {"jax"}), checks, rows)
    assert line.startswith(f"**{OLD_LABEL} against {NEW_LABEL}** (the newest here): time per step ×1.2")
    assert f"no parity check compares them (`python -m bench.parity frameworks.jax.version={OTHER_JAX}`)" in line
    assert "no timing pass" in versions.sentences(releases, pd.DataFrame(), checks, None)[0]
    busy = rows.assign(contention=0.9)  # every sample ran beside another program: all left out
    timed = versions.timed_releases(speed.round_times(busy), {"jax"})
    assert timed.empty
    assert "timed, but no sample of it ran clean" in versions.sentences(releases, timed, checks, busy)[0]
    newest_only = rows[rows["framework_version"] != OTHER_JAX]
    timed = versions.timed_releases(speed.round_times(newest_only), {"jax"})
    assert "not in the timing pass" in versions.sentences(releases, timed, checks, newest_only)[0]


# ------------------------------------------------------------------ the page
# Two whole pages, of two releases and of one (11-13 s on two cores): make test builds them, the edit
# loop (make test-fast) leaves them to the single-release page of test_report.py.
SLOW_PAGE = pytest.mark.slow


@pytest.fixture(scope="module")
def pages(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    """The report of two jax releases with a timing pass and a parity check; and of one release each."""
    base = tmp_path_factory.mktemp("versions_report")
    two, one = base / "two", base / "one"
    sweep(two)
    write_timing(two, timing_rows(SPEED))
    write_parity(two, 1.4e-6)
    sweep(one, releases=RELEASES[:1] + RELEASES[2:])
    write_timing(one, timing_rows({k: v for k, v in SPEED.items() if k != ("jax", OTHER_JAX)}))
    with pytest.MonkeyPatch.context() as mp:
        mp.setitem(matplotlib.rcParams, "svg.fonttype", "none")  # legends as text in the SVG, to be read here
        for results in (two, one):
            build_report(results, results / "report", extra_modules=(), log=lambda s: None)
    return {"two": two / "report", "one": one / "report"}


def _section(page: str, anchor: str) -> str:
    return html.unescape(page.split(f'<h2 id="{anchor}">')[1].split("<h2 ")[0])


@SLOW_PAGE
def test_the_page_labels_each_release(pages: dict[str, Path]) -> None:
    page = (pages["two"] / "index.html").read_text()
    table = _section(page, "table-mnist-embedded")
    for label in ("torch", OLD_LABEL, NEW_LABEL):
        assert f"<td>{label}</td>" in table
    assert "<td>jax</td>" not in table and "see Versions" in table
    glance = _section(page, "glance")
    assert "<strong>Fastest: torch</strong>" in glance and f"<td>{OLD_LABEL}</td>" in glance
    ratio = re.search(rf"{re.escape(OLD_LABEL)} ([\d.]+) \[", glance)
    assert float(ratio.group(1)) == pytest.approx(1.8, rel=0.05)
    assert f"{OLD_LABEL} against {NEW_LABEL}" in glance  # the Versions answer, in a line
    claims_text = _section(page, "claims-mnist-embedded")
    assert f"judged at its default one (jax {PINNED_JAX})" in claims_text
    verdicts = pd.read_csv(pages["two"] / "claims.csv")
    assert set(verdicts["framework"]) - {"—"} == {"torch", "jax"}
    summary = pd.read_csv(pages["two"] / "summary.csv", dtype={"framework_version": str})
    assert list(summary.columns) == list(pd.read_csv(pages["one"] / "summary.csv").columns)
    assert sorted(summary.loc[summary["framework"] == "jax", "framework_version"].unique()) == sorted(
        [OTHER_JAX, PINNED_JAX])


@SLOW_PAGE
def test_the_versions_section_gives_the_ratio_and_the_parameter_difference(pages: dict[str, Path]) -> None:
    page = (pages["two"] / "index.html").read_text()
    versions = _section(page, "versions")
    line = re.search(rf"{re.escape(OLD_LABEL)} against {re.escape(NEW_LABEL)}</strong> \(the newest here\): "
                     r"time per step ×([\d.]+) \[([\d.]+), ([\d.]+)\]", versions)
    assert line, versions[:2000]
    est, lo, hi = map(float, line.groups())
    assert est == pytest.approx(1.2, rel=0.01) and lo <= est <= hi
    assert "parameters at most 1.4e-06 of their scale apart after 50 steps (adam reference; 1 parity check)" in versions
    assert "time ÷ newest's</th>" in versions and "<td>newest</td>" in versions
    assert versions.index("<td>minibatch/native/eager bs32</td>") < versions.index("<td>adam/native/eager bs32</td>")
    assert versions.count(f"<td>{OTHER_JAX}</td>") == 2  # minibatch and adam were timed
    assert f"<td>{PINNED_JAX} vs {OTHER_JAX}</td>" in versions and "<td>1.4e-06</td>" in versions
    md = (pages["two"] / "report.md").read_text()
    assert "## Versions" in md


@SLOW_PAGE
def test_figures_draw_each_release_in_its_frameworks_colour_with_its_own_line_style(pages: dict[str, Path]) -> None:
    two = (pages["two"] / "test_acc_vs_epoch_mnist-embedded.svg").read_text()
    one = (pages["one"] / "test_acc_vs_epoch_mnist-embedded.svg").read_text()
    assert OLD_LABEL in two and NEW_LABEL in two and "jax 0" not in one
    assert "stroke-dasharray" in two and "stroke-dasharray" not in one  # the older release dashed, else solid
    jax = frameworks.get("jax").colour.lower()
    dashed = re.findall(r'<path d="[^"]*"[^>]*style="([^"]*stroke-dasharray[^"]*)"', two)
    assert dashed and all(f"stroke: {jax}" in s for s in dashed)
    speed_svg = (pages["two"] / "time_per_step_mnist-embedded.svg").read_text()
    assert OLD_LABEL in speed_svg and "<pattern" in speed_svg  # the older release's bars hatched


@SLOW_PAGE
def test_one_release_each_looks_as_before(pages: dict[str, Path]) -> None:
    page = (pages["one"] / "index.html").read_text()
    assert 'id="versions"' not in page and "Versions" not in page and NEW_LABEL not in page
    assert "<td>jax</td>" in _section(page, "table-mnist-embedded")
    assert "judged at its default one" not in page


# ------------------------------------------------------------------ the real thing
@pytest.mark.slow
@pytest.mark.xdist_group("jax-version")
def test_a_real_two_release_sweep_is_timed_and_reported(other_jax: dict, tmp_path: Path) -> None:
    """The four runs of two JAX releases (tests/test_versions.py's sweep): a short timing pass interleaves
    the releases, gives 0.9.2's time over 0.10.2's with its interval, and the report shows both."""
    assert other_jax["proc"].returncode == 0
    results = tmp_path / "results"
    shutil.copytree(other_jax["results"] / "runs", results / "runs")
    done = run_cli(str(results), "processes=2", "rounds=2", "budget_s=5", "contention_threshold=1",
                   module="bench.timing", env=other_jax["env"], timeout=600)
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-3000:]
    assert "[env]" not in done.stdout  # the sweep's venv, reused
    with open(results / "timing" / "timing.csv", newline="") as fh:
        rows = list(csv.DictReader(fh))
    assert {r["framework_version"] for r in rows} == {OTHER_JAX, PINNED_JAX}
    assert {(r["process"], r["round"]) for r in rows} == {(p, r) for p in "12" for r in "12"}
    assert re.search(rf"jax {OTHER_JAX} adam/native/eager bs32 / jax {PINNED_JAX} adam/native/eager bs32 = "
                     r"[\d.]+ \[[\d.]+, [\d.]+\] \(n=4, 2 processes\)", done.stdout), done.stdout[-3000:]
    report = run_cli(str(results), "extra=false", module="bench.report", env=other_jax["env"], timeout=600)
    assert report.returncode == 0, report.stderr[-3000:]
    page = html.unescape((results / "report" / "index.html").read_text())
    assert '<h2 id="versions">Versions</h2>' in page and f"<td>jax {OTHER_JAX}</td>" in page
    # The report leaves out samples taken while other processes used the CPU (this machine may be shared).
    assert re.search(rf"jax {OTHER_JAX} against jax {PINNED_JAX}</strong> \(the newest here\): "
                     r"(time per step ×[\d.]+ \[|timed, but no sample of it ran clean)", page)

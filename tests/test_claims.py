"""Claims judged with 95 % intervals: the three verdicts, the interval shown, divergence, the best lr.

Runs and the timing pass are synthetic (the harness' own CSV writer and columns), with known
medians, so these tests need no framework and never time anything themselves.
"""
from __future__ import annotations

import math
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from conftest import run_cli

from bench.report import aggregate, claims, load, speed, tables
from bench.results import METRIC_COLUMNS, write_csv, write_json
from bench.stats import Interval

N_TRAIN = 320
OWN_BATCH = {"bgd": N_TRAIN, "sgd": 1, "minibatch": 32, "momentum": 32, "rmsprop": 32, "adam": 32}
TIMING_COLUMNS = ("framework", "optimizer", "impl", "mode", "batch_size", "lr", "dataset", "n_train", "device",
                  "threads", "round", "steps", "time_s", "time_per_step_s", "cpu_time_s", "contention")


def make_run(results: Path, framework: str, optimizer: str, seed: int, accs: list[float], lr: float = 0.01,
             status: str = "completed", val_accs: list[float] | None = None,
             epoch_times: list[float] | None = None, contention: list[float] | None = None) -> str:
    """One run's metrics.csv and run.json as the harness writes them; returns the run_id."""
    batch = OWN_BATCH[optimizer]
    run_id = f"{framework}-{optimizer}-lr{lr:g}-s{seed}"
    base = dict(run_id=run_id, framework=framework, optimizer=optimizer, impl="native", mode="eager", lr=lr,
                batch_size=batch, seed=seed, dataset="mnist_embedded", n_train=N_TRAIN, n_test=100, device="cpu")
    per_epoch = math.ceil(N_TRAIN / batch)
    rows = [{**base, "epoch": e, "steps": e * per_epoch, "train_loss": 2.3 * (1 - a) if a == a else math.nan,
             "test_loss": 2.0, "test_acc": a, "val_acc": (val_accs or [math.nan] * len(accs))[e],
             "epoch_time_s": 0.0 if e == 0 else (epoch_times or [0.2] * len(accs))[e - 1],
             "contention": (contention or [math.nan] * len(accs))[e], "status": status}
            for e, a in enumerate(map(float, accs))]
    write_csv(results / "runs" / run_id / "metrics.csv", rows, METRIC_COLUMNS)
    write_json(results / "runs" / run_id / "run.json", {"run_id": run_id, "status": status})
    return run_id


def write_timing(results: Path, medians: dict[tuple[str, str], float], rounds: int = 7, spread: float = 0.02,
                 contended_rounds: tuple[int, ...] = ()) -> None:
    """timing.csv and timing.json of an interleaved timing pass with known medians.

    ``medians``: (framework, method) -> seconds per step. Each configuration's rounds are the
    median times 1 + a symmetric spread of ``spread``, in an order of its own, so its median is
    exact and the paired ratios scatter. ``contended_rounds`` ran 50× slower under contention 0.6:
    they must be left out.
    """
    offsets = np.linspace(-spread, spread, rounds)
    rows = []
    for r in range(rounds):
        for i, ((fw, method), median) in enumerate(medians.items()):
            busy = r in contended_rounds
            t = median * (50.0 if busy else 1 + offsets[(r * (i + 2)) % rounds])
            rows.append({"framework": fw, "optimizer": method, "impl": "native", "mode": "eager",
                         "batch_size": OWN_BATCH[method], "lr": 0.01, "dataset": "mnist_embedded",
                         "n_train": N_TRAIN, "device": "cpu", "threads": 1, "round": r, "steps": 10,
                         "time_s": 10 * t, "time_per_step_s": t, "cpu_time_s": 10 * t,
                         "contention": 0.6 if busy else 0.01})
    write_csv(results / "timing" / "timing.csv", rows, TIMING_COLUMNS)
    write_json(results / "timing" / "timing.json", {
        "command": "python -m bench.timing", "started": "2026-11-27T00:00:00Z", "host": "test", "cpu": "test",
        "rounds": rounds, "warmup_rounds": 1, "budget_s": 60, "configs": len(medians),
        "contention_threshold": speed.CONTENTION_THRESHOLD})


def judged(results: Path) -> tuple[pd.DataFrame, pd.DataFrame, dict[tuple[str, str], claims.Claim]]:
    runs = load.load_runs(results)
    timing, _ = load.load_timing(results)
    rows = timing.rows if timing else None
    stats = aggregate.run_stats(runs.metrics, runs.steps)
    summary = aggregate.summarize(stats, rows)
    found = claims.check_claims(summary, stats, speed.round_times(rows) if rows is not None else {},
                                load.default_lrs())
    return stats, summary, {(c.method, c.claim, c.framework): c for c in found}


def three_methods(results: Path, seeds: tuple[int, ...] = (0, 1, 2)) -> None:
    for seed in seeds:
        for method, acc in (("sgd", 0.8), ("minibatch", 0.7), ("adam", 0.9)):
            make_run(results, "torch", method, seed, [0.1, acc - 0.1 + 0.01 * seed, acc + 0.01 * seed])


# ------------------------------------------------------------------ the verdict rule
@pytest.mark.parametrize(("ci", "side", "expected"), [
    (Interval(2.0, 1.5, 2.5, 7), ">", "supported"),
    (Interval(0.5, 0.4, 0.6, 7), ">", "not supported"),
    (Interval(1.0, 0.8, 1.2, 7), ">", "inconclusive"),
    (Interval(0.5, 0.4, 0.6, 7), "<", "supported"),
    (Interval(2.0, math.nan, math.nan, 1), ">", "inconclusive"),  # one sample: no interval, no verdict
])
def test_verdict_is_where_the_interval_lies(ci: Interval, side: str, expected: str) -> None:
    assert claims.verdict(ci, side, 1.0) == expected


def test_time_claims_clear_oppose_and_overlap_on_a_known_timing_pass(tmp_path: Path) -> None:
    three_methods(tmp_path)
    # sgd 0.5 ms vs minibatch 1 ms per step: faster steps (clears 1), but 16x the time per sample
    # (wholly above 1); adam 1.10 ms with a ±5 % spread straddles its +10 % threshold.
    write_timing(tmp_path, {("torch", "minibatch"): 1e-3, ("torch", "sgd"): 0.5e-3})
    extra = tmp_path / "adam"
    write_timing(extra, {("torch", "adam"): 1.10e-3}, spread=0.05)
    timing = pd.concat([pd.read_csv(tmp_path / "timing" / "timing.csv"), pd.read_csv(extra / "timing" / "timing.csv")])
    timing.to_csv(tmp_path / "timing" / "timing.csv", index=False)

    _, summary, found = judged(tmp_path)
    fast = found[("sgd", "fast iterations", "torch")]
    assert fast.verdict == "supported"
    assert found[("sgd", "computationally efficient", "torch")].verdict == "not supported"
    assert found[("adam", "computationally more complex", "torch")].verdict == "inconclusive"
    assert {c.verdict for c in found.values()} <= set(claims.VERDICTS)
    # The interval and n are shown: the median ratio 0.5 with its bounds, over 7 paired rounds.
    lo, hi = (float(x) for x in fast.interval.split("[")[1].rstrip("]").split(","))
    assert lo <= 0.5 <= hi < 1 and fast.interval.startswith("sgd/minibatch time per step < 1: 0.5")
    assert fast.n == "7 rounds"
    assert fast.lr == "default lr (no grid): sgd 0.01, minibatch 0.01"
    row = summary[summary["optimizer"] == "sgd"].iloc[0]
    assert row["time_per_step_s"] == pytest.approx(0.5e-3) and row["timing_n"] == 7
    assert row["time_per_step_lo"] <= 0.5e-3 <= row["time_per_step_hi"]


def test_without_a_timing_pass_time_claims_are_inconclusive(tmp_path: Path) -> None:
    three_methods(tmp_path)
    _, summary, found = judged(tmp_path)
    fast = found[("sgd", "fast iterations", "torch")]
    assert fast.verdict == "inconclusive" and "no timing pass" in fast.evidence
    assert "sweep wall time (runs shared the cores)" in fast.evidence
    assert (summary["timing_n"] == 0).all() and summary["time_per_step_s"].isna().all()
    table = tables.comparison_table(summary, timed=False)
    assert "sweep s/epoch" in table.columns and "ms/step (timing pass)" not in table.columns


def test_contended_rounds_are_left_out_and_counted(tmp_path: Path) -> None:
    three_methods(tmp_path, seeds=(0,))
    write_timing(tmp_path, {("torch", "minibatch"): 1e-3, ("torch", "sgd"): 0.5e-3}, rounds=7,
                 contended_rounds=(1, 4))
    _, summary, found = judged(tmp_path)
    row = summary[summary["optimizer"] == "minibatch"].iloc[0]
    assert (row["timing_n"], row["timing_rounds"], row["timing_contended"]) == (5, 7, 2)
    assert row["time_per_step_hi"] < 1.1e-3  # the 50x-slow contended rounds are not in the interval
    assert found[("sgd", "fast iterations", "torch")].n == "5 rounds"
    table = tables.comparison_table(summary, timed=True)
    assert set(table["rounds"]) == {"5/7", "0"}  # adam has no timing rounds


def test_sweep_epochs_under_contention_are_not_mixed_with_clean_ones(tmp_path: Path) -> None:
    # Epoch 2 ran while other processes took 60 % of the CPU and was 10x slower: it is left out.
    make_run(tmp_path, "torch", "sgd", 0, [0.1, 0.5, 0.6, 0.7], epoch_times=[0.2, 2.0, 0.2],
             contention=[math.nan, 0.01, 0.6, 0.02])
    # Every epoch contended: its time is kept, but marked as such.
    make_run(tmp_path, "torch", "minibatch", 0, [0.1, 0.5, 0.6], epoch_times=[0.3, 0.3], contention=[0, 0.5, 0.5])
    _, summary, _ = judged(tmp_path)
    sgd, mb = (summary[summary["optimizer"] == m].iloc[0] for m in ("sgd", "minibatch"))
    assert sgd["epoch_time_s_mean"] == pytest.approx(0.2) and not sgd["timed_contended"]
    assert mb["epoch_time_s_mean"] == pytest.approx(0.3) and mb["timed_contended"]
    assert tables.contention_note(summary).startswith("3 of 5 sweep epochs timed under contention")
    table = tables.comparison_table(summary, timed=False).set_index("optimizer")
    assert table.loc["minibatch", "sweep s/epoch"].endswith("(contended)")
    assert not table.loc["sgd", "sweep s/epoch"].endswith("(contended)")


def test_accuracy_claims_pair_seeds_and_a_single_seed_decides_nothing(tmp_path: Path) -> None:
    three_methods(tmp_path)
    found = judged(tmp_path)[2]
    fast = found[("adam", "converges fast", "torch")]  # adam 0.8 vs minibatch 0.6 after epoch 1, three seeds
    assert fast.verdict == "supported" and fast.n == "3 seeds"
    assert "(mean over 3 vs 3 seeds)" in fast.evidence
    assert "adam 0.01: the only lr run (no grid)" in fast.lr  # adam's configured default is another lr
    single = tmp_path / "single"
    three_methods(single, seeds=(0,))
    one = judged(single)[2][("adam", "converges fast", "torch")]
    assert one.verdict == "inconclusive" and one.n == "1 seed" and "single seed" in one.evidence


def test_diverged_runs_are_left_out_of_the_means_but_counted(tmp_path: Path) -> None:
    make_run(tmp_path, "torch", "sgd", 0, [0.1, 0.5, 0.6])
    make_run(tmp_path, "torch", "sgd", 1, [0.1, 0.5, 0.8])
    make_run(tmp_path, "torch", "sgd", 2, [0.1, 0.3, math.nan], status="diverged")
    _, summary, _ = judged(tmp_path)
    row = summary.iloc[0]
    assert row["final_acc_mean"] == pytest.approx(0.7) and (row["runs"], row["diverged"]) == (3, 1)
    table = tables.comparison_table(summary, timed=False)
    assert table.iloc[0]["diverged"] == "1/3" and table.iloc[0]["final acc"].startswith("0.7")


def test_each_method_is_judged_at_its_best_lr(tmp_path: Path) -> None:
    for seed in (0, 1):
        make_run(tmp_path, "torch", "minibatch", seed, [0.1, 0.6, 0.7])
        make_run(tmp_path, "torch", "adam", seed, [0.1, 0.5 + 0.01 * seed, 0.6], lr=0.1)  # the worse lr
        make_run(tmp_path, "torch", "adam", seed, [0.1, 0.8 + 0.01 * seed, 0.9], lr=0.001)
    _, summary, found = judged(tmp_path)
    fast = found[("adam", "converges fast", "torch")]
    assert fast.verdict == "supported"  # judged at lr 0.001; at lr 0.1 adam would lose to minibatch
    assert "adam 0.001 (best of 2 lr by test acc)" in fast.lr
    assert "minibatch 0.01: default lr (no grid)" in fast.lr
    # A validation split decides over the test accuracy when it was measured.
    make_run(tmp_path, "torch", "adam", 0, [0.1, 0.5, 0.6], lr=0.1, val_accs=[0.1, 0.5, 0.95])
    make_run(tmp_path, "torch", "adam", 0, [0.1, 0.8, 0.9], lr=0.001, val_accs=[0.1, 0.8, 0.85])
    refs = aggregate.reference_rows(judged(tmp_path)[1], load.default_lrs())
    assert refs["torch"]["adam"]["lr"] == 0.1 and "by val acc" in refs["torch"]["adam"]["lr_used"]


def test_report_cli_writes_timing_columns_and_ratios_against_the_baseline(tmp_path: Path) -> None:
    for fw in ("torch", "tensorflow", "jax"):
        for seed in (0, 1):
            for method in ("minibatch", "sgd"):
                make_run(tmp_path, fw, method, seed, [0.1, 0.6, 0.7])
    write_timing(tmp_path, {("torch", "minibatch"): 1e-3, ("tensorflow", "minibatch"): 2e-3,
                            ("jax", "minibatch"): 0.5e-3, ("torch", "sgd"): 0.4e-3})
    proc = run_cli(str(tmp_path), "extra=false", module="bench.report", timeout=300)
    assert proc.returncode == 0, proc.stderr[-2000:]
    summary = pd.read_csv(tmp_path / "report" / "summary.csv")
    for col in ("time_per_step_s", "time_per_step_lo", "time_per_step_hi", "timing_n", "time_ratio_vs_torch",
                "time_ratio_vs_torch_lo", "time_ratio_vs_torch_hi", "tf_over_torch_time", "final_acc_mean"):
        assert col in summary.columns
    mb = summary[summary["optimizer"] == "minibatch"].set_index("framework")
    assert mb.loc["tensorflow", "time_ratio_vs_torch"] == pytest.approx(2.0, rel=0.05)
    assert mb.loc["jax", "time_ratio_vs_torch"] == pytest.approx(0.5, rel=0.05)
    assert mb.loc["torch", "time_ratio_vs_torch"] == pytest.approx(1.0)
    assert mb.loc["tensorflow", "time_ratio_vs_torch_lo"] <= 2.0 <= mb.loc["tensorflow", "time_ratio_vs_torch_hi"]
    page = (tmp_path / "report" / "index.html").read_text()
    assert "timing pass" in page and "95% interval" in page

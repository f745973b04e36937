""""At a glance" from small hand-made frames: the fastest framework and its ratios, memory and first
step medians, the largest accuracy difference, the claim counts, and what is said without a timing pass.

No run, no figure, no browser: ``bench.report.glance`` is pure.
"""
from __future__ import annotations

import math
import re

import numpy as np
import pandas as pd
import pytest

from bench.frameworks import NAMES
from bench.report import glance
from bench.report.claims import VERDICTS
from bench.report.speed import round_times

FW = NAMES[:3] if len(NAMES) >= 3 else pytest.skip("needs three frameworks in the registry", allow_module_level=True)
BASE_FW = FW[0]
ROUNDS = 9


def config(framework: str, method: str, batch: int = 32, **more: object) -> dict:
    """A summary row's keys: one configuration of the mlp on the embedded subset."""
    return {"dataset": "mnist_embedded", "model": "mlp", "device": "cpu", "framework": framework,
            "optimizer": method, "impl": "native", "mode": "eager", "batch_size": batch, "lr": 0.01,
            "n_train": 400, **more}


def timed(times: dict[tuple[str, str], float], seed: int = 0, drift: float = 0.05,
          contended: dict[tuple[str, str], list[int]] | None = None) -> tuple[pd.DataFrame, dict]:
    """(summary, rounds) where configuration (framework, method) takes ``times[...]`` s per step, every
    round scaled by a drift that all configurations share (the machine's), plus 0.5 % noise; the rounds
    listed in ``contended`` ran while other processes took the CPU. ``rounds`` is what the report reads:
    ``speed.round_times`` of those timing rows."""
    rng = np.random.default_rng(seed)
    shared = 1 + drift * rng.standard_normal(ROUNDS)
    summary, rows = [], []
    for (fw, method), t in times.items():
        row = config(fw, method)
        summary.append(row)
        busy = (contended or {}).get((fw, method), [])
        rows += [{**row, "round": r, "time_per_step_s": t * shared[r] * (1 + 0.005 * rng.standard_normal()),
                  "contention": 0.9 if r in busy else 0.0} for r in range(ROUNDS)]
    return pd.DataFrame(summary), round_times(pd.DataFrame(rows))


# ------------------------------------------------------------------ speed
def test_the_fastest_framework_and_every_other_ones_ratio_with_its_interval() -> None:
    # FW[2] is fastest on both methods; FW[0] takes 2x and 3x its time, FW[1] 4x on both.
    times = {(FW[0], "adam"): 2e-3, (FW[1], "adam"): 4e-3, (FW[2], "adam"): 1e-3,
             (FW[0], "sgd"): 3e-4, (FW[1], "sgd"): 4e-4, (FW[2], "sgd"): 1e-4}
    summary, rounds = timed(times)
    speed = glance.fastest_framework(summary, rounds, baseline=BASE_FW)
    assert speed.fastest == FW[2] and speed.configs == 2 and speed.untimed == ()
    assert list(speed.ratios) == [FW[0], FW[1]]  # registry order, the fastest left out
    geo = math.sqrt(2 * 3)  # geometric mean over the two configurations
    assert speed.ratios[FW[0]].est == pytest.approx(geo, rel=0.02)
    assert speed.ratios[FW[1]].est == pytest.approx(4, rel=0.02)
    for fw, ci in speed.ratios.items():
        assert ci.n == ROUNDS and ci.lo <= ci.est <= ci.hi and ci.lo > 1, fw
    (lo, lo_name), (hi, hi_name) = speed.spread[FW[0]]
    assert (lo_name, hi_name) == ("adam", "sgd")
    assert lo == pytest.approx(2, rel=0.02) and hi == pytest.approx(3, rel=0.02)
    text = glance.speed_sentence(speed)
    assert f"**Fastest: {FW[2]}**" in text and "2 configurations" in text and "Not clearly" not in text
    table = glance.group_table(speed, glance.run_figures(summary.assign(run_id=range(len(summary)))))
    column = table.set_index("framework")[f"time per step ÷ {FW[2]}'s"]
    assert column[FW[2]] == "1 (fastest)" and column[FW[1]].startswith("4")
    assert re.fullmatch(r"(1\.99|2|2\.01) \(adam\) to (2\.99|3|3\.01) \(sgd\)",
                        table.set_index("framework").loc[FW[0], "per configuration"])


def test_a_framework_faster_on_one_method_only_and_a_tie_are_said() -> None:
    # FW[1] loses on adam by 3x and wins on sgd by 2x: overall FW[0] is faster, and the spread shows sgd < 1.
    summary, rounds = timed({(FW[0], "adam"): 1e-3, (FW[1], "adam"): 3e-3, (FW[0], "sgd"): 2e-4,
                             (FW[1], "sgd"): 1e-4})
    speed = glance.fastest_framework(summary, rounds)
    assert speed.fastest == FW[0]
    (lo, lo_name), (hi, hi_name) = speed.spread[FW[1]]
    assert lo_name == "sgd" and lo == pytest.approx(0.5, rel=0.02) and hi_name == "adam"
    # Equal times: one of them is named, and the sentence says the other is not clearly slower.
    summary, rounds = timed({(FW[0], "adam"): 1e-3, (FW[1], "adam"): 1e-3}, drift=0.0)
    speed = glance.fastest_framework(summary, rounds)
    assert speed.ratios[next(iter(speed.ratios))].lo <= 1
    assert "Not clearly slower" in glance.speed_sentence(speed)


def test_an_untimed_framework_and_contended_rounds() -> None:
    # two contended rounds of one configuration; FW[2] never timed
    summary, rounds = timed({(FW[0], "adam"): 2e-3, (FW[1], "adam"): 1e-3}, contended={(FW[0], "adam"): [2, 5]})
    summary = pd.concat([summary, pd.DataFrame([config(FW[2], "adam")])], ignore_index=True)
    speed = glance.fastest_framework(summary, rounds)
    assert speed.fastest == FW[1] and speed.untimed == (FW[2],)
    assert speed.ratios[FW[0]].n == ROUNDS - 2  # only rounds every configuration had clean are paired
    assert speed.ratios[FW[0]].est == pytest.approx(2, rel=0.02)
    assert f"Not timed: {FW[2]}." in glance.speed_sentence(speed)
    figures = glance.run_figures(summary)
    assert glance.group_table(speed, figures).set_index("framework").loc[FW[2], f"time per step ÷ {FW[1]}'s"] \
        == "not timed"


def test_without_a_timing_pass_no_framework_is_called_fastest() -> None:
    summary, rounds = timed({(FW[0], "adam"): 2e-3, (FW[1], "adam"): 1e-3})
    none = glance.fastest_framework(summary, {}, timing_pass=False)
    assert none.fastest is None and none.ratios == {} and none.why == "no timing pass"
    text = glance.speed_sentence(none)
    assert "no timing pass" in text and "fastest framework" in text and not any(c.isdigit() for c in text)
    table = glance.group_table(none, glance.run_figures(summary))
    assert not any(c.startswith("time per step") for c in table.columns) and "per configuration" not in table
    # A timing pass that did not time this group, or timed one framework only: no fastest either.
    other = {k: v for k, v in rounds.items() if k[3] == FW[0]}
    assert glance.fastest_framework(summary, {}, timing_pass=True).why.startswith(
        "the timing pass holds no clean sample of these configurations")
    assert glance.fastest_framework(summary, other).why == f"only {FW[0]} was timed"


# ------------------------------------------------------------------ memory and start-up
def test_memory_and_first_step_are_medians_over_each_frameworks_runs() -> None:
    stats = pd.DataFrame([
        {"framework": FW[1], "mode": "eager", "rss_peak_mib": p, "train_mem_mib": t, "mem_floor_mib": 0.9,
         "device_peak_mib": math.nan, "startup_first_step_s": s}
        for p, t, s in ((400, 30, 2.0), (420, 50, 4.0), (410, 40, 3.0))
    ] + [
        {"framework": FW[0], "mode": mode, "rss_peak_mib": 300, "train_mem_mib": 10, "mem_floor_mib": 0.9,
         "device_peak_mib": math.nan, "startup_first_step_s": s}
        for mode, s in (("eager", 1.0), ("compiled", 5.0), ("compiled", 7.0))
    ])
    figures = glance.run_figures(stats, baseline=FW[0]).set_index("framework")
    assert list(figures.index) == [FW[0], FW[1]]  # the baseline first
    assert figures.loc[FW[1], "rss_peak_mib"] == 410 and figures.loc[FW[1], "train_mem_mib"] == 40
    assert figures.loc[FW[1], "startup_first_step_s"] == 3.0 and figures.loc[FW[1], "runs"] == 3
    assert figures.loc[FW[0], "first_step"] == {"eager": 1.0, "compiled": 6.0}  # two modes: each its median
    table = glance.group_table(glance.Speed(None, why="no timing pass"), figures.reset_index()).set_index("framework")
    assert "GPU peak MiB" not in table.columns  # no run counted one
    assert table.loc[FW[1], "peak MiB"] == "410" and table.loc[FW[1], "training MiB"] == "40"
    assert table.loc[FW[1], "floor MiB"] == "0.9" and table.loc[FW[1], "first step s"] == "3"
    assert table.loc[FW[0], "first step s"] == "eager 1, compiled 6"


def test_runs_without_memory_figures_say_so() -> None:
    summary, rounds = timed({(FW[0], "adam"): 2e-3, (FW[1], "adam"): 1e-3})
    stats = summary.assign(seed=0, final_acc=0.9)
    summary = summary.assign(final_acc_mean=0.9)
    group = glance.group_glance("**t**", summary, stats, rounds, None, True, claims=False)
    assert list(group.table.columns) == ["framework", f"time per step ÷ {FW[1]}'s", "runs"]
    assert any(line.startswith("Not recorded by these runs") and "peak MiB" in line for line in group.after)
    assert any("no claims" in line for line in group.after)


# ------------------------------------------------------------------ accuracy
def test_the_largest_accuracy_difference_names_method_and_frameworks() -> None:
    accs = {("adam", FW[0]): [0.90, 0.92], ("adam", FW[1]): [0.89, 0.91], ("adam", FW[2]): [0.905, 0.915],
            ("sgd", FW[0]): [0.80, 0.82], ("sgd", FW[1]): [0.86, 0.90], ("sgd", FW[2]): [math.nan, math.nan]}
    stats = pd.DataFrame([{**config(fw, m), "seed": s, "final_acc": a} for (m, fw), v in accs.items()
                          for s, a in enumerate(v)])
    summary = pd.DataFrame([{**config(fw, m), "final_acc_mean": np.nanmean(v) if not np.isnan(v).all() else math.nan}
                            for (m, fw), v in accs.items()])
    gap = glance.largest_accuracy_gap(summary, stats)
    assert (gap.config, gap.high, gap.low) == ("sgd", FW[1], FW[0])  # 0.88 vs 0.81; FW[2] diverged there
    assert gap.high_acc == pytest.approx(0.88) and gap.low_acc == pytest.approx(0.81)
    assert gap.diff.est == pytest.approx(0.07) and gap.diff.n == 2  # paired by seed: 0.06 and 0.08
    text = glance.accuracy_sentence(gap, FW)
    assert f"sgd, {FW[1]} 0.88 vs {FW[0]} 0.81" in text and "2 seeds" in text
    # The same method at two lrs: the configuration is named by what tells them apart.
    two_lr = pd.concat([summary, summary.assign(lr=0.1, final_acc_mean=summary["final_acc_mean"] - 0.2 *
                                                (summary["framework"] == FW[2]))], ignore_index=True)
    gap = glance.largest_accuracy_gap(two_lr, stats)
    assert gap.config == "adam lr 0.1" and gap.low == FW[2] and math.isnan(gap.diff.est)  # no seeds at lr 0.1
    assert "no seed ran in both" in glance.accuracy_sentence(gap, FW)


def test_no_difference_to_show() -> None:
    one = pd.DataFrame([{**config(FW[0], "adam"), "final_acc_mean": 0.9}])
    assert glance.largest_accuracy_gap(one, pd.DataFrame()) is None
    assert "one framework only" in glance.accuracy_sentence(None, [FW[0]])
    same = pd.DataFrame([{**config(fw, "adam"), "final_acc_mean": 0.9} for fw in FW[:2]])
    gap = glance.largest_accuracy_gap(same, pd.DataFrame())
    assert {gap.high, gap.low} == set(FW[:2]) and "same mean final test accuracy" in glance.accuracy_sentence(gap, FW)


# ------------------------------------------------------------------ claims
def test_claim_counts_and_their_sentence() -> None:
    verdicts = pd.DataFrame(
        [{"method": "sgd", "claim": "fast iterations", "framework": fw, "verdict": v}
         for fw, v in zip(FW, ("supported", "supported", "inconclusive"), strict=True)]
        + [{"method": "adam", "claim": "converges fast", "framework": fw, "verdict": v}
           for fw, v in zip(FW, ("not supported", "inconclusive", "inconclusive"), strict=True)]
        + [{"method": "momentum", "claim": "reduces oscillation", "framework": "—", "verdict": "inconclusive"}])
    counts = glance.claim_counts(verdicts)
    assert counts == {"supported": 2, "not supported": 1, "inconclusive": 4} and list(counts) == list(VERDICTS)
    text = glance.claims_sentence(verdicts)
    assert "2 supported, 1 not supported, 4 inconclusive: 7 verdicts on 3 claims" in text
    assert "1 claim no framework's runs could test" in text and f"({', '.join(FW)})" in text  # registry order
    assert glance.claim_counts(pd.DataFrame()) == dict.fromkeys(VERDICTS, 0)
    assert "none judged" in glance.claims_sentence(None)


def test_group_title_lists_the_methods_in_registry_order() -> None:
    assert glance.group_title(["adam", "sgd", "adam"], True) == "**The tutorial's methods** (sgd, adam)"
    assert glance.group_title(["adamw"], False, "Model lenet5") == "**Model lenet5 — beyond the tutorial** (adamw)"


def test_the_accuracy_difference_names_the_precision_of_a_float64_twin() -> None:
    accs = {("fp32", FW[0]): [0.90, 0.92], ("fp32", FW[1]): [0.90, 0.92],
            ("fp64", FW[0]): [0.80, 0.82], ("fp64", FW[1]): [0.90, 0.92]}
    stats = pd.DataFrame([{**config(fw, "adam", precision=p), "seed": s, "final_acc": a}
                          for (p, fw), v in accs.items() for s, a in enumerate(v)])
    summary = pd.DataFrame([{**config(fw, "adam", precision=p), "final_acc_mean": np.mean(v)}
                            for (p, fw), v in accs.items()])
    gap = glance.largest_accuracy_gap(summary, stats)
    assert (gap.config, gap.high, gap.low) == ("adam fp64", FW[1], FW[0])
    assert "adam fp64, " in glance.accuracy_sentence(gap, FW)

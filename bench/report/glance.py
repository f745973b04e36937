""""At a glance": the answer a reader came for, per model and method group, from the report's frames (pure).

The report's first section says, for each dataset and model and for each method group (the
tutorial's methods; those beyond it):

* which framework is fastest, with every other framework's time per step over the fastest's and
  its 95 % interval, from the timing pass (never from sweep times, which shared the cores);
* each framework's peak and training memory next to the model's floor, and its time to the first step;
* the largest final-accuracy difference between frameworks, paired by seed;
* how many of the tutorial's claims are supported, not supported and inconclusive.

Every number comes from the frames the report already loads: ``summary`` (one row per
configuration, ``aggregate.summarize``), ``stats`` (one row per run, ``aggregate.run_stats``),
``rounds`` (``speed.round_times``) and the claims' verdicts. Nothing is drawn or written here.
"""
from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field

import numpy as np
import pandas as pd

from bench.report.aggregate import CONFIG_KEYS
from bench.report.claims import VERDICTS, paired_difference, seed_values
from bench.report.groups import framework_order, method_order, units
from bench.report.speed import BASELINE, TIMING_KEYS, config_key, interval_text, time_ratio, with_framework
from bench.report.tables import fmt
from bench.stats import NAN_INTERVAL, Interval

# run.json's figures the glance table shows, as (column of stats, header); medians over a group's runs.
MEMORY = (("rss_peak_mib", "peak MiB"), ("train_mem_mib", "training MiB"), ("mem_floor_mib", "floor MiB"),
          ("device_peak_mib", "GPU peak MiB"))
FIRST_STEP = ("startup_first_step_s", "first step s")
# How a configuration key is named next to its value when it tells two configurations of one method
# apart ("adam batch 32", "adam compiled"); keys not here are named by their value alone.
_KEY_WORDS = {"batch_size": "batch", "lr": "lr", "n_train": "n_train"}


def _word(key: str, value: str) -> str:
    return f"{_KEY_WORDS[key]} {value}" if key in _KEY_WORDS else value

INTRO = ("The answer first, per model and method group; every number comes from the sections below. "
         "*time per step ÷ fastest's*: from the timing pass, the geometric mean over the configurations timed in "
         "every framework, paired by round, with its 95 % interval; *per configuration*: its lowest and highest "
         "value, method by method. Medians over the group's runs: *peak*, the run process's peak resident memory; "
         "*training*, what training added to it once the framework, the data and the model were ready; *floor*, "
         "the model's minimum in its precision (parameters, gradients, optimizer state, one batch's activations); "
         "*first step s*, seconds from the run's start to the end of its first step, compiling and tracing included.")


# ------------------------------------------------------------------ speed
@dataclass(frozen=True)
class Speed:
    """The fastest framework of a group, and how much longer every other one takes per step.

    ``ratios``: framework -> its time per step over the fastest's (geometric mean over the
    ``configs`` configurations timed in every framework compared, paired by round), with its
    95 % interval; the fastest's own entry is absent. ``spread``: framework -> the lowest and
    highest per-configuration ratio over the fastest, each with the configuration's label.
    ``why``: why no fastest framework is named ("" when one is).
    """

    fastest: str | None
    ratios: dict[str, Interval] = field(default_factory=dict)
    spread: dict[str, tuple[tuple[float, str], tuple[float, str]]] = field(default_factory=dict)
    configs: int = 0
    untimed: tuple[str, ...] = ()
    why: str = ""


def _rest(key: tuple) -> tuple:
    """A timing key without its framework and release: the configuration the frameworks share."""
    return with_framework(key, "", "")


def _labels(rests: Sequence[tuple]) -> dict[tuple, str]:
    """A short name per configuration: its method, plus what tells two of one method apart."""
    at = {k: i for i, k in enumerate(TIMING_KEYS)}
    out = {}
    for rest in rests:
        method = rest[at["optimizer"]]
        twins = [r for r in rests if r[at["optimizer"]] == method]
        words = [method]
        for k in TIMING_KEYS:
            if k not in ("framework", "optimizer") and len({r[at[k]] for r in twins}) > 1:
                words.append(_word(k, str(rest[at[k]])))
        out[rest] = " ".join(words)
    return out


def _per_round(rounds: Mapping[tuple, pd.Series], keys: Sequence[tuple], index: pd.Index) -> pd.Series:
    """Geometric mean of the configurations' times per step, round by round (the rounds of ``index``)."""
    logs = np.log(pd.concat([rounds[k].loc[index] for k in keys], axis=1).astype(float))
    return pd.Series(np.exp(logs.mean(axis=1)).to_numpy(float), index=index)


def fastest_framework(summary: pd.DataFrame, rounds: Mapping[tuple, pd.Series], timing_pass: bool = True,
                      baseline: str = BASELINE) -> Speed:
    """The fastest framework of ``summary``'s configurations (one group of one model), by time per step.

    Only configurations the timing pass timed in every timed framework are compared, and only the
    rounds in which every one of them was timed clean: the machine's drift cancels round by round.
    The fastest is the framework with the lowest median of its per-round geometric-mean time.
    """
    frameworks = framework_order(units(summary), baseline) if len(summary) else []
    if not timing_pass:
        return Speed(None, untimed=tuple(frameworks), why="no timing pass")
    timed: dict[str, dict[tuple, tuple]] = {}
    for unit, (_, row) in zip(units(summary), summary.iterrows()):  # each release a framework of its own
        key = config_key(row)
        if key in rounds and len(rounds[key]):
            timed.setdefault(unit, {})[_rest(key)] = key
    untimed = tuple(fw for fw in frameworks if fw not in timed)
    compared = [fw for fw in frameworks if fw in timed]
    if len(compared) < 2:
        why = ("the timing pass holds no clean sample of these configurations (it did not time them, or "
               "other processes used the CPUs throughout)" if not compared
               else f"only {compared[0]} was timed")
        return Speed(None, untimed=untimed, why=why)
    common = sorted(set.intersection(*(set(timed[fw]) for fw in compared)), key=str)
    if not common:
        return Speed(None, untimed=untimed, why="no configuration was timed in every framework")
    keys = {fw: [timed[fw][r] for r in common] for fw in compared}
    index = pd.concat([rounds[k] for fw in compared for k in keys[fw]], axis=1, join="inner").index
    if len(index) == 0:
        return Speed(None, untimed=untimed, configs=len(common),
                     why="no timing round timed every configuration clean")
    series = {fw: _per_round(rounds, keys[fw], index) for fw in compared}
    fastest = min(compared, key=lambda fw: (float(series[fw].median()), compared.index(fw)))
    labels = _labels(common)
    ratios, spread = {}, {}
    for fw in compared:
        if fw == fastest:
            continue
        ratios[fw] = time_ratio(series, fw, fastest, drift=getattr(rounds, "drift_ratio", 0.0))
        each = sorted((time_ratio(rounds, timed[fw][r], timed[fastest][r]).est, labels[r]) for r in common)
        each = [e for e in each if math.isfinite(e[0])]
        if each:
            spread[fw] = (each[0], each[-1])
    return Speed(fastest, ratios, spread, len(common), untimed)


def speed_sentence(speed: Speed) -> str:
    """The speed line of a group, in words and numbers from ``speed`` only."""
    if speed.fastest is None:
        if speed.why == "no timing pass":
            return ("**Speed: no timing pass** (`python -m bench.timing`), so no fastest framework is named: the "
                    "sweep's runs shared the cores, and their times say nothing about speed.")
        return f"**Speed: no fastest framework named**: {speed.why}."
    many = f"the {speed.configs} configurations" if speed.configs > 1 else "the configuration"
    others = ", ".join(f"{fw} {interval_text(ci)}" for fw, ci in speed.ratios.items())
    text = (f"**Fastest: {speed.fastest}**, by time per step in the timing pass over {many} timed in every "
            f"framework. Time per step over {speed.fastest}'s, with its 95 % interval: {others}.")
    close = [fw for fw, ci in speed.ratios.items() if not ci.known or ci.lo <= 1]
    if close:
        text += (f" Not clearly slower than {speed.fastest} (the interval reaches 1, or there is none): "
                 f"{', '.join(close)}.")
    if speed.untimed:
        text += f" Not timed: {', '.join(speed.untimed)}."
    return text


# ------------------------------------------------------------------ memory and start-up
def _median(values: pd.Series) -> float:
    v = pd.to_numeric(values, errors="coerce").dropna()
    return float(v.median()) if len(v) else math.nan


def run_figures(stats: pd.DataFrame, baseline: str = BASELINE) -> pd.DataFrame:
    """Per framework (registry order): its runs, and the median over them of every memory figure and of
    the time to the first step; ``first_step`` maps each mode to its median when the runs had several."""
    rows = []
    frameworks = framework_order(units(stats), baseline) if len(stats) else []
    for fw in frameworks:
        runs = stats[units(stats) == fw]
        row: dict[str, object] = {"framework": fw, "runs": len(runs)}
        for col, _ in (*MEMORY, FIRST_STEP):
            row[col] = _median(runs[col]) if col in runs.columns else math.nan
        col = FIRST_STEP[0]
        modes = list(dict.fromkeys(runs["mode"])) if "mode" in runs.columns else []
        row["first_step"] = ({m: _median(runs.loc[runs["mode"] == m, col]) for m in modes}
                             if col in runs.columns and len(modes) > 1 else {})
        rows.append(row)
    return pd.DataFrame(rows, columns=["framework", "runs", *(c for c, _ in (*MEMORY, FIRST_STEP)), "first_step"])


def _first_step_text(row: pd.Series) -> str:
    by_mode = {m: v for m, v in row["first_step"].items() if math.isfinite(v)}
    if by_mode:
        return ", ".join(f"{m} {fmt(v)}" for m, v in by_mode.items())
    return fmt(row[FIRST_STEP[0]])


# ------------------------------------------------------------------ accuracy
@dataclass(frozen=True)
class Gap:
    """The largest difference in final test accuracy between two frameworks on one configuration."""

    config: str  # the method, and what else tells the configuration apart within the group
    high: str  # the framework with the higher mean final accuracy
    high_acc: float
    low: str
    low_acc: float
    diff: Interval  # high − low, paired by seed (mean over the seeds both ran, 95 % interval)


def _config_name(summary: pd.DataFrame, row: pd.Series) -> str:
    """The method, plus every key in which its configurations in ``summary`` differ (lr, batch, mode,
    precision ...)."""
    same = summary[summary["optimizer"] == row["optimizer"]]
    words = [str(row["optimizer"])]
    for k in ("batch_size", "impl", "mode", "lr", "n_train", "device", "precision"):
        if k in same.columns and same[k].nunique(dropna=False) > 1:
            words.append(_word(k, f"{row[k]:g}" if k == "lr" else str(row[k])))
    return " ".join(words)


def largest_accuracy_gap(summary: pd.DataFrame, stats: pd.DataFrame, baseline: str = BASELINE) -> Gap | None:
    """Among configurations run in several frameworks, the one whose frameworks' mean final accuracies lie
    furthest apart; None when no configuration has a final accuracy in two frameworks. Ties: the first in
    the summary's order (methods in their registry order)."""
    if summary.empty:
        return None
    summary = summary.assign(_unit=units(summary))  # each release of a framework a framework of its own
    order = {fw: i for i, fw in enumerate(framework_order(summary["_unit"], baseline))}
    others = [k for k in CONFIG_KEYS if k in summary.columns]
    best: tuple[float, pd.Series, pd.Series] | None = None
    for _, grp in summary.groupby(others, sort=False, dropna=False):
        ok = grp[np.isfinite(grp["final_acc_mean"].to_numpy(float))]
        if ok["_unit"].nunique() < 2:
            continue
        # highest first, ties in framework order: two frameworks even when every accuracy is the same
        ok = ok.assign(_f=ok["_unit"].map(order)).sort_values(["final_acc_mean", "_f"],
                                                               ascending=[False, True], kind="stable")
        hi, lo = ok.iloc[0], ok.iloc[-1]
        gap = float(hi["final_acc_mean"] - lo["final_acc_mean"])
        if best is None or gap > best[0]:
            best = (gap, hi, lo)
    if best is None:
        return None
    _, hi, lo = best
    diff = paired_difference(seed_values(stats, hi, "final_acc"), seed_values(stats, lo, "final_acc")) \
        if len(stats) else NAN_INTERVAL
    return Gap(_config_name(summary, hi), str(hi["_unit"]), float(hi["final_acc_mean"]), str(lo["_unit"]),
               float(lo["final_acc_mean"]), diff)


def accuracy_sentence(gap: Gap | None, frameworks: Sequence[str]) -> str:
    if len(frameworks) < 2:
        return f"**Accuracy**: one framework only ({', '.join(frameworks) or 'none'}), nothing to compare."
    if gap is None:
        return "**Accuracy**: no configuration has a final accuracy in two frameworks (diverged or not run)."
    if gap.diff.n == 0:
        paired = "no seed ran in both"
    elif gap.diff.known:
        paired = f"paired by seed over {gap.diff.n} seeds, {interval_text(gap.diff)} with its 95 % interval"
    else:
        paired = f"{gap.diff.n} seed{'s' if gap.diff.n != 1 else ''} in both, so no interval"
    if gap.high_acc == gap.low_acc:
        return ("**Final accuracy**: every configuration run in several frameworks has the same mean final test "
                f"accuracy in each (for example {gap.config}: {fmt(gap.high_acc)} in {gap.high} and {gap.low}).")
    return (f"**Largest final-accuracy difference between frameworks**: {gap.config}, {gap.high} "
            f"{fmt(gap.high_acc)} vs {gap.low} {fmt(gap.low_acc)} (mean test accuracy over seeds; {gap.high} − "
            f"{gap.low}: {paired}).")


# ------------------------------------------------------------------ claims
def claim_counts(verdicts: pd.DataFrame) -> dict[str, int]:
    """How many verdicts (a claim judged for one framework) are supported, not supported, inconclusive."""
    if verdicts is None or verdicts.empty:
        return {v: 0 for v in VERDICTS}
    return {v: int((verdicts["verdict"] == v).sum()) for v in VERDICTS}


def claims_sentence(verdicts: pd.DataFrame | None) -> str:
    if verdicts is None or verdicts.empty:
        return "**The tutorial's claims**: none judged here."
    counts = claim_counts(verdicts)
    claims = len(verdicts[["method", "claim"]].drop_duplicates())
    judged = framework_order({str(f) for f in verdicts["framework"]} - {"—"})
    unjudged = int((verdicts["framework"] == "—").sum())
    return (f"**The tutorial's claims**: {counts['supported']} supported, {counts['not supported']} not "
            f"supported, {counts['inconclusive']} inconclusive: {len(verdicts)} verdicts on {claims} claims, each "
            f"judged per framework ({', '.join(judged) or 'none'})"
            + (f"; {unjudged} claim{'s' if unjudged != 1 else ''} no framework's runs could test, counted once "
               "each as inconclusive." if unjudged else "."))


# ------------------------------------------------------------------ one group
@dataclass
class GroupGlance:
    """One model's method group at a glance: a title, the speed line, one row per framework, then the
    lines on accuracy and claims."""

    title: str
    before: list[str]  # the lines above the table
    table: pd.DataFrame
    after: list[str]  # the lines below it


def _spread_text(spread: tuple[tuple[float, str], tuple[float, str]] | None) -> str:
    """``0.9 (sgd) to 3.1 (bgd)``: a framework's lowest and highest ratio over the fastest; — for the fastest."""
    if spread is None:
        return "—"
    (lo, lo_name), (hi, hi_name) = spread
    return f"{fmt(lo)} ({lo_name}) to {fmt(hi)} ({hi_name})"


def group_table(speed: Speed, figures: pd.DataFrame) -> pd.DataFrame:
    """One row per framework: time per step over the fastest's, memory, time to the first step.

    A column no run recorded (memory of runs older than the figures, a GPU peak on the CPU) is left out.
    """
    out = pd.DataFrame({"framework": figures["framework"]})
    if speed.fastest is not None:
        col = f"time per step ÷ {speed.fastest}'s"
        out[col] = ["1 (fastest)" if fw == speed.fastest else
                    interval_text(speed.ratios[fw]) if fw in speed.ratios else "not timed"
                    for fw in figures["framework"]]
        if speed.configs > 1:
            out["per configuration"] = [_spread_text(speed.spread.get(fw)) for fw in figures["framework"]]
    for col, header in (*MEMORY, FIRST_STEP):
        values = figures[col].to_numpy(float)
        if not np.isfinite(values).any():
            continue
        out[header] = (figures.apply(_first_step_text, axis=1) if col == FIRST_STEP[0]
                       else [fmt(v) for v in values])
    out["runs"] = figures["runs"].astype(int).astype(str)
    return out


def group_glance(title: str, summary: pd.DataFrame, stats: pd.DataFrame, rounds: Mapping[tuple, pd.Series],
                 verdicts: pd.DataFrame | None, timing_pass: bool, baseline: str = BASELINE,
                 claims: bool = True, scaling: Sequence[str] = ()) -> GroupGlance:
    """Everything "At a glance" says about one group of one model: ``summary`` and ``stats`` hold that
    group's configurations and runs only, ``verdicts`` its claims (``claims=False``: a group the tutorial
    makes no claims about), ``scaling`` the batch-size scaling pass's sentences on this model."""
    speed = fastest_framework(summary, rounds, timing_pass, baseline)
    figures = run_figures(stats, baseline)
    frameworks = list(figures["framework"]) if len(figures) else framework_order(units(summary), baseline)
    # Speed at the methods' own batch sizes, then how it changes with the batch (the scaling pass).
    before = [speed_sentence(speed)] + ([scaling_sentence(scaling)] if scaling else [])
    after = [accuracy_sentence(largest_accuracy_gap(summary, stats, baseline), frameworks),
             claims_sentence(verdicts) if claims else
             "**The tutorial's claims**: none; the tutorial makes no claims about these methods."]
    missing = [header for col, header in (*MEMORY[:3], FIRST_STEP)
               if col not in stats.columns or not np.isfinite(pd.to_numeric(stats[col], errors="coerce")).any()]
    if missing and len(stats):
        after.append(f"Not recorded by these runs (older than the figures): {', '.join(missing)}.")
    return GroupGlance(title, before, group_table(speed, figures), after)


def scaling_sentence(sentences: Sequence[str]) -> str:
    """The scaling pass's verdicts on one model, after the speed line."""
    return "**Over batch sizes** (the batch-size scaling pass, section below): " + " ".join(
        s.split(": ", 1)[-1][0].upper() + s.split(": ", 1)[-1][1:] for s in sentences)


def group_title(methods: Sequence[str], tutorial: bool, where: str = "") -> str:
    """``**Model lenet5 — the tutorial's methods** (sgd, adam)``: the bold lead of a group."""
    name = "the tutorial's methods" if tutorial else "beyond the tutorial"
    head = f"{where} — {name}" if where else name[0].upper() + name[1:]
    return f"**{head}** ({', '.join(method_order(methods))})"

"""The comparison report: ``python -m bench.report [results_dir]`` → ``results_dir/report/``.

Three layers, so that every number can be tested without drawing anything:

* **load** — ``runs/<run_id>/{run.json,metrics.csv,steps.csv}`` into tidy DataFrames; a
  malformed, partial or foreign file is skipped with a warning that names it;
* **aggregate** — pure functions: per-run figures (time to target, stability, ...), seeds
  folded into mean/std/min/max, the comparison table, the seed's claims checked;
* **render** — PNG and SVG figures, ``index.html`` (self-contained: figures embedded,
  every string escaped), ``report.md`` and ``summary.csv``.

Sections contributed by ``bench.parity``, ``bench.perf`` and ``bench.tuning`` are collected
in child processes: those modules may import a framework, and torch plus TensorFlow in
one process crashes. This module imports neither framework.
"""
from __future__ import annotations

import argparse
import base64
import html
import io
import json
import math
import re
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, Iterable, Sequence

import matplotlib
import numpy as np
import pandas as pd
from matplotlib.figure import Figure
from matplotlib.lines import Line2D

from bench.exits import EXIT_BAD_INPUT
from bench.machine import PROJECT_ROOT
from bench.optimizers import METHODS
from bench.results import STATUSES, ReportSection, atomic_write_text, read_json

# Target test accuracy per dataset: the usual "solved" bar on MNIST, a reachable one on
# Fashion-MNIST, and on the 4,000-image embedded subset what the good methods reach in a
# quick run (it has no full-MNIST meaning).
TARGET_ACC = {"mnist": 0.97, "fashion_mnist": 0.85, "mnist_embedded": 0.90}
DEFAULT_TARGET = 0.90
LAST_PART = 0.25  # stability: spread of the step loss over this last share of the logged steps
COLOURS = {"torch": "#e8590c", "tensorflow": "#1c7ed6"}  # fixed, so figures compare at a glance
OTHER_COLOUR = "#555555"
LINESTYLES = ("-", "--", ":", "-.")
REQUIRED_METRICS = (
    "run_id", "framework", "optimizer", "impl", "lr", "batch_size", "seed", "dataset", "n_train",
    "n_test", "device", "epoch", "steps", "train_loss", "test_loss", "test_acc", "epoch_time_s", "status",
)
NUMERIC_METRICS = ("lr", "batch_size", "seed", "n_train", "n_test", "epoch", "steps", "train_loss",
                   "test_loss", "test_acc", "epoch_time_s", "wall_time_s", "samples_per_s")
REQUIRED_STEPS = ("run_id", "epoch", "step", "loss")
# A group is one configuration; its runs differ only by seed.
GROUP_KEYS = ("dataset", "device", "framework", "optimizer", "batch_size", "impl", "mode", "lr", "n_train")
SHOWN_ALWAYS = ("framework", "optimizer", "batch_size")
EXTRA_MODULES = ("bench.parity.core", "bench.perf.core", "bench.tuning")

matplotlib.rcParams.update({"svg.hashsalt": "optbench", "font.size": 9})  # reproducible SVG ids


# ====================================================================== load
@dataclass
class Runs:
    """Everything usable under ``results_dir/runs``, plus what was not."""

    metrics: pd.DataFrame  # one row per run and epoch, runs that completed or diverged
    steps: pd.DataFrame  # sampled step losses of those runs
    info: dict[str, dict[str, Any]]  # run_id -> run.json
    problems: list[dict[str, str]] = field(default_factory=list)  # failed / unfinished runs
    warnings: list[str] = field(default_factory=list)


def _read_table(path: Path, required: Sequence[str]) -> tuple[pd.DataFrame | None, str]:
    try:
        df = pd.read_csv(path)
    except (OSError, UnicodeDecodeError, pd.errors.ParserError, pd.errors.EmptyDataError) as exc:
        return None, f"unreadable ({type(exc).__name__}: {str(exc).strip().splitlines()[0] if str(exc).strip() else ''})"
    missing = [c for c in required if c not in df.columns]
    if missing:
        return None, f"not an optbench file (missing columns {', '.join(missing)})"
    if df.empty:
        return None, "no rows"
    return df, ""


def read_metrics(path: Path) -> tuple[pd.DataFrame | None, str]:
    """``metrics.csv`` as a typed DataFrame, or (None, why it cannot be used)."""
    df, why = _read_table(path, REQUIRED_METRICS)
    if df is None:
        return None, why
    for col in NUMERIC_METRICS:
        if col in df.columns:
            df[col] = pd.to_numeric(df[col], errors="coerce")
    for col in ("framework", "optimizer", "status", "run_id", "dataset"):
        if df[col].isna().any():
            return None, f"partial (empty {col!r} cells)"
        df[col] = df[col].astype(str)
    if df["epoch"].isna().any() or (df["epoch"] % 1 != 0).any():
        return None, "partial (bad epoch numbers)"
    if df["run_id"].nunique() != 1:
        return None, "holds several run_ids"
    bad = sorted(set(df["status"]) - set(STATUSES))
    if bad:
        return None, f"unknown status {bad[0]!r}"
    df = df.sort_values("epoch").reset_index(drop=True)
    diverged = df["status"].iloc[-1] == "diverged"
    must_be_finite = df.iloc[:-1] if diverged else df  # the diverged epoch's row holds NaNs by design
    if not np.isfinite(must_be_finite[["test_acc", "train_loss"]].to_numpy(float)).all():
        return None, "partial (missing loss or accuracy values)"
    # Older or foreign writers may lack the derived columns; they follow from the required ones.
    if "mode" not in df.columns:
        df["mode"] = "eager"
    df["mode"] = df["mode"].fillna("eager").astype(str)
    df["impl"] = df["impl"].fillna("native").astype(str)
    df["device"] = df["device"].fillna("cpu").astype(str)
    if "wall_time_s" not in df.columns or df["wall_time_s"].isna().all():
        df["wall_time_s"] = df["epoch_time_s"].fillna(0).cumsum()
    if "samples_per_s" not in df.columns:
        df["samples_per_s"] = df["n_train"] / df["epoch_time_s"].where(df["epoch_time_s"] > 0)
    return df, ""


def load_runs(results_dir: Path) -> Runs:
    """Read every run folder; never raises on a bad file, records a warning instead."""
    root = Path(results_dir) / "runs"
    metrics, steps, info = [], [], {}
    problems: list[dict[str, str]] = []
    warnings: list[str] = []
    for path in sorted(root.rglob("*.csv")):
        rel = path.relative_to(root)
        if len(rel.parts) != 2 or rel.name not in ("metrics.csv", "steps.csv"):
            warnings.append(f"skipped {path}: not a run's metrics.csv or steps.csv")
    for folder in sorted(p for p in root.iterdir() if p.is_dir() and not p.name.startswith(".")):
        run_info = read_json(folder / "run.json")
        if run_info is None and (folder / "run.json").exists():
            warnings.append(f"skipped {folder / 'run.json'}: unreadable JSON")
        run_info = run_info or {}
        status = run_info.get("status")
        if status in ("failed", "interrupted", "running"):
            reason = run_info.get("error") or run_info.get("exit_reason") or ""
            if status == "running":
                reason = reason or "no end recorded: still running, or its process died"
            problems.append({"run_id": folder.name, "status": status, "reason": str(reason)})
            continue
        mfile = folder / "metrics.csv"
        if not mfile.exists():
            warnings.append(f"skipped {folder}: no metrics.csv")
            continue
        df, why = read_metrics(mfile)
        if df is None:
            warnings.append(f"skipped {mfile}: {why}")
            continue
        run_id = df["run_id"].iloc[0]
        if run_id in info:
            warnings.append(f"skipped {mfile}: run_id {run_id} already read from another folder")
            continue
        if status in ("completed", "diverged"):
            df["status"] = status  # run.json is written last, so it is the authority
        elif df["status"].iloc[-1] not in ("completed", "diverged"):
            problems.append({"run_id": run_id, "status": str(df["status"].iloc[-1]),
                             "reason": "metrics.csv ends before the run did"})
            continue
        info[run_id] = run_info
        metrics.append(df)
        sfile = folder / "steps.csv"
        if sfile.exists():
            sdf, why = _read_table(sfile, REQUIRED_STEPS)
            if sdf is not None:
                for col in ("epoch", "step", "loss"):
                    sdf[col] = pd.to_numeric(sdf[col], errors="coerce")
                if sdf[["epoch", "step"]].isna().any().any():
                    sdf, why = None, "partial (bad step numbers)"
            if sdf is None:
                warnings.append(f"skipped {sfile}: {why}")
            else:
                sdf["run_id"] = run_id
                steps.append(sdf[list(REQUIRED_STEPS)])
    metrics_df = pd.concat(metrics, ignore_index=True) if metrics else pd.DataFrame(columns=REQUIRED_METRICS)
    steps_df = pd.concat(steps, ignore_index=True) if steps else pd.DataFrame(columns=REQUIRED_STEPS)
    return Runs(metrics_df, steps_df, info, problems, warnings)


# ====================================================================== aggregate
def target_for(dataset: str, override: float | None = None) -> float:
    return override if override is not None else TARGET_ACC.get(dataset, DEFAULT_TARGET)


def time_to_target(run: pd.DataFrame, target: float) -> tuple[float, float]:
    """(epochs, training seconds) until test accuracy first reaches ``target``; NaN if never."""
    hit = run[run["test_acc"] >= target]
    if hit.empty:
        return math.nan, math.nan
    first = hit.sort_values("epoch").iloc[0]
    return float(first["epoch"]), float(first["wall_time_s"])


def step_stability(losses: Sequence[float], last_part: float = LAST_PART) -> dict[str, float]:
    """Spread of the logged step losses over the last part of training, and how often they rose.

    ``step_loss_std`` is the jitter the seed talks about: per-step noise plus what is left of
    the trend; ``loss_up_share`` is the share of logged steps where the loss went up.
    """
    arr = np.asarray([v for v in losses if np.isfinite(v)], dtype=float)
    if arr.size < 2:
        return {"step_loss_std": math.nan, "step_loss_last": math.nan, "loss_up_share": math.nan}
    tail = arr[-max(2, math.ceil(arr.size * last_part)):]
    return {"step_loss_std": float(np.std(tail, ddof=1)), "step_loss_last": float(np.mean(tail)),
            "loss_up_share": float(np.mean(np.diff(arr) > 0))}


def run_stats(metrics: pd.DataFrame, steps: pd.DataFrame, target: float | None = None) -> pd.DataFrame:
    """One row per run: the figures the comparison table is built from."""
    rows = []
    step_groups = dict(tuple(steps.groupby("run_id"))) if not steps.empty else {}
    for run_id, run in metrics.groupby("run_id", sort=True):
        run = run.sort_values("epoch")
        first = run.iloc[0]
        goal = target_for(first["dataset"], target)
        trained = run[run["epoch"] >= 1]
        diverged = run["status"].iloc[-1] == "diverged"
        finite = trained[np.isfinite(trained["test_acc"])]
        epochs_hit, seconds_hit = time_to_target(run, goal)
        epoch_time = trained["epoch_time_s"].where(np.isfinite(trained["test_acc"])).median()
        steps_per_epoch = math.ceil(first["n_train"] / first["batch_size"])
        losses = step_groups.get(run_id, pd.DataFrame(columns=REQUIRED_STEPS)).sort_values("step")["loss"]
        row = {k: first[k] for k in GROUP_KEYS}
        row.update({
            "run_id": run_id, "seed": int(first["seed"]), "status": run["status"].iloc[-1],
            "target_acc": goal, "epochs": int(trained["epoch"].max()) if len(trained) else 0,
            "final_acc": math.nan if diverged or finite.empty else float(finite["test_acc"].iloc[-1]),
            "best_acc": math.nan if diverged or finite.empty else float(finite["test_acc"].max()),
            "acc_epoch1": float(finite["test_acc"].iloc[0]) if len(finite) else math.nan,
            "final_train_loss": math.nan if diverged or finite.empty else float(finite["train_loss"].iloc[-1]),
            "epochs_to_target": epochs_hit, "seconds_to_target": seconds_hit,
            "epoch_time_s": float(epoch_time) if pd.notna(epoch_time) else math.nan,
            "samples_per_s": float(finite["samples_per_s"].median()) if len(finite) else math.nan,
            "time_per_step_s": float(epoch_time) / steps_per_epoch if pd.notna(epoch_time) else math.nan,
            **step_stability(losses.to_numpy(float)),
        })
        rows.append(row)
    return pd.DataFrame(rows)


def _mean(values: pd.Series) -> float:
    v = values.dropna()
    return float(v.mean()) if len(v) else math.nan


def _std(values: pd.Series) -> float:
    v = values.dropna()
    return float(v.std(ddof=1)) if len(v) > 1 else math.nan


def summarize(stats: pd.DataFrame) -> pd.DataFrame:
    """Fold seeds: one row per configuration, with mean and std over seeds.

    Diverged runs are counted, not averaged in as zeros; time to target is averaged over the
    seeds that reached it (``reached`` says how many).
    """
    rows = []
    for key, grp in stats.groupby(list(GROUP_KEYS), sort=False, dropna=False):
        row = dict(zip(GROUP_KEYS, key))
        row.update({
            "runs": len(grp), "seeds": ",".join(str(s) for s in sorted(grp["seed"])),
            "diverged": int((grp["status"] == "diverged").sum()), "epochs": int(grp["epochs"].max()),
            "target_acc": float(grp["target_acc"].iloc[0]),
            "reached": int(grp["epochs_to_target"].notna().sum()),
        })
        for col in ("final_acc", "best_acc", "acc_epoch1", "final_train_loss", "epochs_to_target",
                    "seconds_to_target", "epoch_time_s", "samples_per_s", "time_per_step_s",
                    "step_loss_std", "step_loss_last", "loss_up_share"):
            row[f"{col}_mean"] = _mean(grp[col])
            row[f"{col}_std"] = _std(grp[col])
        rows.append(row)
    out = pd.DataFrame(rows)
    if out.empty:
        return out
    out["tf_over_torch_time"] = tf_torch_ratio(out)
    order = {name: i for i, name in enumerate(METHODS)}
    out["_m"] = out["optimizer"].map(order).fillna(len(order))
    out["_f"] = out["framework"].map({"torch": 0, "tensorflow": 1}).fillna(2)
    return out.sort_values(["dataset", "_m", "batch_size", "impl", "mode", "lr", "_f"]).drop(
        columns=["_m", "_f"]).reset_index(drop=True)


def tf_torch_ratio(summary: pd.DataFrame) -> pd.Series:
    """TensorFlow's time per epoch over PyTorch's for the same configuration (on both rows)."""
    others = [k for k in GROUP_KEYS if k != "framework"]
    times = {}
    for _, row in summary.iterrows():
        times[(row["framework"],) + tuple(row[k] for k in others)] = row["epoch_time_s_mean"]
    ratio = []
    for _, row in summary.iterrows():
        rest = tuple(row[k] for k in others)
        tf_t, torch_t = times.get(("tensorflow",) + rest), times.get(("torch",) + rest)
        ok = tf_t is not None and torch_t is not None and torch_t > 0
        ratio.append(tf_t / torch_t if ok else math.nan)
    return pd.Series(ratio, index=summary.index, dtype=float)


def aggregate_curves(metrics: pd.DataFrame, columns: Sequence[str] = ("train_loss", "test_acc", "wall_time_s"),
                     ) -> pd.DataFrame:
    """Per configuration and epoch: mean, std, min and max over seeds (DeepOBS' aggregate_runs).

    Diverged epochs hold NaN and drop out; ``n`` says how many seeds each point stands on.
    """
    grouped = metrics.groupby(list(GROUP_KEYS) + ["epoch"], sort=True, dropna=False)
    parts = {"n": grouped["test_acc"].count()}
    for col in columns:
        g = grouped[col]
        parts.update({f"{col}_mean": g.mean(), f"{col}_std": g.std(ddof=1),
                      f"{col}_min": g.min(), f"{col}_max": g.max()})
    return pd.DataFrame(parts).reset_index()


def varying_keys(summary: pd.DataFrame) -> list[str]:
    """Configuration keys worth a column: the always-shown ones plus any that vary."""
    extra = [k for k in GROUP_KEYS if k not in SHOWN_ALWAYS and summary[k].nunique(dropna=False) > 1]
    return [k for k in GROUP_KEYS if k in SHOWN_ALWAYS or k in extra]


def max_concurrent(info: Iterable[dict[str, Any]]) -> int:
    """The most runs that were training at the same moment, from run.json start/end times."""
    events = []
    for run in info:
        start, end = run.get("start_time"), run.get("end_time")
        if isinstance(start, (int, float)) and isinstance(end, (int, float)) and end >= start:
            events += [(start, 1), (end, -1)]
    best = cur = 0
    for _, delta in sorted(events, key=lambda e: (e[0], e[1])):  # an end before a start at a tie
        cur += delta
        best = max(best, cur)
    return best


# ---------------------------------------------------------------- the seed's claims
@dataclass
class Claim:
    method: str
    claim: str  # the seed's closing-table statement, paraphrased
    measure: str  # what we compare
    verdict: str  # supported | not supported | mixed | not measured (+ "(indirect)")
    evidence: str  # generated from the numbers


def _f(x: float, digits: int = 3) -> str:
    if x is None or not np.isfinite(x):
        return "n/a"
    if abs(x) >= 1000:
        return f"{x:,.0f}"
    return f"{x:.{digits}g}"


def _epochs(row: pd.Series) -> float:
    """Epochs to target, with 'never' as infinity so that comparisons still work."""
    v = row["epochs_to_target_mean"]
    return v if np.isfinite(v) else math.inf


def _reach(row: pd.Series) -> str:
    if not np.isfinite(row["epochs_to_target_mean"]):
        return f"not within {row['epochs']} epochs"
    return f"{_f(row['epochs_to_target_mean'])} epochs"


def _bgd_stable(r):
    b, m, s = r["bgd"], r["minibatch"], r["sgd"]
    ok = b["step_loss_std_mean"] < min(m["step_loss_std_mean"], s["step_loss_std_mean"])
    return ok, (f"step-loss spread bgd {_f(b['step_loss_std_mean'])} vs minibatch "
                f"{_f(m['step_loss_std_mean'])}, sgd {_f(s['step_loss_std_mean'])}; bgd loss rose on "
                f"{100 * b['loss_up_share_mean']:.0f}% of steps")


def _bgd_slow(r):
    b, m = r["bgd"], r["minibatch"]
    ok = b["time_per_step_s_mean"] > m["time_per_step_s_mean"] and b["final_acc_mean"] < m["final_acc_mean"]
    return ok, (f"one bgd step {_f(b['time_per_step_s_mean'] * 1e3)} ms vs {_f(m['time_per_step_s_mean'] * 1e3)} ms "
                f"for minibatch; after {b['epochs']} epochs test acc {_f(b['final_acc_mean'])} vs "
                f"{_f(m['final_acc_mean'])}")


def _sgd_fast_steps(r):
    s, m = r["sgd"], r["minibatch"]
    return s["time_per_step_s_mean"] < m["time_per_step_s_mean"], (
        f"one sgd step {_f(s['time_per_step_s_mean'] * 1e3)} ms vs {_f(m['time_per_step_s_mean'] * 1e3)} ms for minibatch")


def _sgd_efficient(r):
    s, m = r["sgd"], r["minibatch"]
    return s["samples_per_s_mean"] >= m["samples_per_s_mean"], (
        f"sgd {_f(s['samples_per_s_mean'])} samples/s vs minibatch {_f(m['samples_per_s_mean'])} "
        f"({_f(s['epoch_time_s_mean'])} s vs {_f(m['epoch_time_s_mean'])} s per epoch)")


def _sgd_jitter(r):
    s, m, b = r["sgd"], r["minibatch"], r["bgd"]
    ok = s["step_loss_std_mean"] > max(m["step_loss_std_mean"], b["step_loss_std_mean"])
    return ok, (f"step-loss spread sgd {_f(s['step_loss_std_mean'])} vs minibatch "
                f"{_f(m['step_loss_std_mean'])}, bgd {_f(b['step_loss_std_mean'])}; sgd loss rose on "
                f"{100 * s['loss_up_share_mean']:.0f}% of logged steps")


def _minibatch_balance(r):
    s, m, b = r["sgd"], r["minibatch"], r["bgd"]
    ok = (m["samples_per_s_mean"] > s["samples_per_s_mean"] and m["step_loss_std_mean"] < s["step_loss_std_mean"]
          and m["final_acc_mean"] > b["final_acc_mean"])
    return ok, (f"minibatch {_f(m['samples_per_s_mean'])} samples/s (sgd {_f(s['samples_per_s_mean'])}), "
                f"spread {_f(m['step_loss_std_mean'])} (sgd {_f(s['step_loss_std_mean'])}), "
                f"final acc {_f(m['final_acc_mean'])} (bgd {_f(b['final_acc_mean'])}, sgd {_f(s['final_acc_mean'])})")


def _momentum_faster(r):
    mo, m = r["momentum"], r["minibatch"]
    ok = (_epochs(mo), -mo["acc_epoch1_mean"]) < (_epochs(m), -m["acc_epoch1_mean"])
    text = (f"target {_f(mo['target_acc'])} reached in {_reach(mo)} vs {_reach(m)} for minibatch; "
            f"acc after epoch 1 {_f(mo['acc_epoch1_mean'])} vs {_f(m['acc_epoch1_mean'])}")
    if mo["lr"] == m["lr"]:
        return ok, text
    return ok, text, (f"η {_f(mo['lr'])} for momentum vs {_f(m['lr'])} for minibatch: the seed's EMA momentum settles at "
                f"a step of η·g, {_f(mo['lr'] / m['lr'])}× minibatch's, so the speed-up is not momentum's alone")


def _momentum_less_osc(r):
    mo, m = r["momentum"], r["minibatch"]
    return mo["step_loss_std_mean"] < m["step_loss_std_mean"], (
        f"step-loss spread momentum {_f(mo['step_loss_std_mean'])} vs minibatch {_f(m['step_loss_std_mean'])} "
        f"(mean step loss {_f(mo['step_loss_last_mean'])} vs {_f(m['step_loss_last_mean'])})")


def _rmsprop_adaptive(r):
    rp, m = r["rmsprop"], r["minibatch"]
    ok = rp["acc_epoch1_mean"] > m["acc_epoch1_mean"]
    return ok, (f"with a {_f(m['lr'] / rp['lr'])}× smaller η ({_f(rp['lr'])} vs {_f(m['lr'])}) rmsprop "
                f"reached acc {_f(rp['acc_epoch1_mean'])} after epoch 1 vs {_f(m['acc_epoch1_mean'])} for "
                f"minibatch SGD: its per-weight step scaling, not η, sets the step")


def _rank(rows: dict[str, pd.Series], method: str, col: str) -> int:
    """1 + how many methods did strictly better (ties share a rank; never reached = infinity)."""
    value = lambda name: rows[name][col] if np.isfinite(rows[name][col]) else math.inf  # noqa: E731
    return 1 + sum(value(name) < value(method) for name in rows)


def _adam_fast(r):
    a = r["adam"]
    by_epochs, by_time = _rank(r, "adam", "epochs_to_target_mean"), _rank(r, "adam", "seconds_to_target_mean")
    if not np.isfinite(a["epochs_to_target_mean"]):  # nobody's target: rank by final accuracy instead
        by_epochs = by_time = 1 + sum(r[m]["final_acc_mean"] > a["final_acc_mean"] for m in r)
        return by_epochs <= 2, (f"adam did not reach {_f(a['target_acc'])}; #{by_epochs} of {len(r)} by final "
                                f"accuracy ({_f(a['final_acc_mean'])})")
    fastest = min(r, key=lambda m: (_epochs(r[m]), -r[m]["acc_epoch1_mean"]))
    return max(by_epochs, by_time) <= 2, (
        f"adam reached {_f(a['target_acc'])} in {_reach(a)} and {_f(a['seconds_to_target_mean'])} s: "
        f"#{by_epochs} of {len(r)} by epochs, #{by_time} by seconds (ties share a rank; fewest epochs: "
        f"{fastest}, {_reach(r[fastest])})")


def _adam_costly(r):
    a, m = r["adam"], r["minibatch"]
    ratio = a["epoch_time_s_mean"] / m["epoch_time_s_mean"]
    return ratio > 1.10, (f"adam {_f(a['epoch_time_s_mean'])} s per epoch vs minibatch SGD "
                          f"{_f(m['epoch_time_s_mean'])} s ({100 * (ratio - 1):+.0f}%; threshold +10%)")


# (method, the seed's claim, what is compared, methods needed, evaluator, direct evidence?)
CLAIMS: tuple[tuple[str, str, str, tuple[str, ...], Callable, bool], ...] = (
    ("bgd", "converges stably", "step-loss spread, last quarter", ("bgd", "minibatch", "sgd"), _bgd_stable, True),
    ("bgd", "each iteration is expensive, so it is slow", "time per step; accuracy after equal epochs",
     ("bgd", "minibatch"), _bgd_slow, True),
    ("sgd", "fast iterations", "time per step", ("sgd", "minibatch"), _sgd_fast_steps, True),
    ("sgd", "computationally efficient", "samples per second", ("sgd", "minibatch"), _sgd_efficient, True),
    ("sgd", "unstable path, large fluctuations", "step-loss spread", ("sgd", "minibatch", "bgd"), _sgd_jitter, True),
    ("minibatch", "balances efficiency and stability", "samples/s, spread, accuracy vs sgd and bgd",
     ("minibatch", "sgd", "bgd"), _minibatch_balance, True),
    ("momentum", "accelerates convergence", "epochs to target vs minibatch", ("momentum", "minibatch"),
     _momentum_faster, True),
    ("momentum", "reduces oscillation", "step-loss spread vs minibatch", ("momentum", "minibatch"),
     _momentum_less_osc, True),
    ("rmsprop", "adapts the learning rate", "progress with a smaller η than minibatch SGD",
     ("rmsprop", "minibatch"), _rmsprop_adaptive, False),
    ("adam", "converges fast", "rank by epochs and seconds to target", tuple(METHODS), _adam_fast, True),
    ("adam", "computationally more complex", "time per epoch vs minibatch SGD", ("adam", "minibatch"),
     _adam_costly, True),
)


def reference_rows(summary: pd.DataFrame) -> dict[str, dict[str, pd.Series]]:
    """framework -> method -> the row that stands for the method as the seed describes it.

    Prefers the method's own batch size, the native optimizer, eager mode and most seeds.
    """
    out: dict[str, dict[str, pd.Series]] = {}
    for (fw, method), grp in summary.groupby(["framework", "optimizer"], sort=False):
        own = METHODS[method].batch_size if method in METHODS else None
        rank = pd.DataFrame({
            "bs": grp["batch_size"] != (grp["n_train"] if own is None else own),
            "impl": grp["impl"] != "native", "mode": grp["mode"] != "eager", "runs": -grp["runs"],
        }, index=grp.index).sort_values(["bs", "impl", "mode", "runs"])
        out.setdefault(fw, {})[method] = grp.loc[rank.index[0]]
    return out


def check_claims(summary: pd.DataFrame) -> list[Claim]:
    """The seed's closing table, claim by claim, judged per framework from one dataset's summary."""
    rows = reference_rows(summary)
    claims = []
    for method, claim, measure, needs, judge, direct in CLAIMS:
        results, evidence, notes = [], [], []
        for fw in sorted(rows, key=lambda f: (f != "torch", f)):
            have = {m: rows[fw][m] for m in needs if m in rows[fw]}
            if len(have) < len(needs):
                continue
            # A method whose every seed diverged has no final accuracy to compare with.
            if any(row["runs"] == row["diverged"] for row in have.values()):
                evidence.append(f"{fw}: {', '.join(m for m, r in have.items() if r['runs'] == r['diverged'])} diverged")
                results.append(False)
                continue
            ok, text, *note = judge(have)
            results.append(bool(ok))
            evidence.append(f"{fw}: {text}")
            notes.extend(note)
        if not results:
            verdict = "not measured"
            evidence = [f"needs runs of {', '.join(needs)}"]
        elif all(results):
            verdict = "supported"
        elif not any(results):
            verdict = "not supported"
        else:
            verdict = "mixed (" + ", ".join(
                f"{fw} {'yes' if ok else 'no'}" for fw, ok in zip(sorted(rows, key=lambda f: (f != "torch", f)), results)) + ")"
        if not direct and results:
            verdict += " (indirect)"
        claims.append(Claim(method, claim, measure, verdict, "; ".join(evidence + list(dict.fromkeys(notes)))))
    return claims


# ====================================================================== figures
def _methods_in(df: pd.DataFrame) -> list[str]:
    present = list(dict.fromkeys(df["optimizer"]))
    return [m for m in METHODS if m in present] + sorted(m for m in present if m not in METHODS)


def _variant_label(row: pd.Series, keys: Sequence[str]) -> str:
    parts = []
    for k in keys:
        if k == "batch_size":
            parts.append(f"batch {int(row[k])},")
        elif k == "lr":
            parts.append(f"lr {row[k]:g},")
        else:
            parts.append(f"{row[k]},")
    return " ".join(parts).rstrip(",")


def _save(fig: Figure, out_dir: Path, name: str) -> Path:
    png = out_dir / f"{name}.png"
    fig.savefig(png, dpi=110)
    fig.savefig(out_dir / f"{name}.svg", metadata={"Date": None})
    return png


def _grid(n: int, width: float = 11.0, height: float = 3.0) -> tuple[Figure, list]:
    cols = min(3, n)
    rows = math.ceil(n / cols)
    fig = Figure(figsize=(width, height * rows + 0.6), layout="constrained")
    axes = np.atleast_1d(fig.subplots(rows, cols, squeeze=False)).ravel()
    for ax in axes[n:]:
        ax.set_visible(False)
    return fig, list(axes[:n])


def plot_curves(curves: pd.DataFrame, summary: pd.DataFrame, metric: str, x: str, out_dir: Path,
                name: str) -> Path:
    """One panel per method; frameworks in fixed colours; seeds as mean line and min–max band.

    Keys that differ between a panel's configurations (batch size, lr, impl, mode) get line
    styles and a panel legend; keys shared by the panel go into its title.
    """
    labels = {"train_loss": "training loss", "test_acc": "test accuracy",
              "epoch": "epoch", "wall_time_s": "training wall time (s)"}
    methods = _methods_in(curves)
    fig, axes = _grid(len(methods))
    frameworks: dict[str, str] = {}
    for ax, method in zip(axes, methods):
        sub = curves[curves["optimizer"] == method]
        # TensorFlow first, wide and pale, PyTorch thin on top: identical curves stay both visible.
        configs = sub[list(GROUP_KEYS)].drop_duplicates().sort_values(
            "framework", key=lambda f: f.map({"tensorflow": 0, "torch": 1}).fillna(2))
        shown = ["batch_size", "lr", "impl", "mode"]
        vary = [k for k in shown if configs[k].nunique(dropna=False) > 1]
        same = [k for k in shown if k not in vary and not (k, configs[k].iloc[0]) in (("impl", "native"), ("mode", "eager"))]
        styles: dict[tuple, str] = {}
        for _, cfg in configs.iterrows():
            mask = np.all([(sub[k] == cfg[k]).to_numpy() for k in GROUP_KEYS], axis=0)
            line = sub[mask].sort_values("epoch")
            line = line[line["n"] > 0]
            if line.empty:
                continue
            style = styles.setdefault(tuple(cfg[k] for k in vary), LINESTYLES[len(styles) % len(LINESTYLES)])
            colour = COLOURS.get(cfg["framework"], OTHER_COLOUR)
            frameworks.setdefault(cfg["framework"], colour)
            xs = line["epoch"] if x == "epoch" else line["wall_time_s_mean"]
            label = f"{cfg['framework']} {_variant_label(cfg, vary)}" if vary else None
            wide = cfg["framework"] == "tensorflow"
            ax.plot(xs, line[f"{metric}_mean"], style, color=colour, lw=3.2 if wide else 1.4,
                    alpha=0.6 if wide else 1.0, marker="." if not wide else None, ms=4, label=label)
            if line["n"].max() > 1:
                ax.fill_between(xs, line[f"{metric}_min"], line[f"{metric}_max"], color=colour, alpha=0.18, lw=0)
        if vary:
            ax.legend(fontsize=7, frameon=False)
        diverged = summary[(summary["optimizer"] == method) & (summary["diverged"] > 0)]
        if len(diverged):
            note = ", ".join(f"{r['framework']} ×{r['diverged']}" for _, r in diverged.iterrows())
            ax.text(0.98, 0.95, f"diverged: {note}", transform=ax.transAxes, ha="right", va="top",
                    color="#c00", fontsize=8)
        title = f"{method} ({_variant_label(configs.iloc[0], same)})" if same else method
        ax.set_title(title)
        ax.set_xlabel(labels[x])
        ax.set_ylabel(labels[metric])
        ax.grid(alpha=0.3)
    seeds = int(summary["runs"].max()) if len(summary) else 1
    band = f"; line = mean of up to {seeds} seeds, band = min–max" if seeds > 1 else ""
    fig.suptitle(f"{labels[metric]} vs {labels[x]}{band}", fontsize=10)
    names = sorted(frameworks, key=lambda f: (f != "torch", f))
    handles = [Line2D([], [], color=frameworks[f], lw=3.2 if f == "tensorflow" else 1.4,
                      alpha=0.6 if f == "tensorflow" else 1.0) for f in names]
    fig.legend(handles, names, loc="outside lower center", ncol=len(handles), frameon=False)
    return _save(fig, out_dir, name)


def plot_steps(metrics: pd.DataFrame, steps: pd.DataFrame, out_dir: Path, name: str) -> Path | None:
    """Per-step training loss of sgd, minibatch and bgd (first seed): the seed's jitter claim."""
    methods = [m for m in ("sgd", "minibatch", "bgd") if m in set(metrics["optimizer"])]
    if not methods or steps.empty:
        return None
    runs = metrics[metrics["epoch"] == 0].copy()
    runs = runs[runs["optimizer"].isin(methods) & runs["run_id"].isin(set(steps["run_id"]))]
    if runs.empty:
        return None
    # The method's own batch size, native, eager, lowest seed: one clean line per method.
    runs["_own"] = [METHODS[m].batch_size or n for m, n in zip(runs["optimizer"], runs["n_train"])]
    runs = runs.sort_values(["seed"]).assign(
        _rank=lambda d: (d["batch_size"] != d["_own"]).astype(int) * 4 + (d["impl"] != "native") * 2
        + (d["mode"] != "eager")).sort_values(["_rank", "seed"])
    frameworks = [f for f in ("torch", "tensorflow") if f in set(runs["framework"])] + sorted(
        set(runs["framework"]) - {"torch", "tensorflow"})
    fig, axes = _grid(len(frameworks), width=11, height=3.6)
    colours = {"sgd": "#9c36b5", "minibatch": "#2f9e44", "bgd": "#000000"}
    for ax, fw in zip(axes, frameworks):
        for method in methods:
            pick = runs[(runs["framework"] == fw) & (runs["optimizer"] == method)]
            if pick.empty:
                continue
            run = pick.iloc[0]
            s = steps[steps["run_id"] == run["run_id"]].sort_values("step")
            per_epoch = math.ceil(run["n_train"] / run["batch_size"])
            ax.plot(s["step"] / per_epoch, s["loss"], color=colours.get(method, OTHER_COLOUR),
                    lw=0.8 if method == "sgd" else 1.4, alpha=0.75 if method == "sgd" else 1.0,
                    marker="o" if method == "bgd" else None, ms=4,
                    label=f"{method} (bs {int(run['batch_size'])}, seed {int(run['seed'])})")
        ax.set_yscale("log")
        ax.set_title(fw)
        ax.set_xlabel("epoch (step / steps per epoch)")
        ax.set_ylabel("step training loss (log)")
        ax.grid(alpha=0.3, which="both")
        ax.legend(fontsize=8, loc="lower left")
    fig.suptitle("Training loss of each logged step: one sample (sgd), 32 (minibatch), all (bgd)", fontsize=10)
    return _save(fig, out_dir, name)


def plot_speed(summary: pd.DataFrame, out_dir: Path, name: str) -> Path | None:
    """Time per epoch per method, frameworks side by side (log scale: sgd is ~100× bgd)."""
    rows = reference_rows(summary)
    methods = [m for m in METHODS if any(m in rows[f] for f in rows)]
    if not methods:
        return None
    fig = Figure(figsize=(8, 3.4), layout="constrained")
    ax = fig.subplots()
    frameworks = sorted(rows, key=lambda f: (f != "torch", f))
    width = 0.8 / len(frameworks)
    for i, fw in enumerate(frameworks):
        xs = [j + (i - (len(frameworks) - 1) / 2) * width for j in range(len(methods))]
        vals = [rows[fw][m]["epoch_time_s_mean"] if m in rows[fw] else np.nan for m in methods]
        bars = ax.bar(xs, vals, width, color=COLOURS.get(fw, OTHER_COLOUR), label=fw)
        ax.bar_label(bars, labels=[_f(v, 2) for v in vals], fontsize=7, padding=1)
    ax.set_xticks(range(len(methods)), methods)
    ax.set_yscale("log")
    ax.set_ylabel("seconds per epoch (median, log)")
    ax.set_title("Training time per epoch", fontsize=10)
    ax.margins(y=0.15)
    ax.legend(frameon=False)
    ax.grid(alpha=0.3, axis="y", which="both")
    return _save(fig, out_dir, name)


# ====================================================================== tables
def _pm(mean: float, std: float, digits: int = 3) -> str:
    if not np.isfinite(mean):
        return "n/a"
    return _f(mean, digits) + (f" ± {_f(std, 2)}" if np.isfinite(std) else "")


def comparison_table(summary: pd.DataFrame) -> pd.DataFrame:
    """The comparison table for people: strings, diverged shown as such, mean ± std over seeds."""
    keys = [k for k in varying_keys(summary) if k != "dataset"]
    out = []
    for _, r in summary.iterrows():
        row = {k: (int(r[k]) if k in ("batch_size", "n_train") else (f"{r[k]:g}" if k == "lr" else r[k])) for k in keys}
        all_diverged = r["diverged"] == r["runs"]
        row["seeds"] = str(r["runs"])
        row["final acc"] = "diverged" if all_diverged else _pm(r["final_acc_mean"], r["final_acc_std"])
        row["best acc"] = "diverged" if all_diverged else _pm(r["best_acc_mean"], r["best_acc_std"])
        reach = f" ({r['reached']}/{r['runs']})" if 0 < r["reached"] < r["runs"] else ""
        never = "—" if all_diverged else f"not in {r['epochs']}"
        row[f"epochs to {r['target_acc']:g}"] = (_pm(r["epochs_to_target_mean"], r["epochs_to_target_std"], 2) + reach
                                                  if r["reached"] else never)
        row["seconds to target"] = (_pm(r["seconds_to_target_mean"], r["seconds_to_target_std"]) + reach
                                    if r["reached"] else "—")
        row["s/epoch"] = _pm(r["epoch_time_s_mean"], r["epoch_time_s_std"])
        row["samples/s"] = _f(r["samples_per_s_mean"])
        row["step-loss spread"] = _f(r["step_loss_std_mean"])
        row["diverged"] = str(r["diverged"])
        row["TF/torch time"] = _f(r["tf_over_torch_time"], 3)
        out.append(row)
    return pd.DataFrame(out)


def _cell_text(v: Any) -> str:
    """Floats from other modules' tables get 3 significant digits; NaN stays empty."""
    if v is None:
        return ""
    if isinstance(v, (float, np.floating)):
        if math.isnan(v):
            return ""
        return str(int(v)) if float(v).is_integer() and abs(v) < 1e6 else f"{v:.3g}"
    return str(v)


def html_table(df: pd.DataFrame) -> str:
    head = "".join(f"<th>{html.escape(str(c))}</th>" for c in df.columns)
    body = []
    for _, row in df.iterrows():
        cells = []
        for v in row:
            text = _cell_text(v)
            cls = ' class="bad"' if text == "diverged" or text.startswith("not supported") else (
                ' class="good"' if text.startswith("supported") else "")
            cells.append(f"<td{cls}>{html.escape(text)}</td>")
        body.append("<tr>" + "".join(cells) + "</tr>")
    return f'<table><thead><tr>{head}</tr></thead><tbody>{"".join(body)}</tbody></table>'


def _md_cell(v: Any) -> str:
    text = _cell_text(v)
    return text.replace("\\", "\\\\").replace("|", "\\|").replace("\n", " ")


def md_table(df: pd.DataFrame) -> str:
    lines = ["| " + " | ".join(_md_cell(c) for c in df.columns) + " |",
             "|" + "---|" * len(df.columns)]
    lines += ["| " + " | ".join(_md_cell(v) for v in row) + " |" for _, row in df.iterrows()]
    return "\n".join(lines)


def environment(runs: Runs) -> tuple[pd.DataFrame, list[str]]:
    """What the numbers were measured on, and loud notes about the data actually used."""
    rows: list[dict[str, str]] = []

    def values(fw: str | None, key: str) -> str:
        got = {str(i.get(key)) for i in runs.info.values()
               if i.get(key) not in (None, "") and (fw is None or (i.get("config") or {}).get("framework", {}).get("name") == fw)}
        return ", ".join(sorted(got))

    frameworks = sorted({str(f) for f in runs.metrics["framework"]}, key=lambda f: (f != "torch", f))
    for fw in frameworks:
        for key, label in (("framework_version", "version"), ("keras_version", "keras"), ("cuda_version", "CUDA build"),
                           ("device_name", "device"), ("threads", "threads"), ("mode_detail", "mode")):
            v = values(fw, key)
            if v:
                rows.append({"what": f"{fw} {label}", "value": v})
    for key, label in (("python", "python"), ("numpy", "numpy"), ("host", "host"), ("cpu", "cpu"),
                       ("cpu_count", "cpu cores"), ("platform", "platform"), ("git_commit", "git commit")):
        v = values(None, key)
        if v:
            rows.append({"what": label, "value": v})
    rows.append({"what": "parallel lanes (most runs training at once)", "value": str(max_concurrent(runs.info.values()))})
    notes: list[str] = []
    for name, grp in runs.metrics[runs.metrics["epoch"] == 0].groupby("dataset"):
        ids = set(grp["run_id"])
        sources = {str(runs.info.get(i, {}).get("data_source")) for i in ids if runs.info.get(i, {}).get("data_source")}
        rows.append({"what": f"dataset {name}", "value": f"{int(grp['n_train'].iloc[0]):,} train / "
                     f"{int(grp['n_test'].iloc[0]):,} test images, {len(ids)} runs"
                     + (f"; from {', '.join(sorted(sources))}" if sources else "")})
        requested = {str((runs.info.get(i, {}).get("config") or {}).get("data", {}).get("name", name)) for i in ids}
        for run_id in sorted(ids):
            for note in runs.info.get(run_id, {}).get("data_notes") or []:
                if str(note) not in notes:
                    notes.append(str(note))
        if name == "mnist_embedded":
            asked = "MNIST was requested, but " if "mnist" in requested else ""
            notes.append(f"{asked}the embedded 5,000-digit MNIST subset stood in for MNIST in {len(ids)} runs "
                         f"({int(grp['n_train'].iloc[0]):,} train / {int(grp['n_test'].iloc[0]):,} test images): "
                         "accuracies and times are NOT full-MNIST (60k/10k) numbers.")
    return pd.DataFrame(rows), notes


# ====================================================================== extra sections
def collect_section(module: str, results_dir: Path, timeout: float = 600) -> tuple[ReportSection | None, str]:
    """``<module>.report_section(results_dir)`` run in a child process: (section, warning).

    A missing module, a missing function or a None result give (None, ""): nothing to show.
    """
    with tempfile.TemporaryDirectory() as tmp:
        out = Path(tmp) / "section.json"
        code = ("import sys; from bench.report.build import _section_child; "
                "_section_child(sys.argv[1], sys.argv[2], sys.argv[3])")
        try:
            proc = subprocess.run([sys.executable, "-c", code, module, str(results_dir), str(out)],
                                  capture_output=True, text=True, timeout=timeout, cwd=PROJECT_ROOT)
        except subprocess.TimeoutExpired:
            return None, f"{module}.report_section took over {timeout:.0f} s; section skipped"
        if not out.exists():
            last = (proc.stderr.strip().splitlines() or [f"exit code {proc.returncode}"])[-1]
            return None, f"{module}.report_section crashed ({last}); section skipped"
        kind, payload = json.loads(out.read_text(encoding="utf-8"))
    if kind == "ok":
        return _section_from_json(payload), ""
    if kind == "error":
        return None, f"{module}.report_section failed ({payload}); section skipped"
    return None, ""  # module absent, no report_section, or nothing to show


def _section_child(module: str, results_dir: str, out: str) -> None:
    import importlib

    try:
        mod = importlib.import_module(module)
    except ModuleNotFoundError as exc:
        result: tuple[str, Any] = ("missing", None) if exc.name == module else (
            "error", f"import: {exc}")
    except Exception as exc:  # a broken module must not take the report down
        result = ("error", f"import: {type(exc).__name__}: {exc}")
    else:
        fn = getattr(mod, "report_section", None)
        if fn is None:
            result = ("missing", None)
        else:
            try:
                section = fn(Path(results_dir))
                result = ("ok", _section_to_json(section)) if isinstance(section, ReportSection) else (
                    "missing", None)
            except Exception as exc:
                result = ("error", f"{type(exc).__name__}: {exc}")
    Path(out).write_text(json.dumps(result), encoding="utf-8")


# The section crosses a process boundary as JSON: no pickle anywhere in the project.
def _section_to_json(section: ReportSection) -> dict[str, Any]:
    table = section.table
    return {"title": section.title, "text": section.text,
            "table": None if table is None else table.to_json(orient="split", double_precision=15),
            "figures": [str(p) for p in section.figures]}


def _section_from_json(obj: dict[str, Any]) -> ReportSection:
    table = obj.get("table")
    return ReportSection(
        title=str(obj["title"]), text=str(obj["text"]),
        table=None if table is None else pd.read_json(io.StringIO(table), orient="split"),
        figures=[Path(p) for p in obj.get("figures", [])])


# ====================================================================== render
CSS = """
body{font:14px/1.45 system-ui,-apple-system,Segoe UI,Roboto,sans-serif;margin:0 auto;max-width:1180px;padding:0 18px 40px;color:#222}
h1{margin-top:24px} h2{border-bottom:1px solid #ddd;padding-bottom:3px;margin-top:34px}
table{border-collapse:collapse;margin:10px 0;font-size:12.5px} th,td{border:1px solid #ccc;padding:3px 7px;text-align:left;vertical-align:top}
th{background:#f3f3f3} tr:nth-child(even) td{background:#fafafa}
td.bad{color:#b00;font-weight:600} td.good{color:#2b7a0b;font-weight:600}
img{max-width:100%;height:auto;border:1px solid #eee;margin:6px 0}
.loud{background:#fff3cd;border:2px solid #e0a800;padding:8px 12px;font-weight:600;margin:12px 0}
.warn{color:#8a4b00} .small{color:#666;font-size:12px} nav a{margin-right:12px}
figure{margin:12px 0} figcaption{color:#555;font-size:12px}
"""


def _img(path: Path, caption: str) -> str:
    data = base64.b64encode(path.read_bytes()).decode("ascii")
    return (f'<figure><img alt="{html.escape(caption)}" src="data:image/png;base64,{data}">'
            f"<figcaption>{html.escape(caption)}</figcaption></figure>")


_INLINE_MD = ((re.compile(r"\*\*(.+?)\*\*"), r"<strong>\1</strong>"), (re.compile(r"\*(.+?)\*"), r"<em>\1</em>"),
              (re.compile(r"`(.+?)`"), r"<code>\1</code>"))


def _paragraphs(text: str) -> str:
    """Markdown paragraphs as HTML: escaped first, then **bold**, *emphasis* and `code` only."""
    out = []
    for para in text.split("\n\n"):
        if para.strip():
            escaped = html.escape(para.strip())
            for pattern, repl in _INLINE_MD:
                escaped = pattern.sub(repl, escaped)
            out.append(f"<p>{escaped}</p>")
    return "".join(out)


@dataclass
class Part:
    """One report section, rendered twice (HTML and markdown) from the same content."""

    anchor: str
    title: str
    blocks: list[tuple[str, Any]] = field(default_factory=list)  # (kind, payload)

    def text(self, s: str) -> "Part":
        self.blocks.append(("text", s))
        return self

    def loud(self, s: str) -> "Part":
        self.blocks.append(("loud", s))
        return self

    def table(self, df: pd.DataFrame) -> "Part":
        self.blocks.append(("table", df))
        return self

    def figure(self, png: Path | None, caption: str) -> "Part":
        if png is not None:
            self.blocks.append(("figure", (png, caption)))
        return self

    def items(self, lines: Sequence[str], cls: str = "") -> "Part":
        self.blocks.append(("items", (list(lines), cls)))
        return self


def render_html(title: str, subtitle: str, parts: Sequence[Part]) -> str:
    nav = "".join(f'<a href="#{p.anchor}">{html.escape(p.title)}</a>' for p in parts)
    body = []
    for p in parts:
        body.append(f'<h2 id="{p.anchor}">{html.escape(p.title)}</h2>')
        for kind, payload in p.blocks:
            if kind == "text":
                body.append(_paragraphs(payload))
            elif kind == "loud":
                body.append(f'<div class="loud">{html.escape(payload)}</div>')
            elif kind == "table":
                body.append(html_table(payload))
            elif kind == "figure":
                body.append(_img(*payload))
            elif kind == "items":
                lines, cls = payload
                cls_attr = f' class="{cls}"' if cls else ""
                body.append(f"<ul{cls_attr}>" + "".join(f"<li>{html.escape(x)}</li>" for x in lines) + "</ul>")
    return ("<!DOCTYPE html>\n<html lang=\"en\"><head><meta charset=\"utf-8\">"
            f"<title>{html.escape(title)}</title><style>{CSS}</style></head><body>"
            f"<h1>{html.escape(title)}</h1><p class=\"small\">{html.escape(subtitle)}</p><nav>{nav}</nav>"
            + "\n".join(body) + "</body></html>\n")


def render_md(title: str, subtitle: str, parts: Sequence[Part], out_dir: Path) -> str:
    lines = [f"# {title}", "", subtitle, ""]
    for p in parts:
        lines += [f"## {p.title}", ""]
        for kind, payload in p.blocks:
            if kind == "text":
                lines += [payload, ""]
            elif kind == "loud":
                lines += [f"> **⚠ {payload}**", ""]
            elif kind == "table":
                lines += [md_table(payload), ""]
            elif kind == "figure":
                png, caption = payload
                rel = png.relative_to(out_dir) if png.is_relative_to(out_dir) else png
                lines += [f"![{caption}]({rel.as_posix()})", "", f"*{caption}*", ""]
            elif kind == "items":
                lines += [f"- {x}" for x in payload[0]] + [""]
    return "\n".join(lines)


def _slug(text: str) -> str:
    return "".join(c if c.isalnum() else "-" for c in text.lower()).strip("-") or "section"


def _status_part(stats: pd.DataFrame, runs: Runs, notes: Sequence[str]) -> Part:
    part = Part("status", "Runs and status")
    counts = stats["status"].value_counts().to_dict() if len(stats) else {}
    part.text(f"{len(stats)} runs in the report: {counts.get('completed', 0)} completed, "
              f"{counts.get('diverged', 0)} diverged; {len(runs.problems)} failed or unfinished runs left out.")
    if runs.problems:
        part.table(pd.DataFrame(runs.problems))
    if runs.warnings:
        part.items([f"warning: {w}" for w in runs.warnings], "warn")
    for note in notes:
        part.loud(note)
    return part


def _dataset_parts(ds: str, several: bool, runs: Runs, summary: pd.DataFrame, curves: pd.DataFrame,
                   target: float | None, lanes: int, out_dir: Path) -> list[Part]:
    """Comparison table, claims and figures of one dataset."""
    s = summary[summary["dataset"] == ds]
    c = curves[curves["dataset"] == ds]
    m = runs.metrics[runs.metrics["dataset"] == ds]
    st = runs.steps[runs.steps["run_id"].isin(set(m["run_id"]))]
    tag = _slug(ds)
    suffix = f" — {ds}" if several else ""
    how = " (set with --target-acc)" if target is not None else " (the default for this dataset)"
    table = Part(f"table-{tag}", f"Comparison{suffix}")
    table.text(f"Dataset {ds}; target accuracy {target_for(ds, target):g}{how}. Mean ± std over seeds. "
               "Seconds are training time only (evaluation excluded). s/epoch and samples/s: median over "
               f"training epochs. Step-loss spread: std of the logged step losses over the last {LAST_PART:.0%} "
               "of training. TF/torch time: TensorFlow's s/epoch over PyTorch's for the same configuration.")
    table.table(comparison_table(s))

    claims = Part(f"claims-{tag}", f"The seed's claims, checked{suffix}")
    claims.text("Each line of the tutorial's closing pros/cons table, judged per framework from the runs above "
                "(each method at its own batch size, native optimizer). The evidence is generated from the "
                f"measurements. Verdicts on time depend on the machine and on what ran beside each run (here up "
                f"to {lanes} runs at once).")
    claims.table(pd.DataFrame([{"method": c.method, "claim": c.claim, "measured by": c.measure,
                                "verdict": c.verdict, "evidence": c.evidence} for c in check_claims(s)]))

    figs = Part(f"curves-{tag}", f"Curves{suffix}")
    figs.text("Frameworks in fixed colours: PyTorch orange (thin), TensorFlow blue (wide, pale), so where both "
              "frameworks computed the same numbers the thin line runs inside the wide one. Other configurations "
              "of the same method use other line styles. Wall time is training time only; the first epoch "
              "includes each framework's warm-up (tracing, allocation).")
    for metric in ("train_loss", "test_acc"):
        for x, word in (("epoch", "epoch"), ("wall_time_s", "time")):
            figs.figure(plot_curves(c, s, metric, x, out_dir, f"{metric}_vs_{word}_{tag}"),
                        f"{metric.replace('_', ' ')} vs {'epoch' if x == 'epoch' else 'training wall time'} ({ds})")
    figs.figure(plot_steps(m, st, out_dir, f"step_loss_{tag}"),
                f"per-step training loss of sgd, minibatch and bgd ({ds}): the jitter claim")
    figs.figure(plot_speed(s, out_dir, f"epoch_time_{tag}"), f"time per epoch by method and framework ({ds})")
    return [table, claims, figs]


def _extra_parts(results_dir: Path, modules: Sequence[str], out_dir: Path, warnings: list[str],
                 log: Callable[[str], None]) -> list[Part]:
    """Sections from other modules; their problems become warnings, never a failed report."""
    parts = []
    for module in modules:
        section, warning = collect_section(module, results_dir)
        if warning:
            warnings.append(warning)
            log(f"warning: {warning}")
        if section is None:
            continue
        short = module.rsplit(".", 1)[-1]
        part = Part(f"extra-{_slug(short)}", section.title)
        if section.text:
            part.text(section.text)
        if section.table is not None and len(section.table):
            table = section.table if isinstance(section.table, pd.DataFrame) else pd.DataFrame(section.table)
            part.table(table.reset_index(drop=True))
        for i, png in enumerate(section.figures):
            png = Path(png)
            if png.is_file() and png.suffix.lower() == ".png":
                copy = out_dir / f"{short}_{i}_{_slug(png.stem)}.png"
                copy.write_bytes(png.read_bytes())  # report.md links stay inside report/
                part.figure(copy, f"{section.title}: {png.name}")
            else:
                warnings.append(f"{module}: figure {png} is not a PNG file; left out")
                log(f"warning: {warnings[-1]}")
        parts.append(part)
    return parts


def _toy_part(results_dir: Path, out_dir: Path) -> Part | None:
    toy = Path(results_dir) / "toy"
    pngs = [p for p in (toy / "toy_all_methods.png", toy / "toy_surface.png") if p.is_file()]
    if not pngs:
        return None
    part = Part("toy", "The seed's toy paths")
    part.text("From python -m bench.toy: the six methods on the seed's loss x² and on a 2-D surface, computed "
              "with numpy from the seed's formulas and with each framework's optimizers.")
    agreement = toy / "agreement.csv"
    if agreement.is_file():
        dev, _ = _read_table(agreement, ("problem", "method", "framework", "impl", "max_rel_dev"))
        if dev is not None:
            worst = dev.groupby(["framework", "impl"])["max_rel_dev"].max()
            part.text("Largest distance of a framework's path from the numpy path, relative to the path's size: "
                      + "; ".join(f"{fw} {impl} {v:.1g}" for (fw, impl), v in worst.items()) + ".")
    for png in pngs:
        copy = out_dir / png.name
        copy.write_bytes(png.read_bytes())
        part.figure(copy, png.stem.replace("_", " "))
    return part


def build_report(results_dir: Path, out_dir: Path, target: float | None = None,
                 extra_modules: Sequence[str] = EXTRA_MODULES, log: Callable[[str], None] = print) -> Path:
    """Load, aggregate, draw and write everything; returns the path of index.html."""
    runs = load_runs(results_dir)
    for warning in runs.warnings:
        log(f"warning: {warning}")
    out_dir.mkdir(parents=True, exist_ok=True)
    for old in list(out_dir.glob("*.png")) + list(out_dir.glob("*.svg")):
        old.unlink()  # figures of configurations no longer present must not linger
    stats = run_stats(runs.metrics, runs.steps, target) if len(runs.metrics) else pd.DataFrame()
    summary = summarize(stats) if len(stats) else pd.DataFrame()
    curves = aggregate_curves(runs.metrics) if len(runs.metrics) else pd.DataFrame()
    datasets = list(dict.fromkeys(summary["dataset"])) if len(summary) else []
    env, notes = environment(runs) if len(runs.metrics) else (pd.DataFrame(), [])
    lanes = max_concurrent(runs.info.values())

    body: list[Part] = []
    for ds in datasets:
        body += _dataset_parts(ds, len(datasets) > 1, runs, summary, curves, target, lanes, out_dir)
    body += _extra_parts(results_dir, extra_modules, out_dir, runs.warnings, log)
    toy = _toy_part(results_dir, out_dir)
    body += [toy] if toy else []
    envp = Part("environment", "Environment")
    for note in notes:
        envp.loud(note)
    if len(env):
        envp.table(env)
    parts = [_status_part(stats, runs, notes)] + body + [envp]

    title = "optbench report: six gradient-descent methods, PyTorch vs TensorFlow"
    subtitle = (f"Built {time.strftime('%Y-%m-%d %H:%M UTC', time.gmtime())} from {results_dir}; "
                f"datasets: {', '.join(datasets) or 'none'}.")
    atomic_write_text(out_dir / "summary.csv", summary.to_csv(index=False))
    atomic_write_text(out_dir / "report.md", render_md(title, subtitle, parts, out_dir))
    index = out_dir / "index.html"
    atomic_write_text(index, render_html(title, subtitle, parts))
    return index


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench.report", description=__doc__.splitlines()[0])
    parser.add_argument("results_dir", nargs="?", default="results", help="the sweep's results_dir (default: results)")
    parser.add_argument("--target-acc", type=float, default=None,
                        help="test accuracy for time-to-target; default per dataset: "
                        + ", ".join(f"{k} {v:g}" for k, v in TARGET_ACC.items()))
    parser.add_argument("--out", default=None, help="output folder (default: <results_dir>/report)")
    parser.add_argument("--no-extra", action="store_true", help="leave out the parity/perf/tuning sections")
    args = parser.parse_args(argv)
    results_dir = Path(args.results_dir)
    if args.target_acc is not None and not 0 < args.target_acc <= 1:
        print(f"error: --target-acc must be in (0, 1], got {args.target_acc}", file=sys.stderr)
        return EXIT_BAD_INPUT
    if not (results_dir / "runs").is_dir():
        print(f"error: no runs folder in {results_dir} (run `python -m bench ...` first, or name the results_dir)",
              file=sys.stderr)
        return EXIT_BAD_INPUT
    if not any(p.is_dir() for p in (results_dir / "runs").iterdir()):
        print(f"error: {results_dir / 'runs'} holds no runs", file=sys.stderr)
        return EXIT_BAD_INPUT
    out = Path(args.out) if args.out else results_dir / "report"
    index = build_report(results_dir, out, args.target_acc, () if args.no_extra else EXTRA_MODULES,
                         log=lambda s: print(s, file=sys.stderr))
    if not (out / "summary.csv").read_text().strip():
        print("warning: no completed or diverged runs; the report lists only what failed", file=sys.stderr)
    print(f"report: {index}")
    return 0


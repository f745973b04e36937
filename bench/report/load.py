"""Read ``results_dir/runs/<run_id>/{run.json,metrics.csv,steps.csv}`` and the timing pass's
``results_dir/timing/{timing.csv,timing.json}`` into tidy DataFrames.

A malformed, partial or foreign file is skipped with a warning that names it; nothing here raises
on a bad file.
"""
from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from bench.clock import CONTENTION_THRESHOLD, drift_of
from bench.exits import BadInput
from bench.optimizers import METHODS
from bench.report.groups import ModelInfo, default_version, known, model_infos, model_name, pinned_version
from bench.report.pace import pace_medians
from bench.report.speed import Rounds, round_times, samples, uncontended
from bench.results import STATUSES, read_json
from bench.spec import conf_group
from models.layers import DEFAULT_MODEL

REQUIRED_METRICS = (
    "run_id", "framework", "optimizer", "impl", "lr", "batch_size", "seed", "dataset", "n_train",
    "n_test", "device", "epoch", "steps", "train_loss", "test_loss", "test_acc", "epoch_time_s", "status",
)
NUMERIC_METRICS = ("lr", "batch_size", "seed", "n_train", "n_test", "epoch", "steps", "train_loss",
                   "test_loss", "test_acc", "epoch_time_s", "wall_time_s", "samples_per_s", "val_acc",
                   "cpu_time_s", "contention")
REQUIRED_STEPS = ("run_id", "epoch", "step", "loss")
REQUIRED_TIMING = ("framework", "optimizer", "impl", "mode", "batch_size", "dataset", "device", "round",
                   "time_per_step_s")
# run.json's per-run figures (memory in MiB, start-up in seconds since the child started) that the
# summary carries: copied onto each run's metrics rows, NaN where an older run did not record them.
RUN_FIGURES = ("rss_ready_mib", "rss_peak_mib", "train_mem_mib", "mem_floor_mib", "device_peak_mib",
               "startup_import_s", "startup_ready_s", "startup_first_step_s")
NUMERIC_TIMING = ("batch_size", "lr", "n_train", "threads", "round", "steps", "time_s", "time_per_step_s",
                  "cpu_time_s", "contention")


@dataclass
class Runs:
    """Everything usable under ``results_dir/runs``, plus what was not."""

    metrics: pd.DataFrame  # one row per run and epoch, runs that completed or diverged
    steps: pd.DataFrame  # sampled step losses of those runs
    info: dict[str, dict[str, Any]]  # run_id -> run.json
    problems: list[dict[str, str]] = field(default_factory=list)  # failed / unfinished runs
    warnings: list[str] = field(default_factory=list)
    models: dict[str, ModelInfo] = field(default_factory=dict)  # model name -> its layers and size

    def diverged(self) -> list[dict[str, str]]:
        """The diverged runs (kept in the tables up to the epoch that diverged), each with why it stopped."""
        return [{"run_id": run_id, "status": "diverged",
                 "reason": str(info.get("diverged_reason") or f"no reason recorded: see {run_id}/stderr.log")}
                for run_id, info in sorted(self.info.items()) if info.get("status") == "diverged"]


def read_table(path: Path, required: Sequence[str]) -> tuple[pd.DataFrame | None, str]:
    try:
        df = pd.read_csv(path, dtype={"framework_version": str})  # a release is text, never the number 2.2
    except (OSError, UnicodeDecodeError, pd.errors.ParserError, pd.errors.EmptyDataError) as exc:
        first = str(exc).strip().splitlines()[0] if str(exc).strip() else ""
        return None, f"unreadable ({type(exc).__name__}: {first})"
    missing = [c for c in required if c not in df.columns]
    if missing:
        return None, f"not an optbench file (missing columns {', '.join(missing)})"
    if df.empty:
        return None, "no rows"
    return df, ""


def read_metrics(path: Path) -> tuple[pd.DataFrame | None, str]:
    """``metrics.csv`` as a typed DataFrame, or (None, why it cannot be used)."""
    df, why = read_table(path, REQUIRED_METRICS)
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
    if "model" not in df.columns:  # written before models were selectable: load_runs asks run.json
        df["model"] = np.nan
    df["model"] = df["model"].astype(object)
    if "precision" not in df.columns:  # written before float64 runs: every run was float32
        df["precision"] = "fp32"
    df["precision"] = df["precision"].astype(object).fillna("fp32").astype(str)
    df["mode"] = df["mode"].fillna("eager").astype(str)
    df["impl"] = df["impl"].fillna("native").astype(str)
    df["device"] = df["device"].fillna("cpu").astype(str)
    if "wall_time_s" not in df.columns or df["wall_time_s"].isna().all():
        df["wall_time_s"] = df["epoch_time_s"].fillna(0).cumsum()
    if "samples_per_s" not in df.columns:
        df["samples_per_s"] = df["n_train"] / df["epoch_time_s"].where(df["epoch_time_s"] > 0)
    return df, ""


def _number(value: Any) -> float:
    """A run.json number as a float; NaN for anything else (absent, null, text)."""
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        return float("nan")
    return float(value)


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
            elif status == "interrupted":  # the sweep records no reason for a Ctrl-C or SIGTERM
                reason = reason or ("stopped before it finished (Ctrl-C or SIGTERM); "
                                    "run the same command again to finish it")
            else:
                reason = reason or f"no reason recorded: see {folder.name}/stderr.log"
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
        if df["model"].isna().any() or (df["model"].astype(str) == "").any():
            df["model"] = model_name(run_info.get("config"))  # an older run: the tutorial's MLP
        df["model"] = df["model"].astype(str)
        # The version the child imported; a run from before the column: the one its run.json recorded.
        version = df["framework_version"] if "framework_version" in df.columns else pd.Series(np.nan, df.index)
        df["framework_version"] = version.astype(object).where(version.notna(), run_info.get("framework_version"))
        info[run_id] = run_info
        for key in RUN_FIGURES:
            df[key] = _number(run_info.get(key))
        metrics.append(df)
        sfile = folder / "steps.csv"
        if sfile.exists():
            sdf, why = read_table(sfile, REQUIRED_STEPS)
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
    metrics_df = (pd.concat(metrics, ignore_index=True) if metrics
                  else pd.DataFrame(columns=[*REQUIRED_METRICS, "model", "framework_version"]))
    metrics_df["framework_version"] = settled_versions(metrics_df)
    steps_df = pd.concat(steps, ignore_index=True) if steps else pd.DataFrame(columns=REQUIRED_STEPS)
    firsts = metrics_df.drop_duplicates("run_id")
    models, model_warnings = model_infos({r: i.get("config") for r, i in info.items()},
                                         dict(zip(firsts["run_id"], firsts["model"])))
    return Runs(metrics_df, steps_df, info, problems, warnings + model_warnings, models)



def settled_versions(metrics: pd.DataFrame) -> pd.Series:
    """Every run's release: the one it recorded; a run that recorded none (an older or foreign writer) is at
    its framework's default release in this folder (the pinned one where it ran, else the newest that
    ran, :func:`bench.report.groups.default_version`), so it joins those runs instead of standing alone."""
    versions = metrics["framework_version"].astype(object)
    defaults = {fw: default_version(str(fw), grp) for fw, grp in versions.groupby(metrics["framework"])}
    return pd.Series([v if known(v) else defaults.get(fw, "") for fw, v in zip(metrics["framework"], versions)],
                     index=metrics.index, dtype=object)


def settle_timing(timing: Timing | None, metrics: pd.DataFrame) -> Timing | None:
    """A timing row without a release (a timing pass from before the column) is at the release its
    framework's runs in this folder were compared at (their default), else at the pinned one."""
    if timing is None:
        return None
    defaults = {}
    if len(metrics) and "framework_version" in metrics.columns:
        defaults = {fw: default_version(str(fw), grp) for fw, grp in metrics.groupby("framework")["framework_version"]}
    versions = timing.rows["framework_version"].astype(object)
    timing.rows["framework_version"] = [v if known(v) else defaults.get(fw) or pinned_version(fw)
                                        for fw, v in zip(timing.rows["framework"], versions)]
    return timing


@dataclass
class Timing:
    """The timing pass: one row per configuration and round, and the pass's own account of itself."""

    rows: pd.DataFrame
    meta: dict[str, Any]

    @property
    def threshold(self) -> float:
        """The contention threshold the pass was run with (timing.json), the default where it says none:
        the report and the comparison leave out exactly the samples the pass itself left out."""
        try:
            value = float(self.meta.get("contention_threshold", CONTENTION_THRESHOLD))
        except (TypeError, ValueError):
            return CONTENTION_THRESHOLD
        return value if np.isfinite(value) else CONTENTION_THRESHOLD

    @property
    def drift(self) -> dict[str, float]:
        """The between-run allowances the pass recorded (timing.json ``drift``: ``time`` and ``ratio``);
        none for a pass from before them, whose intervals were its own spread only."""
        return drift_of(self.meta)

    @property
    def pace(self) -> dict[str, float]:
        """Each framework's median interpreter pace (seconds of the workers' fixed Python loop) over the
        samples the pass kept from contention (:mod:`bench.report.pace`); {} for a pass from before it."""
        if self.rows is None or self.rows.empty:
            return {}
        return pace_medians(uncontended(samples(self.rows), self.threshold))

    def rounds(self) -> Rounds:
        """The clean samples per configuration as every reader of this pass must see them: the pass's
        own contention threshold, its slow slots left out, its between-run allowances."""
        return round_times(self.rows, self.threshold, self.drift)


def load_timing(results_dir: Path) -> tuple[Timing | None, list[str]]:
    """``results_dir/timing/timing.csv`` (+ ``timing.json``), or (None, warnings) when absent or unusable."""
    folder = Path(results_dir) / "timing"
    path = folder / "timing.csv"
    if not path.exists():
        return None, []
    df, why = read_table(path, REQUIRED_TIMING)
    if df is None:
        return None, [f"skipped {path}: {why}"]
    for col in NUMERIC_TIMING:
        if col in df.columns:
            df[col] = pd.to_numeric(df[col], errors="coerce")
    if "contention" not in df.columns:
        df["contention"] = np.nan
    if "model" not in df.columns:  # a timing pass from before models were selectable
        df["model"] = DEFAULT_MODEL
    df["model"] = df["model"].astype(object).fillna(DEFAULT_MODEL)
    if "framework_version" not in df.columns:  # from before releases were timed: settle_timing or the pinned one
        df["framework_version"] = None
    df["framework_version"] = [str(v) if known(v) else None for v in df["framework_version"].astype(object)]
    bad = df[["batch_size", "round", "time_per_step_s"]].isna().any(axis=1)
    warnings = [f"{path}: {int(bad.sum())} rows without batch size, round or time left out"] if bad.any() else []
    df = df[~bad].copy()
    df["batch_size"] = df["batch_size"].astype(int)
    for col in ("framework", "optimizer", "impl", "mode", "dataset", "device", "model"):
        df[col] = df[col].astype(str)
    meta = read_json(folder / "timing.json") or {}
    return (Timing(df.reset_index(drop=True), meta) if len(df) else None), warnings


def default_lrs() -> dict[str, float]:
    """method -> the lr its config file runs by default (what a sweep without an lr grid used).

    A method without a readable ``conf/optimizer/<name>.yaml`` or lr is left out (no "default lr" text).
    """
    out = {}
    for name in METHODS:
        try:
            out[name] = float(conf_group("optimizer", name)["lr"])
        except (BadInput, KeyError, TypeError, ValueError):
            continue
    return out

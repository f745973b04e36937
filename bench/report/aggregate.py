"""Pure functions from runs to numbers: per-run figures, seeds folded, curves; no plotting here."""
from __future__ import annotations

import math
from collections.abc import Iterable, Mapping, Sequence
from typing import Any

import numpy as np
import pandas as pd

from bench.optimizers import METHODS
from bench.report.groups import method_rank, units, version_key
from bench.report.load import REQUIRED_STEPS, RUN_FIGURES
from bench.report.speed import (
    BASELINE,
    CONTENTION_THRESHOLD,
    TIMING_KEYS,
    baseline_ratios,
    config_key,
    contended,
    default_versions,
    key_framework,
    key_version,
    round_times,
    time_ratio,
    timing_table,
    with_framework,
)
from models.layers import DEFAULT_MODEL

# Target test accuracy per dataset: the usual "solved" bar on MNIST, a reachable one on
# Fashion-MNIST, and on the 4,000-image embedded subset what the good methods reach in a
# quick run (it has no full-MNIST meaning).
TARGET_ACC = {"mnist": 0.97, "fashion_mnist": 0.85, "mnist_embedded": 0.90}
DEFAULT_TARGET = 0.90
LAST_PART = 0.25  # stability: spread of the step loss over this last share of the logged steps

# A group is one configuration; its runs differ only by seed. Two configurations that differ only
# by model are two groups: nothing is ever averaged or compared across models. Nor across releases of
# a framework: the seeds of jax 0.9.2 never fold into jax 0.10.2's (the release comes last, so the
# other keys keep their places; summary.csv still ends with it).
GROUP_KEYS = ("dataset", "model", "device", "framework", "optimizer", "batch_size", "impl", "mode", "lr", "n_train",
              "precision", "framework_version")
SHOWN_ALWAYS = ("framework", "optimizer", "batch_size")
# What tells two frameworks' rows of one configuration apart; every other key of GROUP_KEYS is the configuration.
FRAMEWORK_KEYS = ("framework", "framework_version")
CONFIG_KEYS = tuple(k for k in GROUP_KEYS if k not in FRAMEWORK_KEYS)


def same_config(frame: pd.DataFrame, row: pd.Series, keys: Sequence[str] = GROUP_KEYS) -> pd.Series:
    """Rows of ``frame`` whose ``keys`` equal ``row``'s (a missing value equals a missing value); a key
    that ``frame`` or ``row`` lacks (a frame from before the key) is not compared."""
    mask = pd.Series(True, index=frame.index)
    for k in keys:
        if k not in frame.columns or k not in row.index:
            continue
        mask &= (frame[k] == row[k]) | (frame[k].isna() & bool(pd.isna(row[k])))
    return mask


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

    ``step_loss_std`` is the jitter the tutorial talks about: per-step noise plus what is left of
    the trend; ``loss_up_share`` is the share of logged steps where the loss went up.
    """
    arr = np.asarray([v for v in losses if np.isfinite(v)], dtype=float)
    if arr.size < 2:
        return {"step_loss_std": math.nan, "step_loss_last": math.nan, "loss_up_share": math.nan}
    tail = arr[-max(2, math.ceil(arr.size * last_part)):]
    return {"step_loss_std": float(np.std(tail, ddof=1)), "step_loss_last": float(np.mean(tail)),
            "loss_up_share": float(np.mean(np.diff(arr) > 0))}


def run_stats(metrics: pd.DataFrame, steps: pd.DataFrame, target: float | None = None) -> pd.DataFrame:
    """One row per run: the figures the comparison table is built from.

    Epoch times come from epochs timed clean (other processes took at most
    ``CONTENTION_THRESHOLD`` of the CPU, or nobody measured); when every epoch was contended
    they come from those and ``timed_contended`` says so: the two kinds are never mixed.
    """
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
        busy = contended(finite["contention"]) if "contention" in finite.columns else np.zeros(len(finite), bool)
        timed = finite[~busy] if (~busy).any() else finite
        epoch_time = timed["epoch_time_s"].median()
        steps_per_epoch = math.ceil(first["n_train"] / first["batch_size"])
        losses = step_groups.get(run_id, pd.DataFrame(columns=REQUIRED_STEPS)).sort_values("step")["loss"]
        val = finite["val_acc"].dropna() if "val_acc" in finite.columns else pd.Series(dtype=float)
        row = {k: first.get(k) for k in GROUP_KEYS}
        row.update({
            "run_id": run_id, "seed": int(first["seed"]), "status": run["status"].iloc[-1],
            "target_acc": goal, "epochs": int(trained["epoch"].max()) if len(trained) else 0,
            "steps": int(run["steps"].max()) if run["steps"].notna().any() else 0,
            "final_acc": math.nan if diverged or finite.empty else float(finite["test_acc"].iloc[-1]),
            "best_acc": math.nan if diverged or finite.empty else float(finite["test_acc"].max()),
            "final_val_acc": math.nan if diverged or val.empty else float(val.iloc[-1]),
            "acc_epoch1": float(finite["test_acc"].iloc[0]) if len(finite) else math.nan,
            "final_train_loss": math.nan if diverged or finite.empty else float(finite["train_loss"].iloc[-1]),
            "epochs_to_target": epochs_hit, "seconds_to_target": seconds_hit,
            "epoch_time_s": float(epoch_time) if pd.notna(epoch_time) else math.nan,
            "samples_per_s": float(timed["samples_per_s"].median()) if len(timed) else math.nan,
            "sweep_time_per_step_s": float(epoch_time) / steps_per_epoch if pd.notna(epoch_time) else math.nan,
            "timed_epochs": len(finite), "contended_epochs": int(busy.sum()),
            "timed_contended": bool(len(finite)) and bool(busy.all()),
            **step_stability(losses.to_numpy(float)),
            **{k: float(first[k]) if k in run.columns else math.nan for k in RUN_FIGURES},
        })
        rows.append(row)
    return pd.DataFrame(rows)


def _mean(values: pd.Series) -> float:
    v = values.dropna()
    return float(v.mean()) if len(v) else math.nan


def _median(values: pd.Series) -> float:
    v = values.dropna()
    return float(v.median()) if len(v) else math.nan


def _std(values: pd.Series) -> float:
    v = values.dropna()
    return float(v.std(ddof=1)) if len(v) > 1 else math.nan


PER_RUN = ("final_acc", "best_acc", "final_val_acc", "acc_epoch1", "final_train_loss", "epochs_to_target",
           "seconds_to_target", "epoch_time_s", "samples_per_s", "sweep_time_per_step_s", "step_loss_std",
           "step_loss_last", "loss_up_share")


def summarize(stats: pd.DataFrame, timing: pd.DataFrame | None = None, baseline: str = BASELINE,
              threshold: float = CONTENTION_THRESHOLD, drift: Mapping[str, float] | None = None) -> pd.DataFrame:
    """Fold seeds: one row per configuration, with mean and std over seeds.

    Diverged runs are counted (``diverged``), never averaged in: their accuracies and losses are
    NaN and drop out of the means. Time to target is averaged over the seeds that reached it
    (``reached`` says how many). With a timing pass (``timing``: timing.csv's rows), each row
    gets the pass's median time per step with its interval, and its time ratio against the
    ``baseline`` framework, from the samples under ``threshold`` contention (the pass's own), with
    the pass's between-run allowances ``drift``.
    """
    rows = []
    for key, grp in stats.groupby(list(GROUP_KEYS), sort=False, dropna=False):
        row = dict(zip(GROUP_KEYS, key, strict=True))
        row.update({
            "runs": len(grp), "seeds": ",".join(str(s) for s in sorted(grp["seed"])),
            "diverged": int((grp["status"] == "diverged").sum()), "epochs": int(grp["epochs"].max()),
            "steps": int(grp["steps"].max()), "target_acc": float(grp["target_acc"].iloc[0]),
            "reached": int(grp["epochs_to_target"].notna().sum()),
            "timed_epochs": int(grp["timed_epochs"].sum()), "contended_epochs": int(grp["contended_epochs"].sum()),
            "timed_contended": bool(grp["timed_contended"].any()),
        })
        for col in PER_RUN:
            row[f"{col}_mean"] = _mean(grp[col])
            row[f"{col}_std"] = _std(grp[col])
        # The sweep's own estimate keeps its historical name; the timing pass's is time_per_step_s.
        row["time_per_step_s_mean"] = row.pop("sweep_time_per_step_s_mean")
        row["time_per_step_s_std"] = row.pop("sweep_time_per_step_s_std")
        for col in RUN_FIGURES:  # memory and start-up: medians over seeds, like the start-up figure
            row[col] = _median(grp[col]) if col in grp.columns else math.nan
        versions = grp["framework_version"].dropna() if "framework_version" in grp.columns else []
        row["framework_version"] = ",".join(sorted({str(v) for v in versions}))  # two: the seeds' versions differ
        rows.append(row)
    out = pd.DataFrame(rows)
    if out.empty:
        return out
    rounds = round_times(timing, threshold, drift) if timing is not None else {}
    table = timing_table(timing, threshold, drift) if timing is not None else timing_table(pd.DataFrame())
    # Matched on the release as the timing pass names it (no release recorded: the pinned one).
    out["_version"] = [config_key(row)[-1] for _, row in out.iterrows()]
    table = table.rename(columns={"framework_version": "_version"})
    out = out.merge(table, on=[k if k != "framework_version" else "_version" for k in TIMING_KEYS], how="left")
    out["timing_n"] = out["timing_n"].fillna(0).astype(int)
    out = pd.concat([out, baseline_ratios(out, rounds, baseline)], axis=1)
    out["tf_over_torch_time"] = tf_torch_ratio(out, rounds)
    out["_m"] = out["optimizer"].map(method_rank)
    out["_f"] = (out["framework"] != baseline).astype(int)
    out["_d"] = (out["model"] != DEFAULT_MODEL).astype(int)
    out["_v"] = out["_version"].map({v: i for i, v in enumerate(sorted(set(out["_version"]), key=version_key))})
    # A float64 twin's rows come after its float32 configuration's, never interleaved with them.
    out = out.sort_values(["dataset", "_d", "model", "_m", "batch_size", "impl", "mode", "lr", "precision", "_f",
                           "framework", "_v"], kind="stable")
    out = out.drop(columns=["_m", "_f", "_d", "_v", "_version"]).reset_index(drop=True)
    # summary.csv keeps the column order it had before models: ``model`` comes after the older
    # columns, and what was added since (memory, start-up) after it, so no column moves.
    older = [c for c in out.columns if c not in ("model", "framework_version") and c not in RUN_FIGURES]
    return out[older + ["model"] + [c for c in RUN_FIGURES if c in out.columns] + ["framework_version"]]


def tf_torch_ratio(summary: pd.DataFrame, rounds: dict | None = None) -> pd.Series:
    """TensorFlow's time over PyTorch's for the same configuration, on both rows (the older column,
    named after those two; ``time_ratio_vs_<baseline>`` is the general one).

    From the timing pass when it timed both; otherwise from the sweep's epoch times.
    """
    others = list(CONFIG_KEYS)
    keys = [config_key(row) for _, row in summary.iterrows()]
    defaults = default_versions(keys)
    at_default = [key_version(k) == defaults[key_framework(k)] for k in keys]
    times = {}
    for (_, row), default in zip(summary.iterrows(), at_default, strict=True):
        if default:  # each framework at its default release: like with like
            times[(row["framework"],) + tuple(row[k] for k in others)] = row["epoch_time_s_mean"]
    ratio = []
    for (_, row), key, default in zip(summary.iterrows(), keys, at_default, strict=True):
        if not default:
            ratio.append(math.nan)
            continue
        timed = time_ratio(rounds or {}, with_framework(key, "tensorflow", defaults.get("tensorflow")),
                           with_framework(key, "torch", defaults.get("torch")))
        if math.isfinite(timed.est):
            ratio.append(timed.est)
            continue
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
    """Configuration keys worth a column: the always-shown ones plus any that vary. The release is never
    a column of its own: where several ran, the framework's label names it (``jax 0.9.2``)."""
    keys = [k for k in GROUP_KEYS if k != "framework_version" and k in summary.columns]
    extra = [k for k in keys if k not in SHOWN_ALWAYS and summary[k].nunique(dropna=False) > 1]
    return [k for k in keys if k in SHOWN_ALWAYS or k in extra]


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



def lr_choice(grp: pd.DataFrame, default_lr: float | None) -> tuple[int, str]:
    """Among one method's configurations that differ only by lr: (index of the best, how it was chosen).

    Best = highest mean final validation accuracy when a validation split was measured, else
    highest mean final test accuracy; diverged seeds do not count, a configuration whose every
    seed diverged cannot win.
    """
    by_val = grp["final_val_acc_mean"].notna().any()
    score = grp["final_val_acc_mean" if by_val else "final_acc_mean"].fillna(-math.inf)
    best = score.idxmax()
    lr = f"{grp.loc[best, 'lr']:g}"
    if len(grp) > 1:
        return best, f"{lr} (best of {len(grp)} lr by {'val' if by_val else 'test'} acc)"
    if default_lr is not None and math.isclose(float(grp.loc[best, "lr"]), default_lr):
        return best, f"{lr}: default lr (no grid)"
    return best, f"{lr}: the only lr run (no grid)"


def reference_rows(summary: pd.DataFrame, default_lr: dict[str, float] | None = None
                   ) -> dict[str, dict[str, pd.Series]]:
    """framework -> method -> the row that stands for the method as the tutorial describes it.

    Prefers the method's own batch size, the native optimizer, eager mode, float32 (the tutorial's
    precision: a float64 twin never stands in for it, nor joins its lr choice); among the lr values
    run for that configuration, the best one (``lr_choice``); the row gains ``lr_used``, the
    text that says which lr it is and why.
    """
    out: dict[str, dict[str, pd.Series]] = {}
    if "model" in summary.columns and summary["model"].nunique() > 1:
        raise ValueError("reference_rows: pick one model's rows first; models are never compared as one")
    # framework (or label: each release of one is a framework of its own where the page tells them apart)
    for (fw, method), grp in summary.groupby([units(summary), summary["optimizer"]], sort=False):
        known = method in METHODS
        own = METHODS[method].batch_size if known else None
        precision = grp["precision"] if "precision" in grp.columns else pd.Series("fp32", index=grp.index)
        rank = pd.DataFrame({  # a method METHODS does not know has no own batch size to prefer
            "bs": (grp["batch_size"] != (grp["n_train"] if own is None else own)) & known,
            "impl": grp["impl"] != "native", "mode": grp["mode"] != "eager", "fp": precision != "fp32",
            "runs": -grp["runs"],
        }, index=grp.index).sort_values(["bs", "impl", "mode", "fp", "runs"], kind="stable")
        top = grp.loc[rank.index[0]]
        same = grp[(grp["batch_size"] == top["batch_size"]) & (grp["impl"] == top["impl"])
                   & (grp["mode"] == top["mode"]) & (grp["n_train"] == top["n_train"])
                   & (precision == precision[rank.index[0]])]
        best, used = lr_choice(same, (default_lr or {}).get(method))
        out.setdefault(fw, {})[method] = pd.concat([grp.loc[best], pd.Series({"lr_used": used})])
    return out

"""Pure functions from runs to numbers: per-run figures, seeds folded, curves; no plotting here."""
from __future__ import annotations

import math
from collections.abc import Iterable, Sequence
from typing import Any

import numpy as np
import pandas as pd

from bench.optimizers import METHODS
from bench.report.load import REQUIRED_STEPS

# Target test accuracy per dataset: the usual "solved" bar on MNIST, a reachable one on
# Fashion-MNIST, and on the 4,000-image embedded subset what the good methods reach in a
# quick run (it has no full-MNIST meaning).
TARGET_ACC = {"mnist": 0.97, "fashion_mnist": 0.85, "mnist_embedded": 0.90}
DEFAULT_TARGET = 0.90
LAST_PART = 0.25  # stability: spread of the step loss over this last share of the logged steps

# A group is one configuration; its runs differ only by seed.
GROUP_KEYS = ("dataset", "device", "framework", "optimizer", "batch_size", "impl", "mode", "lr", "n_train")
SHOWN_ALWAYS = ("framework", "optimizer", "batch_size")


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


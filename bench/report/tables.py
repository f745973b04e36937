"""Tables for people: strings from the summary, the environment, HTML and markdown cells."""
from __future__ import annotations

import numpy as np
import pandas as pd

from bench.report.aggregate import max_concurrent, varying_keys
from bench.report.groups import framework_order
from bench.report.load import Runs
from bench.report.speed import BASELINE, CONTENTION_THRESHOLD, interval_text
from bench.stats import Interval


def fmt(x: float, digits: int = 3) -> str:
    if x is None or not np.isfinite(x):
        return "n/a"
    if abs(x) >= 1000:
        return f"{x:,.0f}"
    return f"{x:.{digits}g}"


_f = fmt


def _pm(mean: float, std: float, digits: int = 3) -> str:
    if not np.isfinite(mean):
        return "n/a"
    return _f(mean, digits) + (f" ± {_f(std, 2)}" if np.isfinite(std) else "")


def _timed(r: pd.Series, est: str, lo: str, hi: str, scale: float = 1.0) -> str:
    """``est [lo, hi]`` from three summary columns; n/a when not timed."""
    values = [float(r.get(c, np.nan)) * scale for c in (est, lo, hi)]
    return interval_text(Interval(*values, 0))


def comparison_table(summary: pd.DataFrame, timed: bool, baseline: str = BASELINE) -> pd.DataFrame:
    """The comparison table for people: strings, diverged shown as such, mean ± std over seeds.

    ``timed``: a timing pass exists, and the speed columns are its medians with 95 % intervals;
    otherwise they are the sweep's own epoch times, which shared the cores with other runs.
    """
    keys = [k for k in varying_keys(summary) if k not in ("dataset", "model")]  # each has a section of its own
    ratio = f"time_ratio_vs_{baseline}"
    out = []
    for _, r in summary.iterrows():
        row = {k: (int(r[k]) if k in ("batch_size", "n_train") else (f"{r[k]:g}" if k == "lr" else r[k])) for k in keys}
        row["framework"] = r.get("fw_label", r["framework"])  # "jax 0.9.2" where several releases ran
        all_diverged = r["diverged"] == r["runs"]
        row["seeds"] = str(r["runs"])
        row["budget"] = (f"{r['epochs']} epoch{'' if r['epochs'] == 1 else 's'}, "
                         f"{r['steps']:,} step{'' if r['steps'] == 1 else 's'}")
        row["final acc"] = "diverged" if all_diverged else _pm(r["final_acc_mean"], r["final_acc_std"])
        row["best acc"] = "diverged" if all_diverged else _pm(r["best_acc_mean"], r["best_acc_std"])
        reach = f" ({r['reached']}/{r['runs']})" if 0 < r["reached"] < r["runs"] else ""
        never = "—" if all_diverged else f"not in {r['epochs']}"
        row[f"epochs to {r['target_acc']:g}"] = (_pm(r["epochs_to_target_mean"], r["epochs_to_target_std"], 2) + reach
                                                  if r["reached"] else never)
        row["seconds to target"] = (_pm(r["seconds_to_target_mean"], r["seconds_to_target_std"]) + reach
                                    if r["reached"] else "—")
        if timed:
            row["ms/step (timing pass)"] = _timed(r, "time_per_step_s", "time_per_step_lo", "time_per_step_hi", 1e3)
            # A release other than its framework's default is compared with its newest release (Versions).
            row[f"time vs {baseline}"] = ("see Versions" if not r.get("fw_default", True)
                                          else "baseline" if r["framework"] == baseline
                                          else _timed(r, ratio, f"{ratio}_lo", f"{ratio}_hi"))
            row["rounds"] = f"{r['timing_n']}/{int(r['timing_rounds'])}" if r["timing_rounds"] == r["timing_rounds"] \
                else "0"
        row["sweep s/epoch"] = _pm(r["epoch_time_s_mean"], r["epoch_time_s_std"]) + (
            " (contended)" if r["timed_contended"] else "")
        row["step-loss spread"] = _f(r["step_loss_std_mean"])
        if "rss_ready_mib" in r.index:
            row["MiB ready + training (floor)"] = memory_text(r)
        row["diverged"] = f"{r['diverged']}/{r['runs']}"
        out.append(row)
    return pd.DataFrame(out)


def memory_text(r: pd.Series) -> str:
    """``412 + 35 (0.9)``: resident MiB once ready, what training added, the model's floor; the GPU
    peak after them where a framework counted one. Medians over seeds; n/a for runs that predate them."""
    ready, train, floor = (float(r.get(c, np.nan)) for c in ("rss_ready_mib", "train_mem_mib", "mem_floor_mib"))
    if not np.isfinite(ready):
        return "n/a"
    text = f"{ready:.0f} + {train:.0f}" if np.isfinite(train) else f"{ready:.0f}"
    text += f" ({_f(floor, 2)})" if np.isfinite(floor) else ""
    gpu = float(r.get("device_peak_mib", np.nan))
    return text + (f", GPU {gpu:.0f}" if np.isfinite(gpu) else "")


def contention_note(summary: pd.DataFrame) -> str:
    """"n of m epochs timed under contention", or "" when none was."""
    busy, total = int(summary["contended_epochs"].sum()), int(summary["timed_epochs"].sum())
    if not busy:
        return ""
    return (f"{busy} of {total} sweep epochs timed under contention (other processes used over "
            f"{CONTENTION_THRESHOLD:.0%} of the CPU): left out of the sweep times where the run had clean "
            "epochs; a time marked (contended) comes from contended epochs only.")


def environment(runs: Runs) -> tuple[pd.DataFrame, list[str]]:
    """What the numbers were measured on, and loud notes about the data actually used."""
    rows: list[dict[str, str]] = []

    def values(fw: str | None, key: str) -> str:
        got = {str(i.get(key)) for i in runs.info.values()
               if i.get(key) not in (None, "")
               and (fw is None or (i.get("config") or {}).get("framework", {}).get("name") == fw)}
        return ", ".join(sorted(got))

    frameworks = framework_order(str(f) for f in runs.metrics["framework"])
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
    rows.append({"what": "parallel lanes (most runs training at once)",
                 "value": str(max_concurrent(runs.info.values()))})
    for name, model in runs.models.items():
        params = f"; {model.n_params:,} parameters" if model.n_params is not None else ""
        rows.append({"what": f"model {name}", "value": f"{model.layers}{params}; {model.runs} runs"})
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


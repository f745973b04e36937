"""PNG and SVG figures drawn from the aggregated tables."""
from __future__ import annotations

import math
from collections.abc import Sequence
from pathlib import Path

import matplotlib
import numpy as np
import pandas as pd
from matplotlib.figure import Figure
from matplotlib.lines import Line2D

from bench.optimizers import METHODS
from bench.report.aggregate import GROUP_KEYS, reference_rows
from bench.report.tables import fmt as _f

COLOURS = {"torch": "#e8590c", "tensorflow": "#1c7ed6"}  # fixed, so figures compare at a glance
OTHER_COLOUR = "#555555"
LINESTYLES = ("-", "--", ":", "-.")

matplotlib.rcParams.update({"svg.hashsalt": "optbench", "font.size": 9})  # reproducible SVG ids



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
        same = [k for k in shown if k not in vary and (k, configs[k].iloc[0]) not in (("impl", "native"), ("mode", "eager"))]
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


"""PNG and SVG figures drawn from the aggregated tables.

Each figure shows one dataset and one model (the page splits them); framework colours come from
the registry (``bench.frameworks``), method order from ``bench.optimizers.METHODS``. Where the
results hold several releases of a framework (a ``fw_label`` column, ``"jax 0.9.2"``), each release
is drawn in its framework's colour with a line style (bars: a hatch) of its own, the newest solid.
"""
from __future__ import annotations

import math
from collections.abc import Sequence
from pathlib import Path

import matplotlib
import numpy as np
import pandas as pd
from matplotlib.figure import Figure
from matplotlib.lines import Line2D

from bench.frameworks import NAMES
from bench.optimizers import METHODS
from bench.report.aggregate import GROUP_KEYS, reference_rows, same_config
from bench.report.groups import colour, framework_of, framework_order, method_order, release_ranks, units
from bench.report.speed import BASELINE
from bench.report.tables import fmt as _f


def _line_styles(baseline: str = BASELINE) -> dict[str, tuple[float, float]]:
    """(line width, alpha) per framework: the baseline thinnest and opaque, the others wider and paler
    in registry order. Drawn widest first, so where frameworks computed the same numbers the thinner
    line runs inside the wider one and every framework stays visible."""
    others = [n for n in NAMES if n != baseline]
    out = {baseline: (1.4, 1.0)}
    for rank, name in enumerate(others):
        steps = len(others) - rank
        out[name] = (1.2 + 1.0 * steps, max(0.35, 1.0 - 0.2 * steps))
    return out


LINE = _line_styles()
OTHER_LINE = (1.8, 0.9)
LINESTYLES = ("-", "--", ":", "-.")
HATCHES = (None, "//", "..", "xx")  # bars of a framework's releases, newest first


def _line(label: str) -> tuple[float, float]:
    """(line width, alpha) of a framework or of one of its releases' labels."""
    return LINE.get(framework_of(label), OTHER_LINE)

matplotlib.rcParams.update({"svg.hashsalt": "optbench", "font.size": 9})  # reproducible SVG ids



def _methods_in(df: pd.DataFrame) -> list[str]:
    return method_order(df["optimizer"])


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
    # The first save laid the figure out; keep that layout for the second rather than solve it again
    # (constrained layout is most of a save's time, and the two would come out the same).
    fig.set_layout_engine("none")
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
                name: str, heading: str = "") -> Path:
    """One panel per method; frameworks in fixed colours; seeds as mean line and min–max band.

    Keys that differ between a panel's configurations (batch size, lr, impl, mode, precision) get line
    styles and a panel legend; keys shared by the panel go into its title. ``heading`` starts
    the figure's title (the model, "beyond the tutorial").
    """
    labels = {"train_loss": "training loss", "test_acc": "test accuracy",
              "epoch": "epoch", "wall_time_s": "training wall time (s)"}
    methods = _methods_in(curves)
    fig, axes = _grid(len(methods))
    frameworks: dict[str, str] = {}
    curves = curves.assign(_unit=units(curves))
    ranks = release_ranks(curves["_unit"])  # 0 for every framework that ran at one release
    for ax, method in zip(axes, methods):
        sub = curves[curves["optimizer"] == method]
        # Widest first (LINE), thinnest on top: identical curves stay all visible.
        configs = sub[[k for k in (*GROUP_KEYS, "_unit") if k in sub.columns]].drop_duplicates().sort_values(
            "framework", key=lambda f: -f.map(lambda x: LINE.get(x, OTHER_LINE)[0]))
        # precision: a float64 twin of a float32 configuration gets a line style and a legend entry of its own
        shown = [k for k in ("batch_size", "lr", "impl", "mode", "precision") if k in configs.columns]
        vary = [k for k in shown if configs[k].nunique(dropna=False) > 1]
        usual = (("impl", "native"), ("mode", "eager"), ("precision", "fp32"))  # not worth a title word
        same = [k for k in shown if k not in vary and (k, configs[k].iloc[0]) not in usual]
        styles: dict[tuple, str] = {}
        for _, cfg in configs.iterrows():
            line = sub[same_config(sub, cfg)].sort_values("epoch")
            line = line[line["n"] > 0]
            if line.empty:
                continue
            unit, rank = cfg["_unit"], ranks[cfg["_unit"]]
            # A release's own style where nothing else varies; with other keys, a style per combination.
            style = (styles.setdefault(tuple(cfg[k] for k in vary) + (rank,), LINESTYLES[len(styles) % len(LINESTYLES)])
                     if vary else LINESTYLES[rank % len(LINESTYLES)])
            frameworks.setdefault(unit, colour(unit))
            xs = line["epoch"] if x == "epoch" else line["wall_time_s_mean"]
            label = f"{unit} {_variant_label(cfg, vary)}" if vary else None
            width, alpha = _line(unit)
            ax.plot(xs, line[f"{metric}_mean"], style, color=colour(unit), lw=width, alpha=alpha,
                    marker="." if width < 2 else None, ms=4, label=label)
            if line["n"].max() > 1:
                ax.fill_between(xs, line[f"{metric}_min"], line[f"{metric}_max"], color=colour(unit), alpha=0.18,
                                lw=0)
        if vary:
            ax.legend(fontsize=7, frameon=False)
        diverged = summary[(summary["optimizer"] == method) & (summary["diverged"] > 0)]
        if len(diverged):
            note = ", ".join(f"{u} ×{r['diverged']}" for u, (_, r) in zip(units(diverged), diverged.iterrows()))
            ax.text(0.98, 0.95, f"diverged: {note}", transform=ax.transAxes, ha="right", va="top",
                    color="#c00", fontsize=8)
        title = f"{method} ({_variant_label(configs.iloc[0], same)})" if same else method
        ax.set_title(title)
        ax.set_xlabel(labels[x])
        ax.set_ylabel(labels[metric])
        ax.grid(alpha=0.3)
    seeds = int(summary["runs"].max()) if len(summary) else 1
    band = f"; line = mean of up to {seeds} seeds, band = min–max" if seeds > 1 else ""
    fig.suptitle(f"{heading}{labels[metric]} vs {labels[x]}{band}", fontsize=10)
    names = framework_order(frameworks)
    handles = [Line2D([], [], color=frameworks[f], lw=_line(f)[0], alpha=_line(f)[1],
                      **({"linestyle": LINESTYLES[ranks[f] % len(LINESTYLES)]} if " " in f else {}))
               for f in names]
    fig.legend(handles, names, loc="outside lower center", ncol=len(handles), frameon=False)
    return _save(fig, out_dir, name)


def plot_steps(metrics: pd.DataFrame, steps: pd.DataFrame, out_dir: Path, name: str, heading: str = "") -> Path | None:
    """Per-step training loss of sgd, minibatch and bgd (first seed): the tutorial's jitter claim."""
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
        + (d["mode"] != "eager"), _unit=units(runs)).sort_values(["_rank", "seed"])
    frameworks = framework_order(runs["_unit"])  # each release of a framework a panel of its own
    fig, axes = _grid(len(frameworks), width=11, height=3.6)
    for ax, fw in zip(axes, frameworks):
        for method in methods:
            pick = runs[(runs["_unit"] == fw) & (runs["optimizer"] == method)]
            if pick.empty:
                continue
            run = pick.iloc[0]
            s = steps[steps["run_id"] == run["run_id"]].sort_values("step")
            per_epoch = math.ceil(run["n_train"] / run["batch_size"])
            ax.plot(s["step"] / per_epoch, s["loss"], color=METHODS[method].colour,
                    lw=0.8 if method == "sgd" else 1.4, alpha=0.75 if method == "sgd" else 1.0,
                    marker="o" if method == "bgd" else None, ms=4,
                    label=f"{method} (bs {int(run['batch_size'])}, seed {int(run['seed'])})")
        ax.set_yscale("log")
        ax.set_title(fw)
        ax.set_xlabel("epoch (step / steps per epoch)")
        ax.set_ylabel("step training loss (log)")
        ax.grid(alpha=0.3, which="both")
        ax.legend(fontsize=8, loc="lower left")
    fig.suptitle(f"{heading}training loss of each logged step: one sample (sgd), 32 (minibatch), all (bgd)",
                 fontsize=10)
    return _save(fig, out_dir, name)


def plot_speed(summary: pd.DataFrame, out_dir: Path, name: str, timed: bool,
               default_lr: dict[str, float] | None = None, heading: str = "") -> Path | None:
    """Time per step per method, frameworks side by side (log scale: bgd's step is ~100× sgd's).

    ``timed``: bars are the timing pass's medians with 95 % intervals as error bars; otherwise the
    sweep's median epoch time per step, labelled as the shared-core wall time it is.
    """
    rows = reference_rows(summary, default_lr)
    methods = method_order(m for f in rows for m in rows[f])
    if not methods:
        return None
    fig = Figure(figsize=(8, 3.4), layout="constrained")
    ax = fig.subplots()
    frameworks = framework_order(rows)  # frameworks, or their releases' labels
    ranks = release_ranks(frameworks)
    width = 0.8 / len(frameworks)
    for i, fw in enumerate(frameworks):
        xs = [j + (i - (len(frameworks) - 1) / 2) * width for j in range(len(methods))]
        pick = [rows[fw].get(m) for m in methods]
        col = "time_per_step_s" if timed else "time_per_step_s_mean"
        vals = np.array([np.nan if r is None else r[col] for r in pick], dtype=float) * 1e3
        err = None
        if timed:
            lo = np.array([np.nan if r is None else r["time_per_step_lo"] for r in pick], dtype=float) * 1e3
            hi = np.array([np.nan if r is None else r["time_per_step_hi"] for r in pick], dtype=float) * 1e3
            err = np.nan_to_num(np.vstack([vals - lo, hi - vals]), nan=0.0).clip(min=0)
        hatch = {"hatch": HATCHES[ranks[fw] % len(HATCHES)], "edgecolor": "white"} if ranks[fw] else {}
        bars = ax.bar(xs, vals, width, color=colour(fw), label=fw, yerr=err,
                      error_kw={"elinewidth": 1, "capsize": 2, "ecolor": "#222"}, **hatch)
        ax.bar_label(bars, labels=[_f(v, 2) for v in vals], fontsize=7, padding=1)
    ax.set_xticks(range(len(methods)), methods)
    ax.set_yscale("log")
    if timed:
        ax.set_ylabel("ms per step (median, log)")
        ax.set_title(f"{heading}time per step, timing pass: median over clean rounds, bars = 95 % interval",
                     fontsize=10)
    else:
        ax.set_ylabel("ms per step (log)")
        ax.set_title(f"{heading}time per step: sweep wall time (runs shared the cores), no timing pass",
                     fontsize=10)
    ax.margins(y=0.15)
    ax.legend(frameon=False)
    ax.grid(alpha=0.3, axis="y", which="both")
    return _save(fig, out_dir, name)


STARTUP_PARTS = (("start + data + import", "#9ecae1"), ("data to device + model", "#4292c6"),
                 ("first step (compile, trace)", "#08519c"))


def startup_parts(stats: pd.DataFrame) -> pd.DataFrame:
    """Per framework and mode, the median over runs of each start-up segment in seconds (the
    ``startup_*`` keys are cumulative from the child's start; the segments are their differences)."""
    cols = ("startup_import_s", "startup_ready_s", "startup_first_step_s")
    if stats.empty or any(c not in stats.columns for c in cols):
        return pd.DataFrame()
    runs = stats.dropna(subset=list(cols)).copy()
    if runs.empty:
        return pd.DataFrame()
    names = [p for p, _ in STARTUP_PARTS]
    runs[names[0]] = runs["startup_import_s"]
    runs[names[1]] = runs["startup_ready_s"] - runs["startup_import_s"]
    runs[names[2]] = runs["startup_first_step_s"] - runs["startup_ready_s"]
    runs["framework"] = units(runs)  # each release of a framework a bar of its own where several ran
    out = runs.groupby(["framework", "mode"], sort=False)[names].median()
    out["runs"] = runs.groupby(["framework", "mode"], sort=False).size()
    out = out.reset_index()
    order = {fw: i for i, fw in enumerate(framework_order(out["framework"]))}
    out["_f"] = out["framework"].map(order)
    return out.sort_values(["_f", "mode"]).drop(columns="_f").reset_index(drop=True)


def plot_startup(stats: pd.DataFrame, out_dir: Path, name: str, heading: str = "") -> Path | None:
    """One stacked bar per framework × mode: seconds from the child's start to the framework imported,
    to the data and model ready, to the end of the first step (compiling and tracing included)."""
    parts = startup_parts(stats)
    if parts.empty:
        return None
    fig = Figure(figsize=(8, 0.9 + 0.45 * len(parts)), layout="constrained")
    ax = fig.subplots()
    labels = [f"{r['framework']} {r['mode']}" for _, r in parts.iterrows()]
    left = np.zeros(len(parts))
    for part, shade in STARTUP_PARTS:
        vals = parts[part].to_numpy(float).clip(min=0)
        ax.barh(labels, vals, left=left, color=shade, label=part)
        left += vals
    for y, total in enumerate(left):
        ax.text(total, y, f" {_f(total, 2)} s", va="center", fontsize=7)
    ax.invert_yaxis()
    ax.set_xlabel("seconds since the run's child started (median over runs)")
    ax.margins(x=0.12)
    ax.set_title(f"{heading}start-up of a run: import, data and model, first step", fontsize=10)
    fig.legend(frameon=False, fontsize=7, loc="outside lower center", ncol=3)
    ax.grid(alpha=0.3, axis="x")
    return _save(fig, out_dir, name)

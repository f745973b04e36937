"""The report's "Batch-size scaling" section, from ``results_dir/scaling/scaling.csv`` and ``scaling.json``.

A log-log figure per model of samples per second against batch size, one line per framework (its
registry colour) with the 95 % interval at every point, the FLOP floor as a dashed line; a table
of the points; and sentences, generated from the paired intervals, on where the curves cross.
"""
from __future__ import annotations

import json
import math
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from bench.clock import CONTENTION_THRESHOLD, drift_of
from bench.frameworks import FRAMEWORKS, NAMES
from bench.report.sections import ReportSection
from bench.report.speed import slow_slots_text
from bench.scaling.analysis import crossings, summarise, without_slow


def load(results_dir: Path) -> tuple[list[dict[str, Any]], dict[str, Any]] | None:
    """The pass's rows and metadata, or None when the folder has no scaling pass."""
    import pandas as pd

    path = Path(results_dir) / "scaling" / "scaling.csv"
    if not path.is_file():
        return None
    try:
        rows = pd.read_csv(path).to_dict("records")
        meta = json.loads((path.parent / "scaling.json").read_text())
    except (OSError, ValueError):
        return None
    return rows, meta


def figure(points: list[dict[str, Any]], out: Path, n_train: int | None = None,
           order: Sequence[str] = ()) -> Path:
    """Samples per second against batch size, log-log, one panel per model."""
    import matplotlib

    matplotlib.use("Agg")
    from matplotlib.figure import Figure

    models = sorted(dict.fromkeys(p["model"] for p in points), key=lambda m: (order.index(m) if m in order else 99, m))
    fig = Figure(figsize=(5.2 * len(models), 4.0), constrained_layout=True)
    axes = fig.subplots(1, len(models), squeeze=False)[0]
    for ax, model in zip(axes, models):
        mine = [p for p in points if p["model"] == model]
        for fw in [n for n in NAMES if any(p["framework"] == n for p in mine)]:
            pts = sorted((p for p in mine if p["framework"] == fw), key=lambda p: p["batch_size"])
            x = [p["batch_size"] for p in pts]
            y = [p["samples_per_s"] for p in pts]
            lo = [max(0.0, p["samples_per_s"] - p["samples_per_s_lo"]) if math.isfinite(p["samples_per_s_lo"])
                  else 0.0 for p in pts]
            hi = [max(0.0, p["samples_per_s_hi"] - p["samples_per_s"]) if math.isfinite(p["samples_per_s_hi"])
                  else 0.0 for p in pts]
            ax.errorbar(x, y, yerr=[lo, hi], color=FRAMEWORKS[fw].colour, marker="o", markersize=3.5,
                        linewidth=1.6, capsize=3, label=f"{fw} ({pts[0]['mode']})")
        floor = [p["floor_samples_per_s"] for p in mine if math.isfinite(p["floor_samples_per_s"])]
        if floor:
            ax.axhline(floor[0], color="#495057", linestyle="--", linewidth=1.0,
                       label="FLOP floor: the model's FLOPs at the matrix-product rate")
        ax.set_xscale("log", base=2)
        sizes = sorted({p["batch_size"] for p in mine})
        ax.set_xticks(sizes, [f"full\n{b}" if b == n_train else str(b) for b in sizes])
        ax.minorticks_off()
        ax.set_yscale("log")
        ax.set_xlabel("batch size")
        ax.set_ylabel("samples per second (95 % interval)")
        ax.set_title(model)
        ax.grid(True, which="both", alpha=0.25)
        ax.legend(fontsize=8, loc="lower right")
    path = out / "scaling.png"
    fig.savefig(path, dpi=110)
    return path


def _cell(p: dict[str, Any]) -> str:
    def f(v: float) -> str:
        return "n/a" if not math.isfinite(v) else f"{v:,.0f}" if v >= 100 else f"{v:.3g}"

    if not math.isfinite(p["samples_per_s_lo"]):
        return f(p["samples_per_s"])
    return f"{f(p['samples_per_s'])} [{f(p['samples_per_s_lo'])}, {f(p['samples_per_s_hi'])}]"


def scaling_sentences(results_dir: Path) -> dict[str, list[str]]:
    """Per model, the sentences on where the frameworks' curves cross ("At a glance" shows them)."""
    found = load(results_dir)
    if found is None:
        return {}
    rows, meta = found
    threshold = float(meta.get("contention_threshold", CONTENTION_THRESHOLD))
    names_ = [n for n in NAMES if any(r["framework"] == n for r in rows)]
    models = dict.fromkeys(r["model"] for r in rows)
    return {m: crossings(rows, m, names_, threshold, drift_of(meta)["ratio"]) for m in models}


def report_section(results_dir: Path) -> ReportSection | None:
    import pandas as pd

    found = load(results_dir)
    if found is None:
        return None
    rows, meta = found
    points = summarise(rows, meta)
    if not points:
        return None
    out = Path(results_dir) / "scaling"
    order = list(dict.fromkeys(c["model"] for c in meta.get("curves", [])))  # the models in the pass's order
    png = figure(points, out, meta.get("n_train"), order)
    table = pd.DataFrame([{"model": p["model"], "framework": p["framework"], "mode": p["mode"],
                           "batch size": p["batch_size"], "samples/s [95 % CI]": _cell(p),
                           "ms per step": f"{p['time_per_step_s'] * 1e3:.3g}",
                           "× FLOP floor": f"{p['x_floor']:.3g}" if math.isfinite(p["x_floor"]) else "n/a",
                           "processes × rounds": f"{p['processes']} × {p['rounds'] // max(1, p['processes'])}",
                           "contended, left out": "all (kept)" if p["all_contended"] else p["left_out"]}
                          for p in points])
    threshold = float(meta.get("contention_threshold", CONTENTION_THRESHOLD))
    left_out = sum(p["left_out"] for p in points)
    rate = meta.get("matmul_gflops") or []
    lines = [
        f"`{meta.get('command', 'python -m bench.scaling')}` on {meta.get('cpu', '?')} "
        f"({meta.get('threads', 1)} thread(s)), {meta.get('started', '')}: {meta.get('optimizer')} "
        f"({meta.get('impl')}) on {meta.get('dataset')} ({meta.get('n_train')} training images), "
        f"{meta.get('processes')} worker processes per framework and model, {meta.get('rounds')} interleaved "
        f"rounds in each, samples of about {meta.get('sample_s', 0):.2g} s. In brackets the 95 % interval of the "
        "median: a two-level bootstrap, processes and then rounds within them. Batch size 'full' is the "
        "whole training set (one step per epoch). Steady state only: compiling and warm-up are outside the clocks."]
    if rate:
        lines.append(f"The dashed line is the FLOP floor: this machine's float32 matrix-product rate "
                     f"({sorted(rate)[len(rate) // 2]:.1f} GFLOP/s, numpy's BLAS) over the model's training FLOPs "
                     "per sample. A curve far below it at small batches is paying per-call overhead "
                     "(dispatch), not arithmetic.")
    probe = meta.get("mode_probe") or []
    if probe:
        lines.append("Mode per framework and model (the faster at batch "
                     f"{probe[0].get('batch_size')}, timed first): "
                     + "; ".join(f"{e['framework']} {e['model']}: {e['chosen']}" for e in probe) + ".")
    models = list(dict.fromkeys(p["model"] for p in points))
    frameworks_ = [n for n in NAMES if any(p["framework"] == n for p in points)]
    said = [s for model in models for s in crossings(rows, model, frameworks_, threshold, drift_of(meta)["ratio"])]
    if said:
        lines.append("Where the curves cross (a framework leads at a batch size only where the paired "
                     "interval of the time ratio lies wholly on its side of 1): " + " ".join(said))
    lines.append(f"{left_out} sample(s) ran while other processes used more than {threshold:.0%} of the CPUs "
                 "and are left out." if left_out else "No sample was left out for contention.")
    slow = without_slow(rows, threshold)[1]
    if slow:  # as the timing pass finds and leaves them out
        text = slow_slots_text(slow)
        lines.append(text[0].upper() + text[1:] + ".")
    busy = [p for p in points if p["all_contended"]]
    if busy:
        lines.append(f"**{len(busy)} of {len(points)} points had every sample contended** (the machine was shared "
                     "while they were timed): they are shown from those samples, and are not to be trusted.")
    failed = [c for c in meta.get("curves", []) if c.get("error")]
    if failed:
        lines.append("Failed: " + "; ".join(f"{c['framework']} {c['model']}: {c['error']}" for c in failed))
    return ReportSection(title="Batch-size scaling", text="\n\n".join(lines), table=table, figures=[png])

"""The report's "Speed" section, from ``results_dir/perf/perf.csv`` and ``perf.json`` (and
``layers.csv``, where the step goes, when ``bench.perf`` ran with ``layers=true``)."""
from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from bench.perf import layers
from bench.perf.cases import BASE_FRAMEWORK, fmt
from bench.report.sections import ReportSection
from bench.stats import Interval

# Table columns shown with their intervals, and their headings.
SHOWN = {
    "epoch_time_s": "epoch time (s)", "step_time_us": "step time (µs)", "samples_per_s": "samples/s",
    "vs_naive_torch": "× faster than naive torch", "vs_naive_tf": "× faster than Keras fit",
    "vs_torch": f"× faster than {BASE_FRAMEWORK} (same mode)", "x_floor": "× FLOP floor",
    "x_gemm": "× its products' floor",
    "cpu_vs_naive_torch": "CPU time: × naive torch", "cpu_vs_naive_tf": "CPU time: × Keras fit",
    "cpu_x_floor": "CPU time: × floor", "vs_naive_jax": "× faster than the naive JAX loop",
    "cpu_vs_naive_jax": "CPU time: × naive JAX loop",
}


def _interval(row: Any, key: str) -> Interval:
    """The figure ``key`` of a perf.csv row with its interval (missing ends: no interval)."""
    def get(name: str) -> float:
        value = row.get(name)
        try:
            return float(value)
        except (TypeError, ValueError):
            return float("nan")

    reps = get("reps")
    return Interval(get(key), get(f"{key}_lo"), get(f"{key}_hi"), int(reps) if reps == reps else 0)


def _cell(row: Any, key: str) -> str:
    """A table cell: ``1.23 [1.10, 1.40] (n=7)``, or ``1.23 (n=1, no interval)``."""
    iv = _interval(row, key)
    return iv.text() if iv.est == iv.est else "-"


def _short(row: Any, key: str, unit: str = "×") -> str:
    """For the text, where n is said once: ``1.2× [1.1, 1.4]``, or ``1.2×`` without an interval."""
    iv = _interval(row, key)
    if iv.est != iv.est:
        return "-"
    return f"{iv.est:.2g}{unit}" + (f" [{iv.lo:.2g}, {iv.hi:.2g}]" if iv.known else "")


# The figures of a framework's best case, said in this order where the run has them (naive=false: none
# against the naive loops; the full batch: no products' floor).
WALL = {"vs_naive_torch": "naive torch", "vs_naive_tf": "Keras fit", "vs_naive_jax": "the naive JAX loop",
        "x_floor": "FLOP floor", "x_gemm": "its products' floor"}
CPU = {"cpu_vs_naive_torch": "naive torch", "cpu_vs_naive_tf": "Keras fit", "cpu_vs_naive_jax": "the naive JAX loop",
       "cpu_x_floor": "FLOP floor"}


def _figures(row: Any, keys: dict[str, str]) -> str:
    return ", ".join(f"{_short(row, key)} {what}" for key, what in keys.items() if _short(row, key) != "-") or "-"


def report_section(results_dir: Path) -> ReportSection | None:
    """The report's "Speed" section (None without ``results_dir/perf/perf.csv``)."""
    import pandas as pd

    path = Path(results_dir) / "perf" / "perf.csv"
    if not path.is_file():
        return None
    df = pd.read_csv(path, keep_default_na=False, na_values=["nan", ""])
    df["error"] = ["" if pd.isna(e) else str(e) for e in df["error"]]  # an empty cell means the case ran
    meta: dict[str, Any] = {}
    try:
        meta = json.loads((path.parent / "perf.json").read_text())
    except (OSError, ValueError):
        pass
    records = df.to_dict("records")
    table = pd.DataFrame([{"case": r["case"], "batch_size": r["batch_size"], "steps": r["steps"],
                           **{head: _cell(r, key) for key, head in SHOWN.items() if key in df.columns},
                           "overhead_frac": r["overhead_frac"]} for r in records])
    reps = int(df["reps"].max()) if df["reps"].notna().any() else 0
    lines = [
        f"`{meta.get('command', 'python -m bench.perf')}` on {meta.get('cpu', '?')} "
        f"({meta.get('device', '?')}, {meta.get('threads', '?')} thread(s)), {meta.get('finished', '')}. "
        f"Median of {reps or '?'} epochs after a warm-up, each case in its own process; in brackets the 95 % "
        f"bootstrap interval of the median, and of each ratio (the two cases' epochs resampled independently)"
        + (" — with one epoch per case there is none." if reps == 1 else ".")
        + f" Matrix-product rate {fmt(meta.get('matmul_gflops'))} GFLOP/s sets the floor "
        f"({meta.get('flop_per_sample') or 0:,} FLOP per sample per step of {meta.get('model', 'mlp')}); "
        "the second floor, \"its products' floor\", is the step's own matrix products, each at its shape and "
        "layout (a convolution as its im2col product), timed with the same GEMM: what a framework that spent "
        "nothing beyond its products would take. "
        "Ratios are given on wall time and on process CPU "
        f"time; with one thread the CPU-time ratios are the ones a busy machine disturbs least."
    ]
    ok = df[df["error"] == ""]
    for batch in ok["batch_size"].astype(str).unique():
        best = []
        for fw in ok["framework"].unique():
            sub = ok[(ok["batch_size"].astype(str) == batch) & (ok["framework"] == fw)
                     & ok["case"].str.startswith("harness")]
            if not len(sub):
                continue
            row = sub.loc[sub["epoch_time_s"].idxmin()].to_dict()
            text = (f"{fw} {row['mode']}: {_short(row, 'epoch_time_s', ' s')} for {int(row['steps'])} steps, "
                    f"{_figures(row, WALL)} (CPU time: {_figures(row, CPU)})")
            if fw != BASE_FRAMEWORK and "vs_torch" in row:
                iv = _interval(row, "vs_torch")
                text += (f", {_short(row, 'vs_torch')} {BASE_FRAMEWORK} {row['mode']}"
                         + (" (inconclusive: the interval holds 1)" if iv.known and iv.lo <= 1 <= iv.hi else ""))
            best.append(text)
        if best:
            lines.append(f"Batch {batch}, best mode — " + "; ".join(best) + ".")
    layers_csv = path.parent / "layers.csv"
    figures = []
    if layers_csv.is_file():  # python -m bench.perf layers=true
        frame = pd.read_csv(layers_csv, keep_default_na=False, na_values=["nan", ""],
                            dtype={"block": str, "error": str})
        frame["error"] = frame["error"].fillna("")
        records = frame.to_dict("records")
        lines += layers.summary(records)
        figures = layers.figure(records, path.parent)
    if meta.get("data_note"):
        lines.append(meta["data_note"])
    failed = df[df["error"] != ""]
    if len(failed):
        lines.append("Failed cases: " + "; ".join(f"{c} (bs {b}): {e}" for c, b, e in
                                                  zip(failed["case"], failed["batch_size"], failed["error"])))
    return ReportSection(title="Speed", text="\n\n".join(lines), table=table, figures=figures)

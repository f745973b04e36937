"""The page, part by part: what each section says, in order; ``build_report`` writes every output."""
from __future__ import annotations

import time
from collections.abc import Callable, Sequence
from pathlib import Path

import pandas as pd

from bench.report.aggregate import LAST_PART, aggregate_curves, max_concurrent, run_stats, summarize, target_for
from bench.report.claims import check_claims
from bench.report.figures import plot_curves, plot_speed, plot_steps
from bench.report.load import Runs, load_runs, read_table
from bench.report.render import Part, render_html, render_md
from bench.report.sections import EXTRA_MODULES, collect_section
from bench.report.tables import comparison_table, environment
from bench.results import atomic_write_text


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
        dev, _ = read_table(agreement, ("problem", "method", "framework", "impl", "max_rel_dev"))
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
    atomic_write_text(index, render_html(title, subtitle, parts, out_dir))
    return index


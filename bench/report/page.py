"""The page, part by part: what each section says, in order; ``build_report`` writes every output."""
from __future__ import annotations

import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path

import pandas as pd

from bench.report.aggregate import LAST_PART, aggregate_curves, max_concurrent, run_stats, summarize, target_for
from bench.report.claims import check_claims
from bench.report.figures import plot_curves, plot_speed, plot_steps
from bench.report.load import Runs, Timing, default_lrs, load_runs, load_timing, read_table
from bench.report.render import Part, render_html, render_md
from bench.report.sections import EXTRA_MODULES, collect_section
from bench.report.speed import BASELINE, CONTENTION_THRESHOLD, contended, round_times
from bench.report.tables import comparison_table, contention_note, environment
from bench.results import atomic_write_text
from bench.spec import FRAMEWORKS


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


@dataclass
class Inputs:
    """Everything the dataset sections are drawn from, aggregated once."""

    runs: Runs
    stats: pd.DataFrame  # one row per run
    summary: pd.DataFrame  # one row per configuration
    curves: pd.DataFrame
    timing: Timing | None
    rounds: dict[tuple, pd.Series]  # the timing pass's clean rounds per configuration
    default_lr: dict[str, float]
    target: float | None
    lanes: int
    baseline: str = BASELINE
    claims: list[pd.DataFrame] = field(default_factory=list)  # every dataset's verdicts, for claims.csv


def _timing_text(timing: Timing | None, baseline: str) -> str:
    if timing is None:
        return ("**No timing pass** (`python -m bench.timing`): the speed numbers below are sweep wall time "
                "(runs shared the cores), and every claim about time is inconclusive.")
    meta, rows = timing.meta, timing.rows
    started = meta.get("started", "start not recorded")
    busy = int(contended(rows["contention"]).sum())
    return (f"Speed from the timing pass ({started}, host "
            f"{meta.get('host', '?')}): {int(rows['round'].nunique())} rounds per configuration after "
            f"{meta.get('warmup_rounds', '?')} warm-up rounds, configurations interleaved round by round. "
            f"ms/step: median over clean rounds with its 95 % bootstrap interval; time vs {baseline}: median "
            f"of the per-round ratios against the {baseline} configuration timed in the same round, with its "
            f"95 % interval; rounds: clean / all. {busy} of {len(rows)} timed rows ran under contention "
            f"(other processes used over {CONTENTION_THRESHOLD:.0%} of the CPU) and are left out.")


def _dataset_parts(ds: str, several: bool, inp: Inputs, out_dir: Path) -> list[Part]:
    """Comparison table, claims and figures of one dataset."""
    s = inp.summary[inp.summary["dataset"] == ds]
    st = inp.stats[inp.stats["dataset"] == ds]
    c = inp.curves[inp.curves["dataset"] == ds]
    m = inp.runs.metrics[inp.runs.metrics["dataset"] == ds]
    steps = inp.runs.steps[inp.runs.steps["run_id"].isin(set(m["run_id"]))]
    timed = inp.timing is not None and bool((s["timing_n"] > 0).any())
    tag = _slug(ds)
    suffix = f" — {ds}" if several else ""
    how = " (set with --target-acc)" if inp.target is not None else " (the default for this dataset)"
    table = Part(f"table-{tag}", f"Comparison{suffix}")
    table.text(f"Dataset {ds}; target accuracy {target_for(ds, inp.target):g}{how}. Accuracies: mean ± std over "
               "seeds; diverged seeds are left out of the means and counted in *diverged*. Budget: epochs and "
               "optimizer steps each run had. Seconds are training time only (evaluation excluded). Step-loss "
               f"spread: std of the logged step losses over the last {LAST_PART:.0%} of training. sweep s/epoch: "
               "median over training epochs of the sweep, wall time while runs shared the cores.")
    table.text(_timing_text(inp.timing if timed else None, inp.baseline))
    note = contention_note(s)
    if note:
        table.loud(note)
    table.table(comparison_table(s, timed, inp.baseline))

    found = check_claims(s, st, inp.rounds if timed else {}, inp.default_lr, inp.baseline)
    claims = Part(f"claims-{tag}", f"The tutorial's claims, checked{suffix}")
    claims.text("Each line of the tutorial's closing pros/cons table, judged per framework from the runs above: "
                "each method at its own batch size, native optimizer, eager mode, and at its best lr where several "
                "were run (highest final validation accuracy, or test accuracy without a validation split; column "
                "*lr*). Each method's budget is in the comparison table. A claim is **supported** only when the 95 % "
                "interval of every comparison it makes lies on the claim's side of the threshold, **not supported** "
                "when an interval lies wholly on the other side, **inconclusive** otherwise.")
    claims.text("Time: ratios of time per step (per sample for efficiency) from the timing pass, paired by round. "
                "Accuracy and step-loss spread: the difference between the two methods, paired by seed and "
                "averaged over the seeds both ran (mean with 95 % interval; *n* says how many). **A single seed "
                "gives no interval, so with one seed these verdicts are inconclusive**: run several seeds "
                "(`seed=0,1,2`) for a verdict.")
    verdicts = pd.DataFrame([{"method": x.method, "claim": x.claim, "framework": x.framework,
                              "measured by": x.measure, "verdict": x.verdict, "95% interval": x.interval,
                              "n": x.n, "lr": x.lr, "evidence": x.evidence} for x in found])
    claims.table(verdicts)
    inp.claims.append(verdicts.assign(dataset=ds))

    figs = Part(f"curves-{tag}", f"Curves{suffix}")
    figs.text("Frameworks in fixed colours (PyTorch orange, TensorFlow blue, JAX green), drawn widest and palest "
              "first, so where frameworks computed the same numbers the thin line runs inside the wide one. Other "
              "configurations of the same method use other line styles. Wall time is training time only; the "
              "first epoch includes each framework's warm-up (tracing, allocation).")
    for metric in ("train_loss", "test_acc"):
        for x, word in (("epoch", "epoch"), ("wall_time_s", "time")):
            figs.figure(plot_curves(c, s, metric, x, out_dir, f"{metric}_vs_{word}_{tag}"),
                        f"{metric.replace('_', ' ')} vs {'epoch' if x == 'epoch' else 'training wall time'} ({ds})")
    figs.figure(plot_steps(m, steps, out_dir, f"step_loss_{tag}"),
                f"per-step training loss of sgd, minibatch and bgd ({ds}): the jitter claim")
    busy = int(s["contended_epochs"].sum())
    speed = ("timing pass, median with 95 % interval" if timed else
             "sweep wall time (runs shared the cores)" + (
                 f"; {busy} of {int(s['timed_epochs'].sum())} epochs timed under contention" if busy else ""))
    figs.figure(plot_speed(s, out_dir, f"time_per_step_{tag}", timed, inp.default_lr),
                f"time per step by method and framework ({ds}): {speed}")
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
    part = Part("toy", "The tutorial's toy paths")
    part.text("From python -m bench.toy: the six methods on the tutorial's loss x² and on a 2-D surface, computed "
              "with numpy from the tutorial's formulas and with each framework's optimizers.")
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
                 extra_modules: Sequence[str] = EXTRA_MODULES, log: Callable[[str], None] = print,
                 baseline: str = BASELINE) -> Path:
    """Load, aggregate, draw and write everything; returns the path of index.html."""
    runs = load_runs(results_dir)
    timing, timing_warnings = load_timing(results_dir)
    runs.warnings.extend(timing_warnings)
    for warning in runs.warnings:
        log(f"warning: {warning}")
    out_dir.mkdir(parents=True, exist_ok=True)
    for old in list(out_dir.glob("*.png")) + list(out_dir.glob("*.svg")):
        old.unlink()  # figures of configurations no longer present must not linger
    rows = timing.rows if timing is not None else None
    stats = run_stats(runs.metrics, runs.steps, target) if len(runs.metrics) else pd.DataFrame()
    summary = summarize(stats, rows, baseline) if len(stats) else pd.DataFrame()
    inp = Inputs(runs, stats, summary, aggregate_curves(runs.metrics) if len(runs.metrics) else pd.DataFrame(),
                 timing, round_times(rows) if rows is not None else {}, default_lrs(), target,
                 max_concurrent(runs.info.values()), baseline)
    datasets = list(dict.fromkeys(summary["dataset"])) if len(summary) else []
    env, notes = environment(runs) if len(runs.metrics) else (pd.DataFrame(), [])

    body: list[Part] = []
    for ds in datasets:
        body += _dataset_parts(ds, len(datasets) > 1, inp, out_dir)
    body += _extra_parts(results_dir, extra_modules, out_dir, runs.warnings, log)
    toy = _toy_part(results_dir, out_dir)
    body += [toy] if toy else []
    envp = Part("environment", "Environment")
    for note in notes:
        envp.loud(note)
    if len(env):
        envp.table(env)
    parts = [_status_part(stats, runs, notes)] + body + [envp]

    order = {fw: i for i, fw in enumerate(FRAMEWORKS)}
    frameworks = (sorted(set(summary["framework"]), key=lambda f: (f != baseline, order.get(f, len(order)), f))
                  if len(summary) else [])
    title = "optbench report: six gradient-descent methods" + (f", {' vs '.join(frameworks)}" if frameworks else "")
    subtitle = (f"Built {time.strftime('%Y-%m-%d %H:%M UTC', time.gmtime())} from {results_dir}; "
                f"datasets: {', '.join(datasets) or 'none'}.")
    atomic_write_text(out_dir / "summary.csv", summary.to_csv(index=False))
    if inp.claims:  # the verdicts as data: two reports can be compared claim by claim
        atomic_write_text(out_dir / "claims.csv", pd.concat(inp.claims).to_csv(index=False))
    atomic_write_text(out_dir / "report.md", render_md(title, subtitle, parts, out_dir))
    index = out_dir / "index.html"
    atomic_write_text(index, render_html(title, subtitle, parts, out_dir))
    return index

"""The page, part by part: what each section says, in order; ``build_report`` writes every output."""
from __future__ import annotations

import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path

import pandas as pd

from bench.optimizers import METHODS, TUTORIAL_METHODS
from bench.report.aggregate import LAST_PART, aggregate_curves, max_concurrent, run_stats, summarize, target_for
from bench.report.claims import check_claims
from bench.report.figures import plot_curves, plot_speed, plot_startup, plot_steps
from bench.report.glance import INTRO, group_glance, group_title
from bench.report.groups import BEYOND, framework_order, method_order, model_order, several_versions, split_methods
from bench.report.load import Runs, Timing, default_lrs, load_runs, load_timing, read_table, settle_timing
from bench.report.render import Part, render_html, render_md
from bench.report.sections import EXTRA_MODULES, collect_section
from bench.report.speed import BASELINE, CONTENTION_THRESHOLD, contended, protocol_text
from bench.report.tables import comparison_table, contention_note, environment
from bench.report.versions import defaults_of, label, releases_of, sentences, timed_releases, versions_part
from bench.results import atomic_write_text
from bench.scaling.section import scaling_sentences


def _slug(text: str) -> str:
    return "".join(c if c.isalnum() else "-" for c in text.lower()).strip("-") or "section"


def _status_part(stats: pd.DataFrame, runs: Runs, notes: Sequence[str]) -> Part:
    part = Part("status", "Runs and status")
    counts = stats["status"].value_counts().to_dict() if len(stats) else {}
    diverged = counts.get("diverged", 0)
    part.text(f"{len(stats)} runs in the report: {counts.get('completed', 0)} completed, {diverged} diverged"
              + (" (kept up to that epoch)" if diverged else "") + f"; {len(runs.problems)} failed or unfinished "
              "runs left out." + (" Why each did not complete:" if runs.problems or diverged else ""))
    if rows := runs.problems + runs.diverged():
        part.table(pd.DataFrame(rows))
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
    verdicts: dict[tuple[str, str], pd.DataFrame] = field(default_factory=dict)  # (dataset, model) -> its claims
    scaling: dict[str, list[str]] = field(default_factory=dict)  # model -> where the scaling pass's curves cross
    several: set[str] = field(default_factory=set)  # frameworks that ran at more than one release
    defaults: dict[str, str] = field(default_factory=dict)  # framework -> the release it is compared at
    results_dir: Path = Path("results")


def _timing_text(timing: Timing | None, baseline: str, rounds: Mapping[tuple, pd.Series], timed: bool = True) -> str:
    if timing is None:
        return ("**No timing pass** (`python -m bench.timing`): the speed numbers below are sweep wall time "
                "(runs shared the cores), and every claim about time is inconclusive.")
    if not timed:  # a pass, but not one clean sample of this block's configurations
        busy = int(contended(timing.rows["contention"], timing.threshold).sum()) if "contention" in timing.rows else 0
        return (f"**No clean timing of these configurations**: the timing pass did not time them, or left out every "
                f"sample it took of them ({busy} of its {len(timing.rows)} samples ran while other processes used more "
                f"than {timing.threshold:.0%} of the CPUs). The speed numbers below are sweep wall time (runs shared "
                "the cores), and every claim about time is inconclusive; run `python -m bench.timing` again on a "
                "quiet machine.")
    # processes, rounds, passes, what was left out (at the pass's own contention threshold)
    return protocol_text(timing.rows, timing.meta, baseline, timing.threshold, getattr(rounds, "slow", ()),
                         timing.drift)


@dataclass(frozen=True)
class Scope:
    """One dataset and one model: every table, claim and figure of a block is drawn from its rows only."""

    dataset: str
    model: str
    several_datasets: bool
    several_models: bool

    @property
    def tag(self) -> str:  # anchors and figure names
        return _slug(self.dataset) + (f"-{_slug(self.model)}" if self.several_models else "")

    @property
    def suffix(self) -> str:  # section titles without a model heading above them
        return f" — {self.dataset}" if self.several_datasets else ""

    def heading(self, *more: str) -> str:  # the start of a figure's title
        words = ([self.model, self.dataset] if self.several_models else []) + list(more)
        return f"{', '.join(words)}: " if words else ""

    def select(self, df: pd.DataFrame) -> pd.DataFrame:
        if df.empty:
            return df
        return df[(df["dataset"] == self.dataset) & (df["model"] == self.model)]


def _model_part(scope: Scope, inp: Inputs) -> Part:
    info = inp.runs.models.get(scope.model)
    title = f"Model {scope.model}" + (f" — {scope.dataset}" if scope.several_datasets else "")
    part = Part(f"model-{scope.tag}", title)
    part.text(f"**{info.text() if info else scope.model}**. The results hold several models; each has its own "
              "tables, claims and figures, drawn from its runs only: no number below mixes two models.")
    return part


def _curve_figures(part: Part, c: pd.DataFrame, s: pd.DataFrame, out_dir: Path, name: str, heading: str,
                   caption: str) -> None:
    for metric in ("train_loss", "test_acc"):
        for x, word in (("epoch", "epoch"), ("wall_time_s", "time")):
            part.figure(plot_curves(c, s, metric, x, out_dir, f"{metric}_vs_{word}_{name}", heading),
                        f"{metric.replace('_', ' ')} vs {'epoch' if x == 'epoch' else 'training wall time'} "
                        f"({caption})")


STARTUP_TEXT = ("the child's start, reading the data and importing the framework; putting the data on the device "
                "and building the model; the first step, which includes compiling and tracing. The speed figures "
                "leave all of it out: the timing pass times steady-state steps only, after its warm-up rounds.")


def methods_title(summary: pd.DataFrame) -> str:
    """What the folder holds, counted: "six gradient-descent methods and 3 more", "two of the tutorial's six
    gradient-descent methods", "one gradient-descent method beyond the tutorial's six"."""
    if not len(summary):
        return "no runs"
    tutorial, beyond = (method_order(part["optimizer"]) for part in split_methods(summary))
    more = f" and {len(beyond)} more" if beyond else ""
    if len(tutorial) == len(TUTORIAL_METHODS):
        return "six gradient-descent methods" + more
    if tutorial:
        return f"{_count(len(tutorial))} of the tutorial's six gradient-descent methods" + more
    return f"{_count(len(beyond))} gradient-descent method{'s' if len(beyond) != 1 else ''} beyond the tutorial's six"


def _count(n: int) -> str:
    return ("one", "two", "three", "four", "five")[n - 1] if 1 <= n <= 5 else str(n)


def _speed_caption(s: pd.DataFrame, timed: bool) -> str:
    busy = int(s["contended_epochs"].sum())
    return ("timing pass, median with 95 % interval" if timed else
            "sweep wall time (runs shared the cores)" + (
                f"; {busy} of {int(s['timed_epochs'].sum())} epochs timed under contention" if busy else ""))


def _table_text(scope: Scope, inp: Inputs, s: pd.DataFrame, timed: bool) -> list[str]:
    how = " (set with --target-acc)" if inp.target is not None else " (the default for this dataset)"
    model = "" if scope.several_models else f"model {scope.model}; "
    return [f"Dataset {scope.dataset}; {model}target accuracy {target_for(scope.dataset, inp.target):g}{how}. "
            "Accuracies: mean ± std over seeds; diverged seeds are left out of the means and counted in "
            "*diverged*. Budget: epochs and optimizer steps each run had. Seconds are training time only "
            f"(evaluation excluded). Step-loss spread: std of the logged step losses over the last {LAST_PART:.0%} "
            "of training. sweep s/epoch: median over training epochs of the sweep, wall time while runs shared "
            "the cores. MiB ready + training (floor): the run process's resident memory once the framework, the data "
            "and the model were ready, what training added up to its peak, and in brackets the model's floor in the "
            "run's precision (parameters, gradients, optimizer state, one batch's activations; float64 for fp64 "
            "rows, else float32); GPU: the framework's own peak "
            "counter; medians over seeds.", _timing_text(inp.timing, inp.baseline, inp.rounds, timed)]


def _dataset_parts(scope: Scope, inp: Inputs, out_dir: Path) -> list[Part]:
    """Comparison table, claims and figures of one dataset and model; methods beyond the tutorial last."""
    s, st, c, m = (scope.select(df) for df in (inp.summary, inp.stats, inp.curves, inp.runs.metrics))
    steps = inp.runs.steps[inp.runs.steps["run_id"].isin(set(m["run_id"]))]
    level = 3 if scope.several_models else 2
    parts = [_model_part(scope, inp)] if scope.several_models else []
    tut, beyond = split_methods(s)
    if len(tut):
        parts += _tutorial_parts(scope, inp, tut, st, split_methods(c)[0], split_methods(m)[0], steps, out_dir, level)
    if len(beyond):
        parts.append(_beyond_part(scope, inp, beyond, split_methods(c)[1], out_dir, level))
    return parts


def _comparison(part: Part, scope: Scope, inp: Inputs, s: pd.DataFrame, timed: bool) -> None:
    """The comparison table of ``s``, with the text before it and a note when sweep epochs were timed on a
    busy machine: loud when the speed columns are those sweep times, plain when they come from the timing pass."""
    for text in _table_text(scope, inp, s, timed):
        part.text(text)
    note = contention_note(s)
    if note and timed:  # the speed numbers come from the timing pass: the sweep's busy epochs qualify nothing
        part.text(note)
    elif note:
        part.loud(note)
    part.table(comparison_table(s, timed, inp.baseline))


def _is_timed(inp: Inputs, s: pd.DataFrame) -> bool:
    return inp.timing is not None and bool((s["timing_n"] > 0).any())


def _judge_claims(scope: Scope, inp: Inputs) -> pd.DataFrame:
    """The tutorial's claims judged on one dataset and model (empty without the tutorial's methods)."""
    s, st = scope.select(inp.summary), scope.select(inp.stats)
    tut = split_methods(s)[0]
    if tut.empty:
        return pd.DataFrame()
    found = check_claims(tut, st, inp.rounds if _is_timed(inp, tut) else {}, inp.default_lr, inp.baseline)
    return pd.DataFrame([{"method": x.method, "claim": x.claim, "framework": x.framework,
                          "measured by": x.measure, "verdict": x.verdict, "95% interval": x.interval,
                          "n": x.n, "lr": x.lr, "evidence": x.evidence} for x in found])


def _tutorial_parts(scope: Scope, inp: Inputs, s: pd.DataFrame, st: pd.DataFrame, c: pd.DataFrame,
                    m: pd.DataFrame, steps: pd.DataFrame, out_dir: Path, level: int) -> list[Part]:
    timed = _is_timed(inp, s)
    tag, suffix, ds = scope.tag, scope.suffix, scope.dataset
    table = Part(f"table-{tag}", f"Comparison{suffix}", level=level)
    _comparison(table, scope, inp, s, timed)

    claims = Part(f"claims-{tag}", f"The tutorial's claims, checked{suffix}", level=level)
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
    claims.text("The claims are about the tutorial's six methods only; methods beyond the tutorial never enter them."
                + (f" They are judged for each model separately, here from the runs of {scope.model} only: the "
                   "tutorial made them on its MLP, and a verdict on one model says nothing about another."
                   if scope.several_models else "")
                + (" A framework that ran at several releases is judged at its default one ("
                   + ", ".join(f"{fw} {inp.defaults[fw]}" for fw in framework_order(inp.several)) + "); the others "
                   "are compared with it in the section Versions." if inp.several else ""))
    verdicts = inp.verdicts.get((ds, scope.model), pd.DataFrame())
    claims.table(verdicts)
    inp.claims.append(verdicts.assign(dataset=ds, model=scope.model))

    figs = Part(f"curves-{tag}", f"Curves{suffix}", level=level)
    figs.text("Each framework has one fixed colour in every figure (legend under each figure), drawn widest and "
              "palest first, so where frameworks computed the same numbers the thin line runs inside the wide one. "
              "Other configurations of the same method use other line styles. Wall time is training time only; the "
              "first epoch includes each framework's warm-up (tracing, allocation).")
    caption = ds if not scope.several_models else f"{scope.model}, {ds}"
    _curve_figures(figs, c, s, out_dir, tag, scope.heading(), caption)
    figs.figure(plot_steps(m, steps, out_dir, f"step_loss_{tag}", scope.heading()),
                f"per-step training loss of sgd, minibatch and bgd ({caption}): the jitter claim")
    figs.figure(plot_speed(s, out_dir, f"time_per_step_{tag}", timed, inp.default_lr, scope.heading()),
                f"time per step by method and framework ({caption}): {_speed_caption(s, timed)}")
    figs.figure(plot_startup(st, out_dir, f"startup_{tag}", scope.heading()),
                f"start-up of a run by framework and mode ({caption}), median over runs: {STARTUP_TEXT}")
    return [table, claims, figs]


def _beyond_part(scope: Scope, inp: Inputs, s: pd.DataFrame, c: pd.DataFrame, out_dir: Path, level: int) -> Part:
    """Methods beyond the tutorial's six: table, curves and speed as for the six, no claims."""
    timed = _is_timed(inp, s)
    tag, caption = f"{scope.tag}-beyond", (scope.dataset if not scope.several_models
                                           else f"{scope.model}, {scope.dataset}")
    part = Part(f"beyond-{scope.tag}", f"{BEYOND}{scope.suffix}", level=level)
    methods = method_order(s["optimizer"])
    part.text("Methods the tutorial does not cover, run like its six: the same start, the same batches, the same "
              "timing pass. The tutorial makes no claims about them, so they are in no claim above; compare them "
              "with the six in the tables and figures.")
    part.items([f"{name}: {METHODS[name].formula}" if name in METHODS else f"{name}: not in bench/optimizers.py"
                for name in methods])
    _comparison(part, scope, inp, s, timed)
    heading = scope.heading("beyond the tutorial")
    _curve_figures(part, c, s, out_dir, tag, heading, f"beyond the tutorial, {caption}")
    part.figure(plot_speed(s, out_dir, f"time_per_step_{tag}", timed, inp.default_lr, heading),
                f"time per step, beyond the tutorial ({caption}): {_speed_caption(s, timed)}")
    return part


def _glance_part(scopes: Sequence[Scope], inp: Inputs) -> Part:
    """"At a glance": per dataset and model, each method group's answer (``bench.report.glance``)."""
    part = Part("glance", "At a glance")
    part.text(INTRO if scopes else "No completed or diverged runs: nothing to answer yet.")
    for scope in scopes:
        where = ", ".join(([f"Model {scope.model}"] if scope.several_models else [])
                          + ([scope.dataset] if scope.several_datasets else []))
        s, st = scope.select(inp.summary), scope.select(inp.stats)
        for tutorial, gs, gst in zip((True, False), split_methods(s), split_methods(st), strict=True):
            if gs.empty:
                continue
            group = group_glance(group_title(gs["optimizer"], tutorial, where), gs, gst, inp.rounds,
                                 inp.verdicts.get((scope.dataset, scope.model)) if tutorial else None,
                                 inp.timing is not None, inp.baseline, claims=tutorial,
                                 scaling=inp.scaling.get(scope.model, ()) if tutorial else ())
            part.text(group.title)
            for line in group.before:
                part.text(line)
            part.table(group.table)
            for line in group.after:
                part.text(line)
    if inp.several:  # releases of one framework: the section Versions in a line each
        timed = timed_releases(inp.rounds, inp.several) if inp.timing is not None else pd.DataFrame()
        from bench.parity.section import version_checks  # neutral: reads the parity CSVs

        for line in sentences(releases_of(inp.runs.metrics, inp.several), timed, version_checks(inp.results_dir),
                              inp.timing.rows if inp.timing is not None else None):
            part.text(line.removesuffix(".") + "; section *Versions* below.")
    left_out, warned = len(inp.runs.problems), len(inp.runs.warnings)
    runs = f"{left_out} failed or unfinished run{'s' if left_out != 1 else ''}"
    said = ([f"{runs} left out of every number in the report"] if left_out else []) + (
        [f"{warned} warning{'s' if warned != 1 else ''}"] if warned else [])
    if said:
        part.text("; ".join(said) + ": see *Runs and status* below.")
    return part


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
    part.text("From python -m bench.toy: every method on the tutorial's loss x² and on a 2-D surface, computed "
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


def _models_text(models: Sequence[str], runs: Runs) -> str:
    """The header's word on models: which one, with its layers and size; or that each has a section."""
    if not models:
        return "models: none"
    if len(models) == 1:
        info = runs.models.get(models[0])
        return f"model: {info.text() if info else models[0]}"
    return f"models: {', '.join(models)} (a section each)"


def build_report(results_dir: Path, out_dir: Path, target: float | None = None,
                 extra_modules: Sequence[str] = EXTRA_MODULES, log: Callable[[str], None] = print,
                 baseline: str = BASELINE) -> Path:
    """Load, aggregate, draw and write everything; returns the path of index.html."""
    runs = load_runs(results_dir)
    timing, timing_warnings = load_timing(results_dir)
    timing = settle_timing(timing, runs.metrics)  # a timing pass from before releases: the runs' default ones
    runs.warnings.extend(timing_warnings)
    for warning in runs.warnings:
        log(f"warning: {warning}")
    out_dir.mkdir(parents=True, exist_ok=True)
    for old in list(out_dir.glob("*.png")) + list(out_dir.glob("*.svg")):
        old.unlink()  # figures of configurations no longer present must not linger
    rows = timing.rows if timing is not None else None
    threshold = timing.threshold if timing is not None else CONTENTION_THRESHOLD
    drift = timing.drift if timing is not None else None
    stats = run_stats(runs.metrics, runs.steps, target) if len(runs.metrics) else pd.DataFrame()
    summary = summarize(stats, rows, baseline, threshold, drift) if len(stats) else pd.DataFrame()
    atomic_write_text(out_dir / "summary.csv", summary.to_csv(index=False))
    # Each release of a framework a framework of its own on the page, where several ran ("jax 0.9.2").
    several, defaults = several_versions(runs.metrics), defaults_of(runs.metrics)
    runs.metrics = label(runs.metrics, several, defaults)
    stats, summary = label(stats, several, defaults), label(summary, several, defaults)
    curves = label(aggregate_curves(runs.metrics), several, defaults) if len(runs.metrics) else pd.DataFrame()
    rounds = timing.rounds() if timing is not None else {}
    inp = Inputs(runs, stats, summary, curves, timing, rounds, default_lrs(), target,
                 max_concurrent(runs.info.values()), baseline, several=several, defaults=defaults,
                 results_dir=Path(results_dir))
    inp.scaling = scaling_sentences(results_dir)
    datasets = list(dict.fromkeys(summary["dataset"])) if len(summary) else []
    models = model_order(summary["model"]) if len(summary) else []
    env, notes = environment(runs) if len(runs.metrics) else (pd.DataFrame(), [])

    scopes = [Scope(ds, model, len(datasets) > 1, len(models) > 1) for ds in datasets
              for model in model_order(summary.loc[summary["dataset"] == ds, "model"])]
    for scope in scopes:  # judged once: "At a glance" counts the verdicts its claims table shows
        inp.verdicts[(scope.dataset, scope.model)] = _judge_claims(scope, inp)
    body: list[Part] = []
    for scope in scopes:
        body += _dataset_parts(scope, inp, out_dir)
    # After every model's tables, claims and figures: the sections other modules contribute (the
    # batch-size scaling pass first).
    versions = versions_part(runs.metrics, inp.rounds, rows, Path(results_dir), several, defaults, baseline)
    body += [versions] if versions else []
    body += _extra_parts(results_dir, extra_modules, out_dir, runs.warnings, log)
    toy = _toy_part(results_dir, out_dir)
    body += [toy] if toy else []
    envp = Part("environment", "Environment")
    for note in notes:
        envp.loud(note)
    if len(env):
        envp.table(env)
    # The answer first; then what may qualify it (failed runs, warnings), then every table behind it.
    parts = [_glance_part(scopes, inp), _status_part(stats, runs, notes)] + body + [envp]

    frameworks = framework_order(summary["framework"], baseline) if len(summary) else []
    title = "optbench report: " + methods_title(summary) + (f", {' vs '.join(frameworks)}" if frameworks else "")
    subtitle = (f"Built {time.strftime('%Y-%m-%d %H:%M UTC', time.gmtime())} from {results_dir}; "
                f"datasets: {', '.join(datasets) or 'none'}; " + _models_text(models, runs) + ".")
    if inp.claims:  # the verdicts as data: two reports can be compared claim by claim
        atomic_write_text(out_dir / "claims.csv", pd.concat(inp.claims).to_csv(index=False))
    atomic_write_text(out_dir / "report.md", render_md(title, subtitle, parts, out_dir))
    index = out_dir / "index.html"
    atomic_write_text(index, render_html(title, subtitle, parts, out_dir))
    return index

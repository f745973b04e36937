"""``python -m bench.report.compare A B``: do two benchmark runs tell the same story?

Two result folders of the same sweep (say two ``make bench`` runs on one machine) should agree
on speed within the noise their intervals admit, and no claim's verdict should change. This compares
their timing passes and their checked claims:

* every framework's time-per-step ratio against the baseline framework, per configuration
  (dataset, model, device, method, impl, mode, batch size and the framework's release: a ratio on
  one model or release is never matched with one on another), paired by process slot and round
  inside each run, with its two-level interval (worker processes, then rounds;
  :mod:`bench.report.speed`): the two medians must agree within ``--tolerance`` (default 10 %) and
  the two 95 % intervals must overlap. A framework timed at several releases has its default
  release compared with the baseline, and every other release with its newest, the same way;
* every claim of ``report/claims.csv``, per dataset, model, method and framework: its verdict must
  not change (``claims=changes``, the default); ``claims=flips`` lets a verdict move between
  "inconclusive" and a decision and fails only on "supported" against "not supported";
* when both folders hold a batch-size scaling pass (``scaling/scaling.csv``), every point of it
  (framework, model, mode, batch size): samples per second within ``--tolerance`` with
  overlapping intervals. Two folders that hold only scaling passes are compared on those alone;
* the interpreter's pace of both timing passes (:mod:`bench.report.pace`): when it moved by more than
  5 %, the machine is named as a cause. It changes no verdict: a ratio that moved still disagrees.

Folders written before models were selectable have no model column: their rows are the tutorial's MLP;
folders timed before releases were recorded have no framework_version column: their rows are the
pinned releases.
Folders written before the timing pass used several worker processes have no ``process`` or
``pass`` column: their rows are one pass of one process, and each ratio's interval resamples its
rounds only. A folder timed with ``passes=N`` pools the passes: every pass's processes count.

Prints both tables and exits 0 when everything agrees, 1 when something does not, 2 on bad
input (a folder without a timing pass or a report).
"""
from __future__ import annotations

import sys
from collections.abc import Sequence
from pathlib import Path
from types import SimpleNamespace

import pandas as pd

from bench.cli import entry
from bench.exits import BadInput
from bench.options import Option, Options, choice, number
from bench.report.load import Timing, load_timing
from bench.report.pace import change_text, pace_change, pace_text
from bench.report.speed import (
    BASELINE,
    baseline_twin,
    default_versions,
    key_framework,
    key_version,
    time_ratio,
    version_ratios,
)
from bench.stats import Interval
from models.layers import DEFAULT_MODEL

DECIDED = {"supported", "not supported"}


def timed(results_dir: Path) -> Timing:
    """A folder's timing pass; bad input when it has none."""
    timing, _ = load_timing(results_dir)
    if timing is None or timing.rows is None or timing.rows.empty:
        raise BadInput(f"{results_dir}: no timing pass (timing/timing.csv); run python -m bench.timing {results_dir}")
    return timing


def ratios(results_dir: Path | Timing, baseline: str = BASELINE) -> dict[tuple, Interval]:
    """Configuration (its framework and release included) and what it is divided by -> the time ratio:
    ``key + (baseline,)`` for a framework at its default release against ``baseline`` at its own,
    ``key + ("jax 0.10.2",)`` for another release against its framework's newest. ``results_dir``:
    a folder, or its timing pass already read (:func:`timed`)."""
    timing = results_dir if isinstance(results_dir, Timing) else timed(results_dir)
    rounds = timing.rounds()
    defaults = default_versions(rounds)
    out: dict[tuple, Interval] = {}
    for key in rounds:
        if key_framework(key) == baseline:
            continue
        twin = baseline_twin(key, defaults, baseline)  # the same dataset, model, method, ...: only the framework
        if twin is not None and twin in rounds:
            out[key + (baseline,)] = time_ratio(rounds, key, twin)
    for key, (newest, iv) in version_ratios(rounds).items():
        out[key + (f"{key_framework(newest)} {key_version(newest)}",)] = iv
    return out


def compare_ratios(a: dict[tuple, Interval], b: dict[tuple, Interval], tolerance: float) -> pd.DataFrame:
    rows = []
    for key in sorted(set(a) & set(b), key=str):
        ra, rb = a[key], b[key]
        rel = abs(rb.est - ra.est) / ra.est if ra.est else float("nan")
        rows.append({"configuration": " ".join(str(k) for k in key[:-1]) + f" / {key[-1]}",
                     "ratio A": ra.text(), "ratio B": rb.text(),
                     "difference": rel, "intervals overlap": ra.overlaps(rb),
                     "agree": bool(rel <= tolerance and ra.overlaps(rb))})
    return pd.DataFrame(rows)


def compare_claims(a: Path, b: Path) -> pd.DataFrame:
    keys = ["dataset", "model", "method", "claim", "framework"]
    frames = []
    for path in (a, b):
        file = path / "report" / "claims.csv"
        if not file.is_file():
            raise BadInput(f"{path}: no report/claims.csv; run python -m bench.report {path}")
        claims = pd.read_csv(file)
        claims["model"] = (claims["model"].astype(object).fillna(DEFAULT_MODEL) if "model" in claims.columns
                           else DEFAULT_MODEL)
        frames.append(claims[[*keys, "verdict"]])
    both = frames[0].merge(frames[1], on=keys, suffixes=(" A", " B"))
    both["flip"] = both.apply(lambda r: {r["verdict A"], r["verdict B"]} == DECIDED, axis=1)
    return both


OPTIONS = Options(
    "python -m bench.report.compare",
    """Do two results folders agree? Every time ratio (each framework against the baseline, per
    dataset, model and configuration) within `tolerance` of its twin with overlapping 95 %
    intervals, and no claim of the tutorial changing its verdict (or, with claims=flips, flipping
    between supported and not supported). Exit 0 when they agree, 1 when they do not.""",
    {
        "a": Option(None, "the first results folder (its report/ and timing/ are read)", required=True),
        "b": Option(None, "the second results folder", required=True),
        "tolerance": Option(0.10, "the largest relative difference of two ratios", number(0.0, 10.0)),
        "baseline": Option(BASELINE, "the framework every other one's time is divided by"),
        "claims": Option("changes", "changes: any changed verdict disagrees; flips: only supported against "
                         "not supported does (a move to or from inconclusive is tolerated)",
                         choice("changes", "flips")),
    },
    positional=("a", "b"),
)


def _has(results_dir: Path, part: str) -> bool:
    return (results_dir / part).is_file()


def compare_scaling(a: Path, b: Path, tolerance: float) -> pd.DataFrame:
    """The two folders' batch-size scaling passes, point by point (bench.scaling.analysis.compare_points)."""
    from bench.scaling.analysis import compare_points, summarise
    from bench.scaling.section import load

    points = []
    for folder in (a, b):
        found = load(folder)
        if found is None:
            raise BadInput(f"{folder}: scaling/scaling.csv cannot be read")
        points.append(summarise(*found))
    return pd.DataFrame(compare_points(points[0], points[1], tolerance))


def main(argv: Sequence[str] | None = None) -> int:
    def run() -> int:
        opts = OPTIONS.parse(sys.argv[1:] if argv is None else argv)
        args = SimpleNamespace(a=Path(opts["a"]), b=Path(opts["b"]), tolerance=opts["tolerance"],
                               baseline=opts["baseline"], claims=opts["claims"])
        scaling_csv = "scaling/scaling.csv"
        both_scaling = _has(args.a, scaling_csv) and _has(args.b, scaling_csv)
        timed = not both_scaling or (_has(args.a, "timing/timing.csv") and _has(args.b, "timing/timing.csv"))
        verdicts: list[bool] = []
        said: list[str] = []
        if timed:  # the timing passes and the claims (a folder with neither and no scaling pass: bad input)
            verdicts.append(_compare_timing(args, said))
        if both_scaling:
            verdicts.append(_compare_scaling(args, said))
        ok = all(verdicts)
        print(f"\n{'AGREE' if ok else 'DISAGREE'}: " + "; ".join(said))
        return 0 if ok else 1

    return entry(run)


def _compare_timing(args: SimpleNamespace, said: list[str]) -> bool:
    ta, tb = timed(args.a), timed(args.b)
    ra, rb = ratios(ta, args.baseline), ratios(tb, args.baseline)
    speed = compare_ratios(ra, rb, args.tolerance)
    claims = compare_claims(args.a, args.b)
    releases = any(key[-1] != args.baseline for key in (*ra, *rb))
    with pd.option_context("display.width", 200, "display.max_rows", 500, "display.max_colwidth", 80):
        print(f"time ratios against {args.baseline}"
              + (" (a framework's other releases: against its newest)" if releases else "")
              + f", A = {args.a}, B = {args.b}:")
        print(speed.to_string(index=False, float_format=lambda x: f"{x:.1%}"))
        changed = claims[claims["verdict A"] != claims["verdict B"]]
        print(f"\nclaims: {len(claims)} compared, {len(changed)} changed verdict, "
              f"{int(claims['flip'].sum())} flipped between supported and not supported")
        if len(changed):
            print(changed.to_string(index=False))
    pace_a, pace_b = ta.pace, tb.pace
    moved = pace_change(pace_a, pace_b)
    if moved is not None:
        print(f"\nthe interpreter's pace (the workers' fixed Python loop, median): A {pace_text(pace_a)}; "
              f"B {pace_text(pace_b)}; B/A {1 + moved:.3f}")
    worst = speed["difference"].max() if len(speed) else float("nan")
    counted = claims["flip"] if args.claims == "flips" else claims["verdict A"] != claims["verdict B"]
    machine = change_text(moved)
    if machine:
        said.append(machine)
    said.append(f"largest ratio difference {worst:.1%} (tolerance {args.tolerance:.0%}), "
                f"{int((~speed['agree']).sum()) if len(speed) else 0} ratio(s) outside it or without overlapping "
                f"intervals, {len(changed)} claim verdict(s) changed, {int(claims['flip'].sum())} flipped")
    return bool(len(speed)) and bool(speed["agree"].all()) and not counted.any()


def _compare_scaling(args: SimpleNamespace, said: list[str]) -> bool:
    points = compare_scaling(args.a, args.b, args.tolerance)
    with pd.option_context("display.width", 200, "display.max_rows", 500):
        print(f"\nbatch-size scaling, samples per second, A = {args.a}, B = {args.b}:")
        shown = points.drop(columns=["samples/s A", "samples/s B"], errors="ignore")
        shown = shown.rename(columns={"interval A": "samples/s A (95% CI)", "interval B": "samples/s B (95% CI)"})
        order = ["model", "framework", "mode", "batch_size", "samples/s A (95% CI)", "samples/s B (95% CI)",
                 "difference", "overlap", "agree"]
        print(shown.reindex(columns=order).to_string(index=False, float_format=lambda x: f"{x:.1%}"))
    worst = points["difference"].max() if len(points) else float("nan")
    said.append(f"scaling: largest difference {worst:.1%} over {len(points)} points, "
                f"{int((~points['agree']).sum())} outside the tolerance or without overlapping intervals")
    return bool(len(points)) and bool(points["agree"].all())


if __name__ == "__main__":
    sys.exit(main())

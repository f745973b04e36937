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
input, in one line that names the key, folder or file:

* an empty ``a=`` or ``b=``, a folder that does not exist, a folder without a timing pass or a report;
* a *damaged* file, refused rather than compared in part (leaving even one sample out can alone turn
  AGREE into DISAGREE): a ``timing.csv`` that cannot be read, lacks a column, ends inside a row (the
  pass writes whole files) or holds a sample without a readable batch size, round, process, pass or
  positive time per step (the pass never writes one); a ``timing.json`` that is not a JSON object or
  whose ``drift`` or ``contention_threshold`` is not a number >= 0 (they set every interval); a
  ``claims.csv`` that cannot be read, lacks a column, or holds an empty cell or a verdict that is none
  of supported, not supported and inconclusive;
* nothing to compare: a timing pass without a ratio (only the baseline framework timed, or no baseline
  to divide by), or two folders without a ratio in common.

A ratio or a claim only one folder holds (a model, method or release the other did not time) is not
compared: a warning on stderr says how many and names the first.
"""
from __future__ import annotations

import math
import sys
from collections.abc import Mapping, Sequence
from pathlib import Path
from types import SimpleNamespace

import numpy as np
import pandas as pd

from bench import frameworks
from bench.cli import entry
from bench.exits import BadInput
from bench.options import Option, Options, choice, number, pathname
from bench.report.load import Timing, load_timing, read_table
from bench.report.pace import change_text, pace_change, pace_text
from bench.report.speed import (
    BASELINE,
    SAMPLE_KEYS,
    baseline_twin,
    default_versions,
    key_framework,
    key_version,
    time_ratio,
    version_ratios,
)
from bench.results import read_json
from bench.stats import Interval
from models.layers import DEFAULT_MODEL

DECIDED = {"supported", "not supported"}
VERDICTS = (*sorted(DECIDED), "inconclusive")  # bench.report.claims.VERDICTS, without importing the claims
CLAIM_COLUMNS = ("dataset", "method", "claim", "framework", "verdict")  # "model": from when models came in


def folder(results_dir: Path) -> Path:
    """``results_dir`` when it is a folder; bad input naming it otherwise."""
    results_dir = Path(results_dir)
    if not results_dir.exists():
        raise BadInput(f"{results_dir}: no such folder")
    if not results_dir.is_dir():
        raise BadInput(f"{results_dir}: not a folder (give a results folder)")
    return results_dir


def timed(results_dir: Path) -> Timing:
    """A folder's timing pass; bad input when the folder or its pass is missing, unreadable or damaged."""
    path = folder(results_dir) / "timing" / "timing.csv"
    if not path.is_file():
        raise BadInput(f"{results_dir}: no timing pass ({path} does not exist); run python -m bench.timing "
                       f"{results_dir}")
    again = f"compare refuses a damaged timing pass; time it again (python -m bench.timing {results_dir})"
    timing, warnings = load_timing(results_dir)
    if warnings or timing is None:  # the reader's words: unreadable, not ours, N unreadable samples, no rows
        why = warnings[0].removeprefix("skipped ").removeprefix(f"{path}: ") if warnings else "no rows"
        raise BadInput(f"{path}: {why.removesuffix(' left out')}; {again}")
    if not _ends_a_line(path):  # the pass writes whole files (atomically): its last sample was cut short
        raise BadInput(f"{path}: its last line is cut short (the file ends inside a row); {again}")
    rows = timing.rows
    times = rows["time_per_step_s"].to_numpy(float)
    bad = ~(np.isfinite(times) & (times > 0))
    for col in (c for c in SAMPLE_KEYS if c in rows.columns):  # an empty cell is 1 (bench.report.speed.samples)
        bad |= (rows[col].notna() & pd.to_numeric(rows[col], errors="coerce").isna()).to_numpy()
    if bad.any():
        raise BadInput(f"{path}: {int(bad.sum())} of {len(rows)} samples without a readable process, pass or "
                       f"positive time per step; {again}")
    meta_path = path.with_name("timing.json")
    if meta_path.exists() and read_json(meta_path) is None:
        raise BadInput(f"{meta_path}: not a JSON object; {again}")
    for name, value in _meta_numbers(timing.meta):
        if isinstance(value, bool) or not isinstance(value, int | float) or not math.isfinite(value) or value < 0:
            raise BadInput(f"{meta_path}: {name} is {value!r}, not a number >= 0; {again}")
    return timing


def _ends_a_line(path: Path) -> bool:
    with open(path, "rb") as fh:
        fh.seek(0, 2)
        if fh.tell() == 0:
            return True
        fh.seek(-1, 2)
        return fh.read(1) == b"\n"


def _meta_numbers(meta: Mapping) -> list[tuple[str, object]]:
    """The figures of timing.json that set intervals and samples (what :class:`Timing` reads), by name."""
    found = [("contention_threshold", meta["contention_threshold"])] if "contention_threshold" in meta else []
    drift = meta.get("drift")
    if drift is None:
        return found  # a pass from before the allowances: none
    if not isinstance(drift, Mapping):
        return [*found, ("drift", drift)]
    return found + [(f"drift.{kind}", drift[kind]) for kind in ("time", "ratio") if kind in drift]


def ratio_name(key: tuple) -> str:
    """A ratio's configuration as the table shows it: ``dataset model ... release / divisor``."""
    return " ".join(str(k) for k in key[:-1]) + f" / {key[-1]}"


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
        rows.append({"configuration": ratio_name(key),
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
        claims, why = read_table(file, CLAIM_COLUMNS)
        again = f"run python -m bench.report {path} to write it again"
        if claims is None:
            raise BadInput(f"{file}: {why}; {again}")
        bad = claims[list(CLAIM_COLUMNS)].isna().any(axis=1) | ~claims["verdict"].isin(VERDICTS)
        if bad.any():
            raise BadInput(f"{file}: {int(bad.sum())} of {len(claims)} rows with an empty cell or a verdict that "
                           f"is none of {', '.join(VERDICTS)}; {again}")
        claims["model"] = (claims["model"].astype(object).fillna(DEFAULT_MODEL) if "model" in claims.columns
                           else DEFAULT_MODEL)
        frames.append(claims[[*keys, "verdict"]])
    both = frames[0].merge(frames[1], on=keys, how="outer", suffixes=(" A", " B"), indicator=True)
    for side, where, other in (("left_only", a, b), ("right_only", b, a)):
        alone = both[both["_merge"] == side]
        if len(alone):  # another model, method or dataset, or rows lost from the file: said, never silent
            print(f"warning: {len(alone)} claim(s) of {where} not in {other}, not compared: "
                  + " ".join(str(v) for v in alone.iloc[0][keys]) + (" ..." if len(alone) > 1 else ""),
                  file=sys.stderr, flush=True)
    both = both[both["_merge"] == "both"].drop(columns="_merge").reset_index(drop=True)
    both["flip"] = both.apply(lambda r: {r["verdict A"], r["verdict B"]} == DECIDED, axis=1)
    return both


OPTIONS = Options(
    "python -m bench.report.compare",
    """Do two results folders agree? Every time ratio (each framework against the baseline, per
    dataset, model and configuration) within `tolerance` of its twin with overlapping 95 %
    intervals, and no claim of the tutorial changing its verdict (or, with claims=flips, flipping
    between supported and not supported). Exit 0 when they agree, 1 when they do not, 2 on bad input
    in one line: a missing folder, timing pass or report, nothing to compare (no ratio in a folder or
    none in both), or a damaged timing.csv, timing.json or claims.csv (a sample without a readable
    time, a drift that is not a number, a verdict that is none of the three): refused, never compared in
    part, as dropping samples can alone change the answer. A ratio or claim only one folder has is left out
    with a warning on stderr.""",
    {
        "a": Option(None, "the first results folder (its report/ and timing/ are read)", pathname, required=True),
        "b": Option(None, "the second results folder", pathname, required=True),
        "tolerance": Option(0.10, "the largest relative difference of two ratios", number(0.0, 10.0)),
        "baseline": Option(BASELINE, "the framework every other one's time is divided by",
                           choice(*frameworks.NAMES)),
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
    for where in (a, b):
        found = load(where)
        if found is None:
            raise BadInput(f"{where}: scaling/scaling.csv cannot be read")
        points.append(summarise(*found))
    return pd.DataFrame(compare_points(points[0], points[1], tolerance))


def main(argv: Sequence[str] | None = None) -> int:
    def run() -> int:
        opts = OPTIONS.parse(sys.argv[1:] if argv is None else argv)
        args = SimpleNamespace(a=folder(Path(opts["a"])), b=folder(Path(opts["b"])), tolerance=opts["tolerance"],
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
    for found, timing, where in ((ra, ta, args.a), (rb, tb, args.b)):
        if not found:
            raise BadInput(_no_ratio(timing, where, args.baseline))
    common = set(ra) & set(rb)
    if not common:
        raise BadInput(f"no time ratio in both folders: {len(ra)} in {args.a} (first: {ratio_name(min(ra, key=str))}), "
                       f"{len(rb)} in {args.b} (first: {ratio_name(min(rb, key=str))}), none of the same configuration")
    for found, where, other in ((ra, args.a, args.b), (rb, args.b, args.a)):
        alone = sorted(set(found) - common, key=str)
        if alone:
            print(f"warning: {len(alone)} time ratio(s) of {where} not timed in {other}, not compared: "
                  f"{ratio_name(alone[0])}" + (" ..." if len(alone) > 1 else ""), file=sys.stderr, flush=True)
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


def _no_ratio(timing: Timing, where: Path, baseline: str) -> str:
    """Why a folder's timing pass holds no time ratio, in one line."""
    timed_fws = sorted(set(timing.rows["framework"]))
    path = where / "timing" / "timing.csv"
    if baseline not in timed_fws:
        return (f"{path} has no {baseline} samples to divide by (it timed {', '.join(timed_fws)}): nothing to "
                f"compare; choose baseline= one of those, or time {baseline} too")
    if timed_fws == [baseline]:
        return (f"{path} timed only {baseline}: no time ratio, nothing to compare (sweep and time another "
                "framework too)")
    return (f"{path} timed no configuration in {baseline} and another framework alike (they differ in dataset, "
            "model, method, batch size or device): no time ratio, nothing to compare")


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

"""The comparison report: ``python -m bench.report [results_dir]`` → ``results_dir/report/``.

Reads ``results_dir/runs`` (and ``results_dir/timing`` when a timing pass ran) and writes
``index.html`` (self-contained), ``report.md``, ``summary.csv`` and the figures.
"""
from __future__ import annotations

import argparse
import sys
from collections.abc import Sequence
from pathlib import Path

from bench.cli import entry
from bench.exits import BadInput
from bench.report.aggregate import TARGET_ACC
from bench.report.page import build_report
from bench.report.sections import EXTRA_MODULES
from bench.report.speed import BASELINE


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench.report", description=__doc__.splitlines()[0])
    parser.add_argument("results_dir", nargs="?", default="results", help="the sweep's results_dir (default: results)")
    parser.add_argument("--target-acc", type=float, default=None,
                        help="test accuracy for time-to-target; default per dataset: "
                        + ", ".join(f"{k} {v:g}" for k, v in TARGET_ACC.items()))
    parser.add_argument("--out", default=None, help="output folder (default: <results_dir>/report)")
    parser.add_argument("--no-extra", action="store_true", help="leave out the parity/perf/tuning sections")
    parser.add_argument("--baseline", default=BASELINE,
                        help=f"framework every other one's time is divided by (default: {BASELINE})")
    args = parser.parse_args(argv)
    results_dir = Path(args.results_dir)
    if args.target_acc is not None and not 0 < args.target_acc <= 1:
        raise BadInput(f"--target-acc must be in (0, 1], got {args.target_acc}")
    if not (results_dir / "runs").is_dir():
        raise BadInput(f"no runs folder in {results_dir} (run `python -m bench ...` first, or name the results_dir)")
    if not any(p.is_dir() for p in (results_dir / "runs").iterdir()):
        raise BadInput(f"{results_dir / 'runs'} holds no runs")
    out = Path(args.out) if args.out else results_dir / "report"
    index = build_report(results_dir, out, args.target_acc, () if args.no_extra else EXTRA_MODULES,
                         log=lambda s: print(s, file=sys.stderr), baseline=args.baseline)
    if not (out / "summary.csv").read_text().strip():
        print("warning: no completed or diverged runs; the report lists only what failed", file=sys.stderr)
    print(f"report: {index}")
    return 0


if __name__ == "__main__":
    sys.exit(entry(main))

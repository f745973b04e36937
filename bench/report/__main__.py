"""The comparison report: ``python -m bench.report [results_dir] [key=value ...]`` → ``results_dir/report/``.

Reads ``results_dir/runs`` (and ``results_dir/timing`` when a timing pass ran) and writes
``index.html`` (self-contained), ``report.md``, ``summary.csv`` and the figures. Keys:
``python -m bench.report --help`` (:data:`OPTIONS`).
"""
from __future__ import annotations

import sys
from collections.abc import Sequence
from pathlib import Path

from bench import frameworks
from bench.cli import entry
from bench.exits import BadInput
from bench.options import Option, Options, boolean, choice, nullable, number, optional_pathname, pathname
from bench.report.aggregate import TARGET_ACC
from bench.report.page import build_report
from bench.report.sections import EXTRA_MODULES
from bench.report.speed import BASELINE

OPTIONS = Options(
    "python -m bench.report",
    """The comparison report of a sweep: the status of every run, the comparison table, the
    tutorial's pros/cons table checked claim by claim with intervals, curves against epoch and
    time, time per step from the timing pass, and the parity, perf, tuning and toy sections where
    they have results. Writes index.html (self-contained), report.md, summary.csv and the figures.""",
    {
        "results_dir": Option("results", "the sweep's folder (its runs/ and timing/ are read)", pathname),
        "target_acc": Option(None, "test accuracy for time-to-target, in (0, 1] (null: per dataset, "
                             + ", ".join(f"{k} {v:g}" for k, v in TARGET_ACC.items()) + ")",
                             nullable(number(0.0, 1.0))),
        "out": Option(None, "output folder (null: results_dir/report)", optional_pathname),
        "extra": Option(True, "false: leave out the parity, perf and tuning sections", boolean),
        "baseline": Option(BASELINE, "the framework every other one's time is divided by",
                           choice(*frameworks.NAMES)),
    },
    positional=("results_dir",),
)


def main(argv: Sequence[str] | None = None) -> int:
    args = OPTIONS.parse(sys.argv[1:] if argv is None else argv)
    results_dir = Path(args["results_dir"] or "results")
    if not (results_dir / "runs").is_dir():
        raise BadInput(f"no runs folder in {results_dir} (run `python -m bench ...` first, or name the results_dir)")
    if not any(p.is_dir() for p in (results_dir / "runs").iterdir()):
        raise BadInput(f"{results_dir / 'runs'} holds no runs")
    out = Path(args["out"]) if args["out"] else results_dir / "report"
    index = build_report(results_dir, out, args["target_acc"], EXTRA_MODULES if args["extra"] else (),
                         log=lambda s: print(s, file=sys.stderr), baseline=args["baseline"] or BASELINE)
    if not (out / "summary.csv").read_text().strip():
        print("warning: no completed or diverged runs; the report lists only what failed", file=sys.stderr)
    print(f"report: {index}")
    return 0


if __name__ == "__main__":
    sys.exit(entry(main))

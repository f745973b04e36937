"""``python -m bench.scaling [results_dir] [key=value ...]``: the batch-size scaling pass.

Times one method (``optimizer=adam impl=native`` by default) at each batch size for every
framework and model, in several worker processes per configuration and interleaved rounds, while
holding the machine's CPU lock exclusively; writes ``results_dir/scaling/scaling.csv`` and
``scaling.json`` and prints samples per second with 95 % intervals, the FLOP floor, and where
the frameworks' curves cross. ``bench.report`` draws it; ``bench.report.compare`` compares two.

Keys, their defaults and meanings: ``python -m bench.scaling --help`` (``bench.scaling.core.OPTIONS``).

Exit codes: 0 done, 1 a configuration failed (the others are still written), 2 bad input,
130 interrupted.
"""
from __future__ import annotations

import sys

from bench.cli import entry


def _main() -> int:
    from bench.scaling.core import parse_args, scaling_pass

    argv = sys.argv[1:]
    return scaling_pass(parse_args(argv), " ".join(["python -m bench.scaling", *argv]))


if __name__ == "__main__":
    sys.exit(entry(_main))

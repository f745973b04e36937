"""``python -m bench.timing [results_dir] [key=value ...]``: time the sweep found in results_dir.

Reads ``results_dir/runs/*/run.json`` (finished runs) and times each distinct configuration
(framework x optimizer x impl x mode x batch size x data x model x device x threads; the lr of
one of its runs) in ``processes`` worker processes, started slot by slot, each pinned to its own
core(s), warmed up and timed in ``rounds`` interleaved rounds while the pass holds the machine's
CPU lock exclusively (``bench.timing.protocol``). Writes ``results_dir/timing/timing.csv`` (one
row per configuration, pass, process and round) and ``timing.json``, and prints each
configuration's median time per step and every framework's ratio to torch with 95 % two-level
bootstrap intervals; ``passes=3`` adds the honesty check (``timing/honesty.json``).

Keys, their defaults and meanings: ``python -m bench.timing --help`` (``bench.timing.core.OPTIONS``).

Exit codes: 0 done, 1 a configuration failed (the others are still written), 2 bad input,
130 interrupted. ``--worker <spec json> [<options json>]`` is the worker's entry and ``--probe``
the ASLR probe's (``bench.timing.worker``).
"""
from __future__ import annotations

import sys

from bench.cli import entry


def _main() -> int:
    argv = sys.argv[1:]
    if argv[:1] == ["--worker"] and len(argv) in (2, 3):
        from bench.timing.worker import serve

        return serve(*argv[1:])
    if argv == ["--probe"]:
        from bench.timing.worker import probe

        return probe()
    from bench.timing.core import parse_args, timing_pass

    return timing_pass(parse_args(argv), " ".join(["python -m bench.timing", *argv]))


if __name__ == "__main__":
    sys.exit(entry(_main))

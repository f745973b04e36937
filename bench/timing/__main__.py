"""``python -m bench.timing [results_dir] [key=value ...]``: time the sweep found in results_dir.

Reads ``results_dir/runs/*/run.json`` (finished runs), starts one worker per distinct
configuration (framework x optimizer x impl x mode x batch size x data x device x threads;
the lr of one of its runs), then, holding the machine's CPU lock exclusively, times
``rounds`` interleaved rounds after ``warmup_rounds`` untimed ones. Writes
``results_dir/timing/timing.csv`` (one row per configuration and round) and ``timing.json``,
and prints each configuration's median time per step with its 95 % interval and every
framework's ratio to torch.

Keys, their defaults and meanings: ``python -m bench.timing --help`` (``bench.timing.core.OPTIONS``).

Exit codes: 0 done, 1 a configuration failed (the others are still written), 2 bad input,
130 interrupted. ``--worker <spec json>`` is the worker's entry (``bench.timing.worker``).
"""
from __future__ import annotations

import sys

from bench.cli import entry


def _main() -> int:
    argv = sys.argv[1:]
    if argv[:1] == ["--worker"] and len(argv) == 2:
        from bench.timing.worker import serve

        return serve(argv[1])
    from bench.timing.core import parse_args, timing_pass

    return timing_pass(parse_args(argv), " ".join(["python -m bench.timing", *argv]))


if __name__ == "__main__":
    sys.exit(entry(_main))

"""Exit codes shared by every command of the project, and SIGTERM handled like Ctrl-C.

The parent of a run reads the child's exit code, so both sides must agree on these numbers.
Imports nothing beyond the standard library: ``make gpu-check`` runs without Hydra.
"""
from __future__ import annotations

import signal

EXIT_BAD_INPUT = 2  # one clear line on stderr, nothing trained
EXIT_DIVERGED = 3  # a run child only: the run diverged (a result, not a failure)
EXIT_INTERRUPTED = 130  # Ctrl-C or SIGTERM


def _raise_interrupt(signum: int, frame: object) -> None:
    raise KeyboardInterrupt


def sigterm_as_interrupt() -> None:
    """Make SIGTERM raise KeyboardInterrupt, so a stop by a scheduler or ``kill`` takes the
    same clean-up path (children ended, runs marked) as Ctrl-C.

    SIGINT gets Python's own handler back too: a command started from a non-interactive
    shell's background (``cmd &``, some CI runners) inherits SIGINT ignored, and would then
    not stop on Ctrl-C or ``kill -INT`` at all.
    """
    signal.signal(signal.SIGTERM, _raise_interrupt)
    signal.signal(signal.SIGINT, signal.default_int_handler)


class BadInput(Exception):
    """Bad input of any command: the message is one line meant for the user; exit code 2.

    Every entry point lets it through to ``bench.cli.entry``, which prints ``error: <message>``
    and returns ``EXIT_BAD_INPUT``; nothing has been trained or written by then.
    """

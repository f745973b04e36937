"""What a run and a sweep print while they go, so that a sweep's log stays short enough to read.

A run prints one line per epoch (or a bar on a terminal). A sweep not attached to a terminal
would make that hundreds of lines, so there its runs print only the line that ends them, and
the sweep adds a line of counts, elapsed time and an estimate of the time left, at most every
``REPORT_INTERVAL_S`` seconds and at its end.

Light (standard library only): imported by every run's child and by the sweep's parent.
"""
from __future__ import annotations

import os
import sys
import threading
import time
from collections.abc import Callable
from pathlib import Path
from typing import NamedTuple

# Set by the sweep's job in its run's child: the run is one of a sweep's (its value: the job number).
# An environment variable rather than a spec key: the spec's ``progress`` stays what the user asked for.
SWEEP_JOB_ENV = "OPTBENCH_SWEEP_JOB"
REPORT_INTERVAL_S = 30.0  # the sweep's progress line at most this often; tests monkeypatch it


def resolve_style(style: str, tty: bool | None = None, in_sweep: bool | None = None) -> str:
    """``bar``, ``lines``, ``end`` (only the run's end line) or ``none`` for a ``progress`` value.

    ``auto``: a bar on a terminal; off one, per-epoch lines for a single run and the end line
    alone for a sweep's run. An explicit value is obeyed, in a sweep too.
    """
    if style != "auto":
        return style
    if sys.stdout.isatty() if tty is None else tty:
        return "bar"
    if (SWEEP_JOB_ENV in os.environ) if in_sweep is None else in_sweep:
        return "end"
    return "lines"


def duration(seconds: float) -> str:
    """``42s``, ``3m07s``, ``1h02m``: short enough for a log line, precise enough for a person."""
    s = max(0, round(seconds))
    if s < 60:
        return f"{s}s"
    if s < 3600:
        return f"{s // 60}m{s % 60:02d}s"
    return f"{s // 3600}h{s % 3600 // 60:02d}m"


class Counts(NamedTuple):
    done: int  # finished in any way: ran, skipped (already done) or failed
    failed: int
    running: int
    total: int | None  # None when the sweeper does not know its size up front (Optuna)
    skipped: int = 0

    @property
    def left(self) -> int | None:
        """Runs not started yet."""
        return None if self.total is None else max(0, self.total - self.done - self.running)


def read_counts(pdir: Path) -> Counts:
    """The counts of a sweep's ``.progress`` folder: one ``<job>.<state>`` marker per job, and ``total``."""
    total_file = pdir / "total"
    try:
        total = int(total_file.read_text())
    except (OSError, ValueError):
        total = None
    try:
        names = [p.suffix for p in pdir.iterdir()]
    except OSError:
        names = []
    failed, skipped = names.count(".failed"), names.count(".skipped")
    return Counts(done=names.count(".done") + skipped + failed, failed=failed,
                  running=names.count(".running"), total=total, skipped=skipped)


def eta_s(elapsed: float, counts: Counts) -> float | None:
    """Seconds left: elapsed / runs finished x runs not finished; None until one run ran.

    Skipped runs take no time, so they count neither in the rate nor in what is left; the
    rate already holds the lanes' parallelism, as it is measured on the sweep's own clock.
    """
    ran = counts.done - counts.skipped
    if counts.left is None or ran <= 0:
        return None
    return elapsed / ran * (counts.left + counts.running)


def progress_line(counts: Counts, elapsed: float) -> str:
    left = "?" if counts.left is None else counts.left
    line = (f"[sweep] {counts.done} done ({counts.failed} failed), {counts.running} running, {left} left, "
            f"{duration(elapsed)} elapsed")
    if counts.running or counts.left:
        eta = eta_s(elapsed, counts)
        line += ", ETA unknown" if eta is None else f", ETA {duration(eta)}"
    return line


class SweepReporter:
    """Prints the sweep's progress line from its parent: when the counts changed, at most every
    ``REPORT_INTERVAL_S`` seconds, and once more at the end.

    One printer in the parent rather than one per job: the lanes' workers would each print on
    every start and end, with no shared clock to throttle them by (nor a console, under Slurm).
    """

    def __init__(self, pdir: Path, clock: Callable[[], float] = time.monotonic,
                 out: Callable[[str], None] | None = None) -> None:
        self.pdir, self.clock = pdir, clock
        self.out = out or (lambda line: print(line, flush=True))
        self.start = self.last = clock()  # nothing worth saying in the first interval
        self.said: Counts | None = None
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None

    def tick(self) -> bool:
        """Print the line if it is due and says something new; True when printed."""
        now = self.clock()
        if now - self.last < REPORT_INTERVAL_S:
            return False
        counts = read_counts(self.pdir)
        if counts == self.said:
            return False
        self.out(progress_line(counts, now - self.start))
        self.last, self.said = now, counts
        return True

    def finish(self) -> Counts:
        """Stop the thread; print the final line whatever the interval; return the final counts."""
        self._stop.set()
        if self._thread is not None:
            self._thread.join(timeout=5)
        counts = read_counts(self.pdir)
        self.out(progress_line(counts, self.clock() - self.start))
        return counts

    def run_in_background(self, poll_s: float = 1.0) -> None:
        """Tick every ``poll_s`` seconds in a daemon thread until :meth:`finish`."""
        def loop() -> None:
            while not self._stop.wait(poll_s):
                try:
                    self.tick()
                except OSError:  # the folder went away under us: the sweep is ending anyway
                    pass
        self._thread = threading.Thread(target=loop, name="sweep-progress", daemon=True)
        self._thread.start()

"""One machine-wide CPU lock, so timings are taken on a machine no run of ours is using.

Every training child of a sweep holds it SHARED while it trains (parallel lanes and sweeps
run side by side as before); the timing pass (``python -m bench.timing``) holds it EXCLUSIVE
while it measures. So a timing pass waits until no run trains, runs wait while a timing pass
measures, and two timing passes never overlap. Whoever waits prints one line and goes on.

The lock is ``flock`` on a file under a fixed per-user path (``OPTBENCH_CPU_LOCK`` overrides
it, for tests); the kernel drops it when its holder dies, so a killed process cannot leave the
machine locked. ``flock`` is not fair: two lanes that start runs back to back could hold the
shared lock forever and starve the timing pass. So a second file is a turnstile: the timing
pass takes it exclusive before it waits for the runs to drain, and a run passes through it
(shared, released at once) before it takes the CPU lock. A run that starts while a timing
pass waits therefore waits too.
"""
from __future__ import annotations

import fcntl
import os
import sys
import tempfile
from pathlib import Path
from typing import IO, Any

LOCK_ENV = "OPTBENCH_CPU_LOCK"


def lock_path() -> Path:
    """``$OPTBENCH_CPU_LOCK``, else ``<tmp>/optbench-<uid>/cpu.lock``."""
    override = os.environ.get(LOCK_ENV)
    if override:
        return Path(override)
    return Path(tempfile.gettempdir()) / f"optbench-{os.getuid()}" / "cpu.lock"


class CpuLock:
    """``with CpuLock(exclusive, who):`` holds the machine's CPU lock for the block."""

    def __init__(self, exclusive: bool, who: str) -> None:
        self.exclusive, self.who = exclusive, who
        self._file: IO[Any] | None = None
        self._gate: IO[Any] | None = None
        self._told = False

    def _take(self, fh: IO[Any], mode: int, other: str, path: Path) -> None:
        try:
            fcntl.flock(fh, mode | fcntl.LOCK_NB)
        except BlockingIOError:
            if not self._told:  # one line per wait, not one per file
                print(f"[wait] {self.who}: {other} (CPU lock {path}); waiting", file=sys.stderr, flush=True)
                self._told = True
            fcntl.flock(fh, mode)

    def acquire(self) -> None:
        path = lock_path()
        path.parent.mkdir(parents=True, exist_ok=True)
        gate_path = path.with_name(path.name + ".gate")
        try:
            self._gate = open(gate_path, "a")
            if self.exclusive:  # hold the turnstile: no new run starts while we wait and measure
                self._take(self._gate, fcntl.LOCK_EX, "another timing pass is measuring", path)
            else:  # pass the turnstile, or wait there while a timing pass holds it
                self._take(self._gate, fcntl.LOCK_SH, "a timing pass is measuring", path)
                self._gate.close()
                self._gate = None
            self._file = open(path, "a")
            other = "runs are training" if self.exclusive else "a timing pass is measuring"
            self._take(self._file, fcntl.LOCK_EX if self.exclusive else fcntl.LOCK_SH, other, path)
        except BaseException:  # Ctrl-C while waiting: let go of whatever is held
            self.release()
            raise

    def release(self) -> None:
        for name in ("_file", "_gate"):
            fh = getattr(self, name)
            if fh is not None:
                fcntl.flock(fh, fcntl.LOCK_UN)
                fh.close()
                setattr(self, name, None)

    def __enter__(self) -> CpuLock:
        self.acquire()
        return self

    def __exit__(self, *exc: object) -> None:
        self.release()

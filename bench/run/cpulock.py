"""One machine-wide CPU lock, so timings are taken on a machine no run of ours is using.

Every training child of a sweep holds it SHARED while it trains (parallel lanes and sweeps
run side by side as before); the timing pass (``python -m bench.timing``) holds it EXCLUSIVE
while it measures. So a timing pass waits until no run trains, runs wait while a timing pass
measures, and two timing passes never overlap. Whoever waits prints one line and goes on.

The lock is ``flock`` on a file under a fixed per-user path (``OPTBENCH_CPU_LOCK`` overrides
it, for tests); the kernel drops it when its holder dies, so a killed process cannot leave the
machine locked.
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

    def acquire(self) -> None:
        path = lock_path()
        path.parent.mkdir(parents=True, exist_ok=True)
        self._file = open(path, "a")
        mode = fcntl.LOCK_EX if self.exclusive else fcntl.LOCK_SH
        try:
            fcntl.flock(self._file, mode | fcntl.LOCK_NB)
        except BlockingIOError:
            other = "runs are training" if self.exclusive else "a timing pass is measuring"
            print(f"[wait] {self.who}: {other} (CPU lock {path}); waiting", file=sys.stderr, flush=True)
            try:
                fcntl.flock(self._file, mode)
            except BaseException:  # Ctrl-C while waiting: nothing held, nothing to undo
                self.release()
                raise

    def release(self) -> None:
        if self._file is not None:
            fcntl.flock(self._file, fcntl.LOCK_UN)
            self._file.close()
            self._file = None

    def __enter__(self) -> CpuLock:
        self.acquire()
        return self

    def __exit__(self, *exc: object) -> None:
        self.release()

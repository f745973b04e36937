"""The machine-wide CPU lock: runs share it, a timing pass gets it alone, and lanes that
start runs back to back cannot starve the timing pass (flock alone is not fair)."""
from __future__ import annotations

import threading
import time
from pathlib import Path

import pytest

from bench.run.cpulock import LOCK_ENV, CpuLock


@pytest.fixture(autouse=True)
def private_lock(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv(LOCK_ENV, str(tmp_path / "cpu.lock"))


def test_back_to_back_runs_do_not_starve_a_timing_pass() -> None:
    """Two lanes, each starting a new 'run' the moment its last ends, overlap all the time:
    the shared lock is never free. The timing pass must still get in, and while it holds the
    lock no run may hold it."""
    stop = threading.Event()
    holders, overlap = [0], []
    guard = threading.Lock()

    def lane(offset: float) -> None:
        time.sleep(offset)
        while not stop.is_set():
            with CpuLock(exclusive=False, who="run"):
                with guard:
                    holders[0] += 1
                time.sleep(0.05)
                with guard:
                    holders[0] -= 1

    lanes = [threading.Thread(target=lane, args=(k * 0.025,), daemon=True) for k in range(2)]
    for t in lanes:
        t.start()
    time.sleep(0.3)
    t0 = time.monotonic()
    with CpuLock(exclusive=True, who="timing pass"):
        waited = time.monotonic() - t0
        for _ in range(10):
            with guard:
                overlap.append(holders[0])
            time.sleep(0.02)
    stop.set()
    for t in lanes:
        t.join(timeout=5)
    assert waited < 2.0  # measured without the turnstile: 6.5 s, and unbounded in principle
    assert overlap == [0] * 10


def test_runs_wait_while_a_timing_pass_holds_the_lock() -> None:
    started = []
    with CpuLock(exclusive=True, who="timing pass"):
        t = threading.Thread(target=lambda: (CpuLock(False, "run").acquire(), started.append(time.monotonic())),
                             daemon=True)
        t.start()
        time.sleep(0.3)
        assert started == []
        released = time.monotonic()
    t.join(timeout=5)
    assert started and started[0] >= released


def test_two_runs_share_the_lock() -> None:
    with CpuLock(exclusive=False, who="a"):
        t0 = time.monotonic()
        with CpuLock(exclusive=False, who="b"):
            assert time.monotonic() - t0 < 1.0

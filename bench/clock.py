"""Clocks for one timed stretch of work: wall time, this process's CPU time, and how much of the
machine other processes used meanwhile (``contention``).

Framework-neutral and Linux-first: the machine's and this process's CPU use come from
``/proc/stat`` and ``/proc/self/stat``; where ``/proc`` is absent the contention is NaN and
the other clocks still work. The parsers are pure functions of the files' text, so they are
tested on fake text.
"""
from __future__ import annotations

import math
import os
import time
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any, NamedTuple

PROC = Path("/proc")
# Above this share of the machine's CPU taken by other processes, a timing is "under
# contention": the timing pass counts such samples, the report leaves them out of every
# interval and says how many. One core busy elsewhere on a 2-core box is 0.5.
CONTENTION_THRESHOLD = 0.10
# The between-run allowances the timing and scaling passes give their intervals by default (bench.stats.widen): the
# relative standard deviation of a configuration's time per step, and of a time ratio, from one pass to
# the next on one machine beyond what a pass's own processes show. Measured with `python -m bench.timing
# passes=3` on the 2-core AMD EPYC VMs this project is built on (docs/PERFORMANCE.md); another machine
# measures its own and passes drift_time= / drift_ratio=.
DRIFT = {"time": 0.025, "ratio": 0.015}


def drift_of(meta: Mapping[str, Any]) -> dict[str, float]:
    """The between-run allowances a pass recorded (timing.json or scaling.json ``drift``: ``time`` and
    ``ratio``); 0 where it recorded none (a pass from before them, whose intervals were its own)."""
    given = meta.get("drift")
    out = {}
    for kind in ("time", "ratio"):
        try:
            value = float(given.get(kind, 0.0)) if isinstance(given, Mapping) else 0.0
        except (TypeError, ValueError):
            value = 0.0
        out[kind] = value if math.isfinite(value) and value > 0 else 0.0
    return out


class MachineCpu(NamedTuple):
    """Cumulative jiffies of all CPUs since boot: busy (not idle, not waiting for I/O) and total."""

    busy: int
    total: int


def parse_proc_stat(text: str) -> MachineCpu:
    """The aggregate ``cpu`` line of ``/proc/stat``.

    Fields: user nice system idle iowait irq softirq steal [guest guest_nice]. Guest time is
    already counted in user/nice, so only the first eight fields add up to the total.
    """
    for line in text.splitlines():
        parts = line.split()
        if parts and parts[0] == "cpu":
            return _jiffies(parts[1:])
    raise ValueError("no aggregate 'cpu' line in /proc/stat")


def parse_proc_stat_per_cpu(text: str) -> dict[int, MachineCpu]:
    """The ``cpuN`` lines of ``/proc/stat``: each CPU's busy and total jiffies."""
    out: dict[int, MachineCpu] = {}
    for line in text.splitlines():
        parts = line.split()
        if parts and parts[0].startswith("cpu") and parts[0][3:].isdigit():
            out[int(parts[0][3:])] = _jiffies(parts[1:])
    return out


def _jiffies(fields: list[str]) -> MachineCpu:
    values = [int(v) for v in fields[:8]]
    values += [0] * (8 - len(values))
    total = sum(values)
    return MachineCpu(total - values[3] - values[4], total)


def parse_self_stat(text: str) -> int:
    """utime + stime (jiffies, all threads) from ``/proc/<pid>/stat``.

    The command name (field 2) may hold spaces and parentheses, so fields are counted after
    its last ``)``: utime and stime are fields 14 and 15 of the line.
    """
    rest = text[text.rindex(")") + 2:].split()
    return int(rest[11]) + int(rest[12])


def contention_share(before: MachineCpu, after: MachineCpu, own_before: int, own_after: int) -> float:
    """Share (0..1) of the machine's CPU capacity used by other processes between two readings."""
    total = after.total - before.total
    if total <= 0:
        return math.nan
    others = (after.busy - before.busy) - (own_after - own_before)
    return min(1.0, max(0.0, others / total))


def _read(path: Path) -> str | None:
    try:
        return path.read_text()
    except OSError:
        return None


@dataclass(frozen=True)
class Snapshot:
    """Every clock read at one instant; ``later.since(earlier)`` gives the stretch between."""

    wall: float
    cpu: float  # time.process_time(): this process, all threads
    machine: MachineCpu | None
    own: int | None  # this process's jiffies, the unit of ``machine``

    @classmethod
    def take(cls, proc: Path = PROC) -> Snapshot:
        machine_text, own_text = _read(proc / "stat"), _read(proc / "self" / "stat")
        machine = parse_proc_stat(machine_text) if machine_text else None
        own = parse_self_stat(own_text) if own_text else None
        return cls(time.perf_counter(), time.process_time(), machine, own)

    def since(self, earlier: Snapshot) -> Usage:
        if None in (self.machine, earlier.machine, self.own, earlier.own):
            share = math.nan
        else:
            share = contention_share(earlier.machine, self.machine, earlier.own, self.own)
        return Usage(self.wall - earlier.wall, self.cpu - earlier.cpu, share)


class Usage(NamedTuple):
    """One timed stretch: wall seconds, this process's CPU seconds, others' share of the CPUs."""

    wall_s: float
    cpu_s: float
    contention: float


def loadavg() -> list[float] | None:
    """The 1/5/15-minute load averages, or None where the system has none."""
    try:
        return [round(x, 2) for x in os.getloadavg()]
    except OSError:
        return None

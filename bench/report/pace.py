"""The interpreter's pace beside every timed sample: was the machine the same from slot to slot, and
from one run to the next? (pure)

Every worker of the timing pass and of the scaling pass times a fixed pure-Python loop right after
each sample, outside the sample's clock (``pace_s`` in timing.csv and scaling.csv;
:func:`bench.timing.worker.pace`). It measures how fast the interpreter ran on that core at that
moment. A time per step that is mostly Python dispatch (torch or TensorFlow at batch 1: tens of
thousands of interpreter calls a second) moves with it; a compiled epoch (JAX's one program per
epoch) need not. A machine that slows interpreted code alone (a neighbour on the host's shared
caches, say) changes a ratio of the two kinds without any contention a VM can see, and a
slow-slot test that asks every framework to slow together misses it.

Two uses:

* a process slot whose workers ran the loop :data:`bench.report.speed.SLOW_SLOT` times or more
  slower than the same framework's workers in the pass's other slots is a slow slot
  (:func:`pace_rounds` feeds :func:`bench.report.speed.slow_slots`), left out of every interval like
  a contended sample;
* ``bench.report.compare`` prints both runs' pace per framework, and names the machine when it moved
  (:func:`pace_change`): a ratio between dispatch-bound and compiled work is then expected to move
  with it, and no protocol inside one run can hold it.

Each framework's workers are compared with its own (a framework's threads, its allocator, even
its Python release set the loop's speed in its processes). Files from before the pace have no
``pace_s`` column, or empty cells: nothing is found or said for them.
"""
from __future__ import annotations

from collections.abc import Mapping

import numpy as np
import pandas as pd

COLUMN = "pace_s"
WORKER_CLASS = ("framework", "framework_version")  # whose workers' paces are compared with each other
SAMPLE = ("pass", "process", "round")
MOVED = 0.05  # two runs' paces further apart than this: the machine is named as a cause


def _classes(frame: pd.DataFrame) -> list[str]:
    return [c for c in WORKER_CLASS if c in frame.columns]


def _timed(frame: pd.DataFrame | None) -> pd.DataFrame:
    if frame is None or frame.empty or COLUMN not in frame.columns:
        return pd.DataFrame()
    paced = frame.assign(**{COLUMN: pd.to_numeric(frame[COLUMN], errors="coerce")})
    return paced[paced[COLUMN] > 0]


def pace_rounds(frame: pd.DataFrame) -> dict[tuple, pd.Series]:
    """Worker class (framework, release) -> its pace indexed by (pass, process, round), the median
    over the configurations it timed in that sample; empty for a file without paces. ``frame``: clean
    samples with ``pass`` and ``process`` (:func:`bench.report.speed.samples`)."""
    timed = _timed(frame)
    if timed.empty:
        return {}
    by = _classes(timed)
    out = {}
    for cls, grp in timed.fillna({c: "" for c in by}).groupby(by, sort=False):
        key = cls if isinstance(cls, tuple) else (cls,)
        out[("pace",) + key] = grp.groupby(list(SAMPLE))[COLUMN].median()
    return out


def pace_medians(frame: pd.DataFrame | None) -> dict[str, float]:
    """Framework (with its release when the file has several) -> the median pace in seconds over the
    samples given; {} for a file without paces."""
    timed = _timed(frame)
    if timed.empty:
        return {}
    by = _classes(timed)
    several = "framework_version" in by and timed.groupby("framework")["framework_version"].nunique().max() > 1
    cols = by if several else ["framework"]
    out = {}
    for cls, grp in timed.fillna({c: "" for c in cols}).groupby(cols, sort=True):
        name = " ".join(str(c) for c in cls if c != "") if isinstance(cls, tuple) else str(cls)
        out[name] = float(grp[COLUMN].median())
    return out


def pace_change(a: Mapping[str, float], b: Mapping[str, float]) -> float | None:
    """How much slower B's interpreter ran than A's (0.25: a quarter slower): the median over the
    frameworks both timed of B's pace over A's, minus one; None when either has none."""
    shared = [k for k in a if k in b and a[k] > 0]
    if not shared:
        return None
    return float(np.median([b[k] / a[k] for k in shared])) - 1.0


def pace_text(medians: Mapping[str, float]) -> str:
    """"torch 2.05 ms, tensorflow 2.31 ms" (each framework's median pace) or ""."""
    return ", ".join(f"{k} {v * 1e3:.2f} ms" for k, v in medians.items())


def change_text(change: float | None, tolerance: float = MOVED) -> str:
    """What two runs' pace says about the machine, or "" when it did not move beyond ``tolerance``."""
    if change is None or abs(change) <= tolerance:
        return ""
    way = "slower" if change > 0 else "faster"
    return (f"the machine ran Python {abs(change):.0%} {way} in B than in A (the workers' pace loop): "
            "times that are mostly Python dispatch move with it and compiled ones need not, so ratios "
            "between the two kinds are expected to move; this is the machine, not the harness")

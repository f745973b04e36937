"""Time per step and time ratios with 95 % intervals, from the timing pass (pure).

The timing pass (``python -m bench.timing``) times each configuration for several rounds,
interleaved A B C … A B C … after a warm-up, so that the machine's drift hits every
configuration alike; ``results_dir/timing/timing.csv`` has one row per configuration and round.
Sweep epoch times are not used for speed verdicts: a sweep's runs share the cores.

A round (or a sweep epoch) during which other processes used more than
``CONTENTION_THRESHOLD`` of the machine's CPU is left out of every interval and counted.
"""
from __future__ import annotations

import math
from collections.abc import Mapping, Sequence

import numpy as np
import pandas as pd

from bench.clock import CONTENTION_THRESHOLD
from bench.frameworks import BASE
from bench.stats import NAN_INTERVAL, Interval, median_ci, ratio_ci
from models.layers import DEFAULT_MODEL

BASELINE = BASE  # the framework every other one is compared with, unless told otherwise
# lr does not change the time of a step, so it is not part of a timing configuration; the model does.
TIMING_KEYS = ("dataset", "model", "device", "framework", "optimizer", "impl", "mode", "batch_size")
TIMING_COLUMNS = (*TIMING_KEYS, "round", "time_per_step_s")
_FW = TIMING_KEYS.index("framework")


def contended(contention: pd.Series | Sequence[float], threshold: float = CONTENTION_THRESHOLD) -> np.ndarray:
    """True where the share of CPU taken by others is known and above ``threshold``."""
    c = pd.to_numeric(pd.Series(contention, dtype="object"), errors="coerce").to_numpy(float)
    return np.nan_to_num(c, nan=0.0) > threshold


def config_key(row: Mapping) -> tuple:
    """The timing configuration a summary row or timing row belongs to (no model: the tutorial's MLP)."""
    def value(k: str) -> object:
        if k == "batch_size":
            return int(row[k])
        if k == "model":
            got = row.get("model") if hasattr(row, "get") else row[k]
            return DEFAULT_MODEL if got is None or got != got or got == "" else str(got)
        return str(row[k])
    return tuple(value(k) for k in TIMING_KEYS)


def with_framework(key: tuple, framework: str) -> tuple:
    """The same configuration key in another framework."""
    return key[:_FW] + (framework,) + key[_FW + 1:]


def key_framework(key: tuple) -> str:
    return key[_FW]


def round_times(timing: pd.DataFrame) -> dict[tuple, pd.Series]:
    """Configuration -> clean time per step by round number (contended rounds dropped).

    Several rows of one configuration in one round (several lr values) fold into their median.
    """
    if timing is None or timing.empty:
        return {}
    clean = timing[~contended(timing.get("contention", pd.Series(np.nan, index=timing.index)))]
    out: dict[tuple, pd.Series] = {}
    for _, grp in clean.groupby(list(TIMING_KEYS), sort=False):
        key = config_key(grp.iloc[0])
        out[key] = grp.groupby("round")["time_per_step_s"].median().dropna()
    return out


def timing_table(timing: pd.DataFrame) -> pd.DataFrame:
    """One row per configuration: median time per step with its interval, clean and contended rounds."""
    cols = [*TIMING_KEYS, "time_per_step_s", "time_per_step_lo", "time_per_step_hi", "timing_n",
            "timing_rounds", "timing_contended"]
    if timing is None or timing.empty:
        return pd.DataFrame(columns=cols)
    clean = round_times(timing)
    flags = contended(timing.get("contention", pd.Series(np.nan, index=timing.index)))
    rows = []
    for _, grp in timing.assign(_bad=flags).groupby(list(TIMING_KEYS), sort=False):
        key = config_key(grp.iloc[0])
        ci = median_ci(clean.get(key, pd.Series(dtype=float)).to_numpy(float))
        rows.append({**dict(zip(TIMING_KEYS, key, strict=True)), "time_per_step_s": ci.est,
                     "time_per_step_lo": ci.lo, "time_per_step_hi": ci.hi, "timing_n": ci.n,
                     "timing_rounds": int(grp["round"].nunique()),
                     "timing_contended": int(grp.groupby("round")["_bad"].any().sum())})
    return pd.DataFrame(rows, columns=cols)


def time_ratio(rounds: Mapping[tuple, pd.Series], num: tuple, den: tuple, scale: float = 1.0) -> Interval:
    """Time of ``num`` over time of ``den`` (times ``scale``), paired by round; NaN interval if unknown.

    Only rounds where both configurations were timed clean are paired: both were measured back
    to back, so the machine's drift cancels in each ratio.
    """
    a, b = rounds.get(num), rounds.get(den)
    if a is None or b is None:
        return NAN_INTERVAL
    both = a.index.intersection(b.index)
    if len(both) == 0:
        return NAN_INTERVAL
    ci = ratio_ci(a[both].to_numpy(float), b[both].to_numpy(float))
    return Interval(ci.est * scale, ci.lo * scale, ci.hi * scale, ci.n)


def baseline_ratios(summary: pd.DataFrame, rounds: Mapping[tuple, pd.Series], baseline: str = BASELINE
                    ) -> pd.DataFrame:
    """Per summary row: its time per step over the baseline framework's, same configuration otherwise.

    Columns ``time_ratio_vs_<baseline>``, ``_lo``, ``_hi``, ``_n``; the baseline's own rows get 1.
    """
    name = f"time_ratio_vs_{baseline}"
    out = []
    for _, row in summary.iterrows():
        key = config_key(row)
        base = with_framework(key, baseline)
        ci = time_ratio(rounds, key, base)
        out.append({name: ci.est, f"{name}_lo": ci.lo, f"{name}_hi": ci.hi, f"{name}_n": ci.n})
    return pd.DataFrame(out, index=summary.index, columns=[name, f"{name}_lo", f"{name}_hi", f"{name}_n"])


def interval_text(ci: Interval, unit_scale: float = 1.0, digits: int = 3) -> str:
    """``1.23 [1.10, 1.40]``; ``1.23 (no interval)``; ``n/a``."""
    if not math.isfinite(ci.est):
        return "n/a"
    est = f"{ci.est * unit_scale:.{digits}g}"
    if not ci.known:
        return f"{est} (no interval)"
    return f"{est} [{ci.lo * unit_scale:.{digits}g}, {ci.hi * unit_scale:.{digits}g}]"

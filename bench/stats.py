"""Uncertainty for every number that is compared: medians and ratios with bootstrap intervals.

Framework-neutral and pure: samples in, intervals out. The resampling is
``scipy.stats.bootstrap`` (BCa where it is defined, percentile otherwise), seeded so that the
same samples always give the same interval.
"""
from __future__ import annotations

import math
from collections.abc import Callable, Sequence
from typing import NamedTuple

import numpy as np
from scipy import stats as _scipy_stats

LEVEL = 0.95
N_RESAMPLES = 4999
SEED = 12345  # fixed: an interval is a property of the samples, not of the call


class Interval(NamedTuple):
    """A point estimate with its confidence interval; ``n`` samples stand behind it."""

    est: float
    lo: float
    hi: float
    n: int

    @property
    def known(self) -> bool:
        """True when the interval exists (at least two finite samples)."""
        return math.isfinite(self.lo) and math.isfinite(self.hi)

    def clears(self, threshold: float) -> bool:
        """The whole interval lies above ``threshold``."""
        return self.known and self.lo > threshold

    def below(self, threshold: float) -> bool:
        """The whole interval lies below ``threshold``."""
        return self.known and self.hi < threshold

    def overlaps(self, other: Interval) -> bool:
        return self.known and other.known and self.lo <= other.hi and other.lo <= self.hi

    def text(self, digits: int = 3) -> str:
        """``1.23 [1.10, 1.40] (n=7)``, or ``1.23 (n=1, no interval)``."""
        if not math.isfinite(self.est):
            return "n/a"
        if not self.known:
            return f"{self.est:.{digits}g} (n={self.n}, no interval)"
        return f"{self.est:.{digits}g} [{self.lo:.{digits}g}, {self.hi:.{digits}g}] (n={self.n})"


NAN_INTERVAL = Interval(math.nan, math.nan, math.nan, 0)


def _finite(samples: Sequence[float]) -> np.ndarray:
    arr = np.asarray(samples, dtype=float).ravel()
    return arr[np.isfinite(arr)]


def interval(samples: Sequence[float], statistic: Callable[[np.ndarray], float] = np.median,
             level: float = LEVEL) -> Interval:
    """``statistic`` of the finite samples with a bootstrap interval at ``level``.

    One sample: the estimate with no interval. All samples equal: a zero-width interval.
    """
    x = _finite(samples)
    if len(x) == 0:
        return NAN_INTERVAL
    est = float(statistic(x))
    if len(x) == 1:
        return Interval(est, math.nan, math.nan, 1)
    if np.all(x == x[0]):
        return Interval(est, est, est, len(x))
    res = None
    for method in ("BCa", "percentile"):
        try:
            res = _scipy_stats.bootstrap(
                (x,), lambda s, axis=-1: np.apply_along_axis(statistic, axis, s), vectorized=True,
                confidence_level=level, n_resamples=N_RESAMPLES, method=method,
                random_state=np.random.default_rng(SEED))
        except (ValueError, RuntimeWarning):
            continue
        lo, hi = float(res.confidence_interval.low), float(res.confidence_interval.high)
        if math.isfinite(lo) and math.isfinite(hi):
            return Interval(est, min(lo, est), max(hi, est), len(x))
    return Interval(est, math.nan, math.nan, len(x))


def median_ci(samples: Sequence[float], level: float = LEVEL) -> Interval:
    """Median with its bootstrap interval: for times (robust to a stray slow round)."""
    return interval(samples, np.median, level)


def mean_ci(samples: Sequence[float], level: float = LEVEL) -> Interval:
    """Mean with its bootstrap interval: for accuracies over seeds."""
    return interval(samples, np.mean, level)


def ratio_ci(num: Sequence[float], den: Sequence[float], level: float = LEVEL, paired: bool = True) -> Interval:
    """Median of the paired ratios ``num[i] / den[i]`` with its interval.

    Pairs are rounds of an interleaved timing pass: both were measured back to back, so the
    machine's drift cancels in each ratio. Unpaired (different lengths, or ``paired=False`` for
    samples taken one after the other): the ratio of the two medians, with an interval from
    resampling each side independently.
    """
    a, b = np.asarray(num, dtype=float).ravel(), np.asarray(den, dtype=float).ravel()
    if paired and len(a) == len(b):
        ok = np.isfinite(a) & np.isfinite(b) & (b > 0)
        return median_ci(a[ok] / b[ok], level)
    a, b = _finite(a), _finite(b)
    b = b[b > 0]
    if len(a) == 0 or len(b) == 0:
        return NAN_INTERVAL
    est = float(np.median(a) / np.median(b))
    if len(a) < 2 or len(b) < 2:
        return Interval(est, math.nan, math.nan, min(len(a), len(b)))
    res = _scipy_stats.bootstrap(
        (a, b), lambda x, y, axis=-1: np.median(x, axis=axis) / np.median(y, axis=axis), vectorized=True,
        confidence_level=level, n_resamples=N_RESAMPLES, method="percentile",
        random_state=np.random.default_rng(SEED))
    return Interval(est, float(res.confidence_interval.low), float(res.confidence_interval.high),
                    min(len(a), len(b)))

"""Uncertainty for every number that is compared: medians and ratios with bootstrap intervals.

Framework-neutral and pure: samples in, intervals out, seeded so that the same samples always
give the same interval.

Samples of one level (seeds, the rounds of one process) are resampled by
``scipy.stats.bootstrap`` (BCa where it is defined, percentile otherwise). Samples that come in
groups (the timing pass's rounds, several from each worker process) are resampled on two
levels: the groups with replacement, then the samples within each drawn group with
replacement (:func:`two_level`), so what differs between processes (address-space layout,
allocator state, the core, the thread pools' start) widens the interval as much as it moves
the median. Its interval is the percentile interval of the resampled medians (BCa's
acceleration has no agreed form for two-level data, and the percentile interval needs none),
widened where needed to the classical random-effects interval (:func:`between_groups`): a
resampling interval cannot reach beyond what the groups span, so with G groups whose spread
dominates it covers at most 1 - 2 * 0.5**G of the time (75 % with 3 groups); Student's t over
the groups' medians does not have that ceiling. More processes, not more rounds, are what
narrow it honestly.
"""
from __future__ import annotations

import math
from collections.abc import Callable, Sequence
from types import ModuleType
from typing import NamedTuple

import numpy as np

LEVEL = 0.95
N_RESAMPLES = 4999
SEED = 12345  # fixed: an interval is a property of the samples, not of the call
_CHUNK = 2_000_000  # values the two-level bootstrap draws at once (about 50 MB with their indices)


def _scipy_stats() -> ModuleType:
    """scipy.stats, imported on first use: half a second of start-up a CLI needs only for intervals."""
    from scipy import stats

    return stats


class Interval(NamedTuple):
    """A point estimate with its confidence interval; ``n`` samples from ``groups`` independent
    groups (worker processes) stand behind it; 1 group: the samples were resampled on one level."""

    est: float
    lo: float
    hi: float
    n: int
    groups: int = 1

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
        """``1.23 [1.10, 1.40] (n=7)``, ``1.23 [1.10, 1.40] (n=15, 3 processes)``, or
        ``1.23 (n=1, no interval)``."""
        if not math.isfinite(self.est):
            return "n/a"
        n = f"n={self.n}" + (f", {self.groups} processes" if self.groups > 1 else "")
        if not self.known:
            return f"{self.est:.{digits}g} ({n}, no interval)"
        return f"{self.est:.{digits}g} [{self.lo:.{digits}g}, {self.hi:.{digits}g}] ({n})"


NAN_INTERVAL = Interval(math.nan, math.nan, math.nan, 0)


def widen(iv: Interval, drift: float, level: float = LEVEL) -> Interval:
    """``iv`` with a between-run allowance: each half-width, on the log scale, combined in quadrature
    with ``z * drift``, where ``drift`` is the relative standard deviation of the quantity from one run
    to the next on one machine beyond what the run's own samples show (z = 1.96 at 95 %).

    Samples taken within minutes cannot show what moves between runs an hour apart (the host's
    load, the VM's placement): the interval of one run is honest about that run only. An allowance
    measured by repeating the runs (``bench.timing passes=3`` estimates it) is the usual remedy for
    an error that one run's spread cannot see (a "type B" uncertainty in metrology). Positive
    estimates only (times and their ratios); anything else, or ``drift`` 0, is returned as it is.
    """
    if not (drift > 0) or not iv.known or not (iv.est > 0 and iv.lo > 0):
        return iv
    from statistics import NormalDist

    extra = NormalDist().inv_cdf((1 + level) / 2) * math.log1p(drift)
    down, up = math.log(iv.est / iv.lo), math.log(iv.hi / iv.est)
    return iv._replace(lo=iv.est * math.exp(-math.hypot(down, extra)), hi=iv.est * math.exp(math.hypot(up, extra)))


def _finite(samples: Sequence[float]) -> np.ndarray:
    arr = np.asarray(samples, dtype=float).ravel()
    return arr[np.isfinite(arr)]


def _along(statistic: Callable[..., float]) -> Callable[..., np.ndarray]:
    """``statistic`` over one axis of a batch of resamples: numpy's reductions take ``axis``
    themselves (ten times faster than a Python call per resample); any other goes along it."""
    def batched(s: np.ndarray, axis: int = -1) -> np.ndarray:
        try:
            return statistic(s, axis=axis)
        except TypeError:
            return np.apply_along_axis(statistic, axis, s)
    return batched


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
            res = _scipy_stats().bootstrap(
                (x,), _along(statistic), vectorized=True,
                confidence_level=level, n_resamples=N_RESAMPLES, method=method,
                random_state=np.random.default_rng(SEED))
        except (ValueError, RuntimeWarning):
            continue
        lo, hi = float(res.confidence_interval.low), float(res.confidence_interval.high)
        if math.isfinite(lo) and math.isfinite(hi):
            return Interval(est, min(lo, est), max(hi, est), len(x))
    return Interval(est, math.nan, math.nan, len(x))


def median_ci(samples: Sequence[float], level: float = LEVEL, groups: Sequence | None = None) -> Interval:
    """Median with its bootstrap interval: for times (robust to a stray slow round).

    ``groups`` (one label per sample: the worker process it came from) makes the interval
    two-level (:func:`two_level`) when the finite samples come from two groups or more;
    without it, or with one group, the samples are resampled on one level.
    """
    if groups is None:
        return interval(samples, np.median, level)
    x, labels = np.asarray(samples, dtype=float).ravel(), _labels(groups)
    if len(labels) != len(x):
        raise ValueError(f"{len(x)} samples but {len(labels)} group labels")
    ok = np.isfinite(x)
    x, labels = x[ok], labels[ok]
    codes = np.unique(labels, return_inverse=True)[1].ravel()
    n_groups = int(codes.max()) + 1 if len(codes) else 0
    if n_groups < 2:
        return interval(x, np.median, level)
    est = float(np.median(x))
    if np.all(x == x[0]):
        return Interval(est, est, est, len(x), n_groups)
    medians = two_level(x, codes, N_RESAMPLES, np.random.default_rng(SEED))
    lo, hi = np.quantile(medians, [(1 - level) / 2, (1 + level) / 2])
    t_lo, t_hi = between_groups(x, codes, est, level)
    return Interval(est, min(float(lo), t_lo, est), max(float(hi), t_hi, est), len(x), n_groups)


def between_groups(values: np.ndarray, codes: np.ndarray, est: float, level: float = LEVEL) -> tuple[float, float]:
    """The classical interval of a one-way random-effects design, centred on ``est``:
    ``est ± t(G-1) * sd(group medians) / sqrt(G)``, on the log scale when every median is positive
    (times, ratios: ``est`` multiplied and divided by ``exp(t(G-1) * sd(log medians) / sqrt(G))``).

    Each group's median stands for its group (its own rounds' noise included), so the spread of
    the G medians carries both levels, and Student's t with G - 1 degrees of freedom pays for
    knowing that spread from few groups (4.30 for 3 groups, 2.78 for 5, against 1.96). This is
    what a resampling interval cannot do: it never reaches beyond the groups it drew from.
    """
    sizes = np.bincount(codes)
    n_groups = len(sizes)
    order = np.argsort(codes, kind="stable")
    medians = np.array([np.median(part) for part in np.split(values[order], np.cumsum(sizes)[:-1])])
    q = _scipy_stats().t.ppf((1 + level) / 2, n_groups - 1) / math.sqrt(n_groups)
    if est > 0 and np.all(medians > 0):  # times and ratios: on the log scale, so the interval stays positive
        half = q * np.log(medians).std(ddof=1)
        return est * math.exp(-half), est * math.exp(half)
    half = q * medians.std(ddof=1)
    return est - float(half), est + float(half)


def _labels(groups: Sequence) -> np.ndarray:
    """Group labels as strings: any hashable label (a number, a tuple such as (pass, process))."""
    return np.array([str(g) for g in groups], dtype=str)


def two_level(values: np.ndarray, codes: np.ndarray, n_resamples: int, rng: np.random.Generator) -> np.ndarray:
    """``n_resamples`` medians of two-level resamples of ``values`` (group ``codes`` 0..G-1).

    Each resample draws G groups with replacement, then, within each drawn group, as many
    values as it holds, with replacement; its statistic is the median of all values drawn.
    Vectorised: the groups are rows of a NaN-padded matrix, drawn in chunks of resamples.
    """
    sizes = np.bincount(codes)
    n_groups, width = len(sizes), int(sizes.max())
    padded = np.full((n_groups, width), np.nan)
    order = np.argsort(codes, kind="stable")
    within = np.arange(len(values)) - np.repeat(np.cumsum(sizes) - sizes, sizes)
    padded[codes[order], within] = values[order]
    out = np.empty(n_resamples)
    chunk = max(1, _CHUNK // (n_groups * width))
    for first in range(0, n_resamples, chunk):
        b = min(chunk, n_resamples - first)
        drawn = rng.integers(0, n_groups, size=(b, n_groups))  # stage 1: the groups
        size = sizes[drawn][..., None]
        pick = (rng.random((b, n_groups, width)) * size).astype(np.intp)  # stage 2: within each group
        taken = padded[drawn[..., None], pick]
        taken[np.arange(width) >= size] = np.nan  # a group smaller than the widest fills fewer places
        out[first:first + b] = np.nanmedian(taken.reshape(b, -1), axis=1)
    return out


def mean_ci(samples: Sequence[float], level: float = LEVEL) -> Interval:
    """Mean with its bootstrap interval: for accuracies over seeds."""
    return interval(samples, np.mean, level)


def ratio_ci(num: Sequence[float], den: Sequence[float], level: float = LEVEL, paired: bool = True,
             groups: Sequence | None = None) -> Interval:
    """Median of the paired ratios ``num[i] / den[i]`` with its interval.

    Pairs are rounds of an interleaved timing pass: both were measured back to back, so the
    machine's drift cancels in each ratio. ``groups`` labels each pair with its process-pair
    slot (process k of one configuration with process k of the other): the interval is then
    two-level, slots first, pairs within them (:func:`median_ci`). Unpaired (different lengths,
    or ``paired=False`` for samples taken one after the other): the ratio of the two medians,
    with an interval from resampling each side independently.
    """
    a, b = np.asarray(num, dtype=float).ravel(), np.asarray(den, dtype=float).ravel()
    if paired and len(a) == len(b):
        ok = np.isfinite(a) & np.isfinite(b) & (b > 0)
        labels = None if groups is None else _labels(groups)[ok]
        return median_ci(a[ok] / b[ok], level, labels)
    a, b = _finite(a), _finite(b)
    b = b[b > 0]
    if len(a) == 0 or len(b) == 0:
        return NAN_INTERVAL
    est = float(np.median(a) / np.median(b))
    if len(a) < 2 or len(b) < 2:
        return Interval(est, math.nan, math.nan, min(len(a), len(b)))
    res = _scipy_stats().bootstrap(
        (a, b), lambda x, y, axis=-1: np.median(x, axis=axis) / np.median(y, axis=axis), vectorized=True,
        confidence_level=level, n_resamples=N_RESAMPLES, method="percentile",
        random_state=np.random.default_rng(SEED))
    return Interval(est, float(res.confidence_interval.low), float(res.confidence_interval.high),
                    min(len(a), len(b)))

"""bench.stats intervals on distributions whose answer is known."""
from __future__ import annotations

import math

import numpy as np

from bench.stats import mean_ci, median_ci, ratio_ci


def test_median_ci_covers_the_true_median_about_95_percent_of_the_time() -> None:
    rng = np.random.default_rng(7)
    repeats, covered = 50, 0
    for _ in range(repeats):
        iv = median_ci(rng.normal(10.0, 2.0, size=25))
        assert iv.lo <= iv.est <= iv.hi and iv.n == 25
        covered += iv.lo <= 10.0 <= iv.hi
    assert covered >= 0.86 * repeats  # nominal 95 %; a bootstrap of 25 samples runs a little short


def test_mean_ci_narrows_with_more_samples() -> None:
    rng = np.random.default_rng(3)
    small, large = mean_ci(rng.normal(0, 1, 10)), mean_ci(rng.normal(0, 1, 400))
    assert (large.hi - large.lo) < (small.hi - small.lo) / 3


def test_ratio_ci_of_paired_rounds_finds_a_known_ratio() -> None:
    rng = np.random.default_rng(11)
    # A drifting machine: both sides of a round share its slowness, the ratio is 1.5 throughout.
    drift = rng.uniform(1.0, 3.0, size=9)
    den = drift * rng.normal(1.0, 0.02, size=9)
    num = 1.5 * drift * rng.normal(1.0, 0.02, size=9)
    iv = ratio_ci(num, den)
    assert iv.n == 9 and iv.lo <= 1.5 <= iv.hi and iv.hi - iv.lo < 0.2
    # Unpaired (different lengths): the ratio of the medians; the interval is wider but still covers it.
    loose = ratio_ci(num[:7], den)
    assert loose.lo <= 1.5 <= loose.hi


def test_intervals_say_when_there_is_none() -> None:
    assert math.isnan(median_ci([]).est)
    one = median_ci([2.0])
    assert one.est == 2.0 and not one.known
    same = median_ci([3.0, 3.0, 3.0])
    assert same.lo == same.hi == 3.0
    assert ratio_ci([1.0, math.nan, 2.0], [1.0, 1.0, 0.0]).n == 1  # NaN and zero pairs are dropped

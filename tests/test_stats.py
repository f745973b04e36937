"""bench.stats intervals on distributions whose answer is known."""
from __future__ import annotations

import math

import numpy as np
import pytest

from bench.stats import SEED, Interval, mean_ci, median_ci, ratio_ci, two_level, widen


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


# ------------------------------------------------------------------ two levels: processes, then rounds
def processes(rng: np.random.Generator, n_proc: int, n_rounds: int, between: float, within: float,
              scale: float = 1.0) -> tuple[np.ndarray, np.ndarray]:
    """Times of ``n_proc`` worker processes x ``n_rounds`` rounds: each process slower or faster by
    its own log-normal factor (sd ``between``), each round by another (sd ``within``). Both are
    symmetric in the log, so the true median of a new process's round is ``scale``."""
    per_process = rng.normal(0.0, between, n_proc)[:, None]
    times = scale * np.exp(per_process + rng.normal(0.0, within, (n_proc, n_rounds)))
    return times.ravel(), np.repeat(np.arange(n_proc), n_rounds)


def test_two_level_interval_is_wider_than_one_level_when_processes_differ() -> None:
    rng = np.random.default_rng(5)
    ratios = []
    for _ in range(20):
        times, procs = processes(rng, 5, 7, between=0.05, within=0.01)
        two, one = median_ci(times, groups=procs), median_ci(times)
        assert two.est == one.est and two.n == one.n == 35 and two.groups == 5 and one.groups == 1
        ratios.append((two.hi - two.lo) / (one.hi - one.lo))
    # The rounds of one process say little of the next process: one level is too narrow, every time.
    assert min(ratios) > 1.0 and np.median(ratios) > 2.0


def test_two_level_interval_covers_the_true_median_at_about_the_nominal_rate() -> None:
    rng = np.random.default_rng(17)
    covered_two = covered_one = 0
    for _ in range(200):
        times, procs = processes(rng, 10, 5, between=0.03, within=0.03)
        two, one = median_ci(times, groups=procs), median_ci(times)
        covered_two += two.lo <= 1.0 <= two.hi
        covered_one += one.lo <= 1.0 <= one.hi
    assert 0.85 <= covered_two / 200 <= 0.99
    assert covered_one / 200 < 0.85  # one level, blind to the processes, covers far less often
    assert covered_one < covered_two


def test_few_processes_still_cover_at_about_the_nominal_rate() -> None:
    """Three processes whose spread dominates: resampling alone cannot reach beyond the three (it
    covers at most 1 - 2 * 0.5**3 = 75 % of the time); the random-effects t interval it is widened
    to does."""
    rng = np.random.default_rng(29)
    covered = covered_resampling = 0
    for _ in range(200):
        times, procs = processes(rng, 3, 5, between=0.03, within=0.01)
        iv = median_ci(times, groups=procs)
        assert iv.groups == 3 and iv.lo <= iv.est <= iv.hi
        covered += iv.lo <= 1.0 <= iv.hi
        lo, hi = np.quantile(two_level(times, procs, 999, np.random.default_rng(SEED)), [0.025, 0.975])
        covered_resampling += lo <= 1.0 <= hi
    assert covered / 200 >= 0.90
    assert covered_resampling / 200 <= 0.85 and covered_resampling < covered


def test_two_level_ratio_covers_the_true_ratio_at_about_the_nominal_rate() -> None:
    """Two configurations timed in the same process slots and rounds: each round's drift hits both
    (it cancels in the paired ratio), each process of each configuration has its own layout."""
    rng = np.random.default_rng(23)
    covered, widths = 0, []
    for _ in range(200):
        a, slots = processes(rng, 10, 5, between=0.03, within=0.01, scale=1.5)
        b, _ = processes(rng, 10, 5, between=0.03, within=0.01)
        drift = rng.uniform(1.0, 3.0, a.size)
        iv, one = ratio_ci(a * drift, b * drift, groups=slots), ratio_ci(a * drift, b * drift)
        assert iv.n == 50 and iv.groups == 10
        covered += iv.lo <= 1.5 <= iv.hi
        widths.append((iv.hi - iv.lo) / (one.hi - one.lo))
    assert 0.85 <= covered / 200 <= 0.99
    assert np.median(widths) > 1.5  # the one-level interval of the same pairs is much narrower


def test_ratios_are_paired_within_their_slot_and_round() -> None:
    """A slow slot (a slow stretch of the machine, or a slow core) hits both configurations of the
    slot: paired within it, the ratio is exactly 2 in every pair, whatever the slots' speeds."""
    slot_speed = np.repeat([1.0, 3.0, 9.0], 4)
    slots = np.repeat([1, 2, 3], 4)
    iv = ratio_ci(2.0 * slot_speed, slot_speed, groups=slots)
    assert (iv.est, iv.lo, iv.hi, iv.n, iv.groups) == (2.0, 2.0, 2.0, 12, 3)
    shuffled = ratio_ci(2.0 * slot_speed, slot_speed[::-1], groups=slots)  # pairs across slots: not 2
    assert shuffled.hi - shuffled.lo > 1.0
    dropped = ratio_ci([2.0, math.nan, 6.0, 18.0], [1.0, 1.0, 3.0, 9.0], groups=[1, 1, 2, 3])
    assert dropped.n == 3 and dropped.groups == 3  # a NaN pair goes, its slot's other pairs stay


def test_two_level_intervals_are_a_property_of_the_samples() -> None:
    rng = np.random.default_rng(2)
    times, procs = processes(rng, 4, 6, between=0.05, within=0.02)
    assert median_ci(times, groups=procs) == median_ci(times.copy(), groups=list(procs))
    labels = [("pass-1", int(p)) for p in procs]  # any hashable label names a process
    assert median_ci(times, groups=labels) == median_ci(times, groups=procs)
    one = median_ci(times, groups=np.zeros(len(times)))  # one process: the one-level interval, as before
    assert one == median_ci(times) and one.groups == 1


def test_two_level_with_processes_of_unequal_size() -> None:
    times = np.array([1.0, 1.1, 0.9, 1.0, 2.0, 2.1, 1.9, 5.0])
    procs = np.array([1, 1, 1, 1, 2, 2, 2, 3])  # process 3 gave one clean round only
    iv = median_ci(times, groups=procs)
    assert iv.groups == 3 and iv.n == 8 and iv.lo <= iv.est <= iv.hi
    assert iv.hi >= 2.0 and iv.lo <= 1.0  # resampling processes can draw mostly the fast or the slow ones
    with pytest.raises(ValueError):
        median_ci(times, groups=procs[:-1])
    assert "3 processes" in iv.text()


def test_two_processes_give_a_wide_but_positive_interval() -> None:
    """With two processes, t has one degree of freedom (12.7): the interval is wide, as it should be,
    and taken on the log scale so a time or a ratio is never given a negative bound."""
    times, procs = np.array([1.0, 1.02, 0.99, 1.6, 1.62, 1.59]), np.array([1, 1, 1, 2, 2, 2])
    iv = median_ci(times, groups=procs)
    assert 0 < iv.lo < 1.0 and iv.hi > 1.6 and iv.groups == 2


def test_a_between_run_allowance_adds_in_quadrature_on_the_log_scale() -> None:
    """widen: each log half-width combined with 1.96 * log(1 + drift); nothing else changes."""
    iv = Interval(2.0, 2.0 / math.exp(0.03), 2.0 * math.exp(0.04), 15, 5)
    out = widen(iv, 0.025)
    extra = 1.959964 * math.log(1.025)
    assert math.log(out.est / out.lo) == pytest.approx(math.hypot(0.03, extra), rel=1e-5)
    assert math.log(out.hi / out.est) == pytest.approx(math.hypot(0.04, extra), rel=1e-5)
    assert (out.est, out.n, out.groups) == (2.0, 15, 5) and out.lo > 0
    assert widen(iv, 0.0) == iv and widen(Interval(1.0, math.nan, math.nan, 1), 0.1).lo != 0.5  # none stays none
    tight = Interval(1.0, 1.0, 1.0, 9, 3)  # every sample alike: the allowance alone
    assert widen(tight, 0.02).hi == pytest.approx(math.exp(1.959964 * math.log(1.02)), rel=1e-5)
    # a run whose median moved by the allowance's sd is still inside the widened interval of the other
    moved = widen(Interval(1.0, 0.995, 1.005, 15, 5), 0.02)
    assert moved.lo < 1.0 / 1.02 and moved.hi > 1.02

"""The honesty check of the timing pass's intervals (pure): the same configurations timed in
several independent passes (``python -m bench.timing passes=3``), each with worker processes of
its own; does each pass's 95 % interval contain the other passes' medians?

An interval that describes only the process it was measured in fails this check as soon as
the next processes run faster or slower. It is asked of every configuration's time per step and
of every time ratio against the baseline framework (what the report's verdicts use). The
coverage is the share of configurations whose every interval contains every other pass's
median, and the share of (interval, median) pairs that do.

What a calibrated interval scores: were each pass's median normal about the truth and its
interval the median ± 1.96 standard errors, another pass's median would fall inside it with
probability 2Φ(1.96/√2) − 1 = 0.83 (their difference has √2 standard errors), and all pairs of
three passes would be covered with probability 0.65 (the range of three medians within 1.96
standard errors). :func:`reference` computes both; coverage well below them says the intervals
are too narrow, coverage at or above them that they are honest (or wide).
"""
from __future__ import annotations

import math
from collections.abc import Callable, Mapping
from typing import Any

import pandas as pd

from bench.report.speed import BASELINE, key_framework, round_times, time_interval, time_ratio, with_framework
from bench.stats import LEVEL, Interval


def reference(passes: int, level: float = LEVEL) -> dict[str, float]:
    """Coverage of exactly calibrated intervals of equal width (see the module's text): ``pair``, the
    chance one pass's interval holds another's median; ``all``, that every pair of ``passes`` is covered."""
    from scipy import integrate  # here, not at the top: the timing CLI starts half a second sooner without it
    from scipy.stats import norm

    z = float(norm.ppf((1 + level) / 2))
    pair = 2 * float(norm.cdf(z / math.sqrt(2))) - 1

    def density(x: float) -> float:  # the range of `passes` standard normals is at most z
        return passes * norm.pdf(x) * (norm.cdf(x + z) - norm.cdf(x)) ** (passes - 1)

    every = integrate.quad(density, -math.inf, math.inf)[0] if passes > 1 else 1.0
    return {"pair": round(pair, 4), "all": round(float(every), 4)}


def _covers(iv: Interval, median: float) -> bool | None:
    """Whether ``iv`` holds ``median``; None when either is unknown."""
    if not iv.known or not math.isfinite(median):
        return None
    return iv.lo <= median <= iv.hi


def _check(per_pass: Mapping[int, Interval]) -> dict[str, Any]:
    """Every (interval of pass i, median of pass j), i != j, of one quantity."""
    pairs = [{"interval": i, "median": j, "covered": _covers(per_pass[i], per_pass[j].est)}
             for i in per_pass for j in per_pass if i != j]
    known = [p["covered"] for p in pairs if p["covered"] is not None]
    return {"passes": [{"pass": p, "median": iv.est, "lo": iv.lo, "hi": iv.hi, "n": iv.n, "processes": iv.groups}
                       for p, iv in per_pass.items()],
            "pairs": pairs, "covered": sum(known), "checked": len(known),
            "all_covered": bool(known) and len(known) == len(pairs) and all(known)}


def honesty(rows: pd.DataFrame, threshold: float, label: Callable[[tuple], str], baseline: str = BASELINE,
            level: float = LEVEL) -> dict[str, Any]:
    """The check on timing rows of several passes (a ``pass`` column): per configuration and per
    ratio against ``baseline``, each pass's interval against the others' medians, and the coverage."""
    passes = sorted(int(p) for p in rows["pass"].unique())
    rounds = {p: round_times(rows[rows["pass"] == p], threshold) for p in passes}
    keys = sorted({k for r in rounds.values() for k in r}, key=str)
    times, ratios = [], []
    for key in keys:
        per_pass = {p: time_interval(rounds[p][key]) for p in passes if key in rounds[p]}
        times.append({"configuration": label(key), **_check(per_pass)})
        twin = with_framework(key, baseline)
        if key_framework(key) != baseline and any(twin in r for r in rounds.values()):
            per_pass = {p: time_ratio(rounds[p], key, twin) for p in passes}
            ratios.append({"configuration": f"{label(key)} / {baseline}", **_check(per_pass)})
    return {"passes": len(passes), "level": level, "time_per_step": times, "ratios": ratios,
            "coverage": {"time_per_step": _coverage(times), "ratios": _coverage(ratios)},
            "reference": reference(len(passes), level)}


def _coverage(checks: list[dict[str, Any]]) -> dict[str, Any]:
    checked = sum(c["checked"] for c in checks)
    covered = sum(c["covered"] for c in checks)
    return {"configurations": len(checks), "all_covered": sum(c["all_covered"] for c in checks),
            "share_all_covered": sum(c["all_covered"] for c in checks) / len(checks) if checks else math.nan,
            "pairs": checked, "pairs_covered": covered, "share_pairs": covered / checked if checked else math.nan}


def print_honesty(result: Mapping[str, Any]) -> None:
    """A short table: per configuration the passes' medians and how many pairs were covered; the coverage."""
    print(f"\nhonesty check, {result['passes']} passes: does each pass's {result['level']:.0%} interval "
          "contain the other passes' medians?")
    for name, unit in (("time_per_step", 1e3), ("ratios", 1.0)):
        checks = result[name]
        if not checks:
            continue
        print(f"  {'time per step (ms)' if name == 'time_per_step' else 'time ratios'}:")
        for c in checks:
            medians = ", ".join(f"{p['median'] * unit:.4g}" for p in c["passes"])
            print(f"    {c['configuration']:<58} {medians:<30} {c['covered']}/{len(c['pairs'])}"
                  + ("" if c["all_covered"] else "  <- not all"))
        cov = result["coverage"][name]
        print(f"    all pairs covered in {cov['all_covered']} of {cov['configurations']} "
              f"({cov['share_all_covered']:.0%}); pairs covered {cov['pairs_covered']} of {cov['pairs']} "
              f"({cov['share_pairs']:.0%})")
    if not result["time_per_step"]:
        print("  nothing to check: no configuration has clean samples")
    ref = result["reference"]
    print(f"  calibrated intervals would score about {ref['all']:.0%} (all pairs) and {ref['pair']:.0%} (pairs)",
          flush=True)

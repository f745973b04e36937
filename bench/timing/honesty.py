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
from collections.abc import Callable, Mapping, Sequence
from typing import Any

import pandas as pd

from bench.report.speed import BASELINE, key_framework, round_times, time_interval, time_ratio, with_framework
from bench.stats import LEVEL, Interval, widen


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
            level: float = LEVEL, drift: Mapping[str, float] | None = None) -> dict[str, Any]:
    """The check on timing rows of several passes (a ``pass`` column): per configuration and per
    ratio against ``baseline``, each pass's interval (with the between-run allowances ``drift``, as
    the pass gives them) against the others' medians, and the coverage. Also the between-pass
    spread the passes show (:func:`between_passes`): what ``drift`` should be on this machine."""
    drift = {"time": 0.0, "ratio": 0.0, **(drift or {})}
    passes = sorted(int(p) for p in rows["pass"].unique())
    rounds = {p: round_times(rows[rows["pass"] == p], threshold) for p in passes}
    keys = sorted({k for r in rounds.values() for k in r}, key=str)
    times, ratios, own = [], [], {"time": [], "ratio": []}
    for key in keys:
        per_pass = {p: time_interval(rounds[p][key]) for p in passes if key in rounds[p]}
        own["time"].append(per_pass)
        times.append({"configuration": label(key), **_check({p: widen(iv, drift["time"], level)
                                                            for p, iv in per_pass.items()})})
        twin = with_framework(key, baseline)
        if key_framework(key) != baseline and any(twin in r for r in rounds.values()):
            per_pass = {p: time_ratio(rounds[p], key, twin, drift=0.0) for p in passes}
            own["ratio"].append(per_pass)
            ratios.append({"configuration": f"{label(key)} / {baseline}",
                           **_check({p: widen(iv, drift["ratio"], level) for p, iv in per_pass.items()})})
    return {"passes": len(passes), "level": level, "drift": drift, "time_per_step": times, "ratios": ratios,
            "coverage": {"time_per_step": _coverage(times), "ratios": _coverage(ratios)},
            "reference": reference(len(passes), level),
            "between_passes": {kind: between_passes(checks, level) for kind, checks in own.items()}}


def between_passes(checks: Sequence[Mapping[int, Interval]], level: float = LEVEL) -> float:
    """The relative spread between passes beyond what each pass's own interval shows: over the
    quantities, the pooled variance of the passes' log medians less the mean squared standard error
    each pass's interval implies (its log width over 2z), as a relative standard deviation; 0 when
    the passes agree within their own noise. Read from the intervals without any allowance."""
    from statistics import NormalDist

    z = NormalDist().inv_cdf((1 + level) / 2)
    excess = []
    for per_pass in checks:
        ivs = [iv for iv in per_pass.values() if iv.known and iv.est > 0 and iv.lo > 0]
        if len(ivs) < 2:
            continue
        logs = [math.log(iv.est) for iv in ivs]
        mean = sum(logs) / len(logs)
        spread = sum((x - mean) ** 2 for x in logs) / (len(logs) - 1)
        own = sum((math.log(iv.hi / iv.lo) / (2 * z)) ** 2 for iv in ivs) / len(ivs)
        excess.append(spread - own)
    if not excess:
        return math.nan
    return math.expm1(math.sqrt(max(0.0, sum(excess) / len(excess))))


def _coverage(checks: list[dict[str, Any]]) -> dict[str, Any]:
    """The shares, over the configurations with something to compare (a median in two passes or more)."""
    checks = [c for c in checks if c["checked"]]
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
            said = ("  (clean in one pass only: nothing to compare)" if not c["checked"]
                    else "" if c["all_covered"] else "  <- not all")
            print(f"    {c['configuration']:<58} {medians:<30} {c['covered']}/{c['checked']}{said}")
        cov = result["coverage"][name]
        if not cov["configurations"]:
            print("    no configuration has clean medians in two passes: nothing to compare")
            continue
        print(f"    all pairs covered in {cov['all_covered']} of {cov['configurations']} "
              f"({cov['share_all_covered']:.0%}); pairs covered {cov['pairs_covered']} of {cov['pairs']} "
              f"({cov['share_pairs']:.0%})")
    if not result["time_per_step"]:
        print("  nothing to check: no configuration has clean samples")
    ref = result["reference"]
    print(f"  calibrated intervals would score about {ref['all']:.0%} (all pairs) and {ref['pair']:.0%} (pairs)")
    drift, seen = result.get("drift") or {}, result.get("between_passes") or {}
    if seen:
        said = ", ".join(f"{kind} {seen[kind]:.1%}" for kind in ("time", "ratio")
                         if math.isfinite(seen.get(kind, math.nan)))
        print(f"  between-pass spread beyond each pass's own: {said or 'n/a'} (the intervals above carry "
              f"drift_time={drift.get('time', 0):g}, drift_ratio={drift.get('ratio', 0):g}; set them to what "
              "this machine shows)", flush=True)

"""The scaling pass's numbers, pure: samples in, points, paired ratios and sentences out.

Every interval is a two-level bootstrap (:mod:`bench.stats`): worker processes resampled, then
rounds within each; ratios are paired by (process slot, round), the two samples taken back to back.
Like the timing pass's, each carries the between-run allowance the pass recorded (scaling.json
``drift``; none in a file from before it): :func:`bench.stats.widen`.
"""
from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from itertools import groupby
from typing import Any

import numpy as np

from bench.clock import CONTENTION_THRESHOLD, drift_of
from bench.stats import Interval, median_ci, ratio_ci, widen

COLUMNS = ("framework", "model", "mode", "optimizer", "impl", "batch_size", "n_train", "process", "round",
           "steps", "time_s", "time_per_step_s", "samples_per_s", "cpu_time_s", "contention", "dataset",
           "threads", "device", "pace_s")  # pace_s appended later (bench.report.pace)
KEY = ("framework", "model", "mode", "batch_size")  # one point of a curve


def usable(rows: Sequence[Mapping[str, Any]], threshold: float) -> tuple[list[Mapping[str, Any]], int, bool]:
    """The samples of one point that count: those without contention above ``threshold`` (NaN
    contention counts as clean), how many were left out, and whether every one was contended — then
    all are kept, and the point says so, rather than vanish."""
    kept = [r for r in rows if not (float(r["contention"]) > threshold)]
    if not kept:
        return list(rows), 0, bool(rows)
    return kept, len(rows) - len(kept), False


def slow_processes(rows: Sequence[Mapping[str, Any]], threshold: float = CONTENTION_THRESHOLD,
                   factor: float | None = None) -> list[dict[str, Any]]:
    """Process slots in which the machine itself ran slow, found as the timing pass finds them
    (:func:`bench.report.speed.slow_slots`, by time per step and then by the pace probe beside each
    sample): slot k of every curve ran in the same stretch of time, so a slot in which the points
    ran ``factor`` (1.2) or more slower than in the others is the machine, not a framework."""
    import pandas as pd

    from bench.report.speed import SLOW_SLOT, slow_slots

    groups: dict[tuple, list[Mapping[str, Any]]] = {}
    for r in rows:
        groups.setdefault(tuple(r[k] for k in KEY), []).append(r)
    by_time, by_pace = {}, {}
    for key, group in groups.items():
        kept = usable(group, threshold)[0]
        index = [(0, int(r["process"]), int(r["round"])) for r in kept]
        if index:
            by_time[key] = pd.Series([float(r["time_per_step_s"]) for r in kept],
                                     index=pd.MultiIndex.from_tuples(index))
        paced = [(i, float(r.get("pace_s", math.nan))) for i, r in zip(index, kept)]
        paced = [(i, v) for i, v in paced if math.isfinite(v)]
        if paced:
            by_pace[key] = pd.Series([v for _, v in paced], index=pd.MultiIndex.from_tuples([i for i, _ in paced]))
    factor = SLOW_SLOT if factor is None else factor
    slow = slow_slots(by_time, factor)
    seen = {d["process"] for d in slow}
    return slow + [{**d, "by": "pace"} for d in slow_slots(by_pace, factor) if d["process"] not in seen]


def without_slow(rows: Sequence[Mapping[str, Any]], threshold: float = CONTENTION_THRESHOLD
                 ) -> tuple[list[Mapping[str, Any]], list[dict[str, Any]]]:
    """The rows outside the slow process slots (:func:`slow_processes`), and those slots."""
    slow = slow_processes(rows, threshold)
    gone = {d["process"] for d in slow}
    return [r for r in rows if int(r["process"]) not in gone], slow


def _by_process(rows: Sequence[Mapping[str, Any]], value: str) -> dict[int, dict[int, float]]:
    out: dict[int, dict[int, float]] = {}
    for r in rows:
        out.setdefault(int(r["process"]), {})[int(r["round"])] = float(r[value])
    return out


def summarise(rows: Sequence[Mapping[str, Any]], meta: Mapping[str, Any]) -> list[dict[str, Any]]:
    """One point per (framework, model, mode, batch size): samples per second with its interval,
    time per step, the FLOP floor's samples per second, how many processes and rounds stand behind it
    (slow process slots left out, as the timing pass leaves them out, and counted in ``slow_slots``)."""
    threshold = float(meta.get("contention_threshold", CONTENTION_THRESHOLD))
    rows, slow = without_slow(rows, threshold)
    groups: dict[tuple, list[Mapping[str, Any]]] = {}
    for r in rows:
        groups.setdefault(tuple(r[k] for k in KEY), []).append(r)
    rate = meta.get("matmul_gflops") or []
    points = []
    for key, group in sorted(groups.items(), key=lambda kv: (kv[0][1], kv[0][0], int(kv[0][3]))):
        fw, model, mode, batch = key
        group, left_out, contended = usable(group, threshold)
        per_process = _by_process(group, "samples_per_s")
        sps = widen(median_ci([r["samples_per_s"] for r in group], groups=[r["process"] for r in group]),
                    drift_of(meta)["time"])
        flops = (meta.get("flop_per_sample") or {}).get(model)
        floor = (float(np.median(rate)) * 1e9 / flops) if rate and flops else math.nan
        points.append({"framework": fw, "model": model, "mode": mode, "batch_size": int(batch),
                       "samples_per_s": sps.est, "samples_per_s_lo": sps.lo, "samples_per_s_hi": sps.hi,
                       "time_per_step_s": int(batch) / sps.est if sps.est > 0 else math.nan,
                       "floor_samples_per_s": floor, "x_floor": floor / sps.est if sps.est > 0 else math.nan,
                       "processes": len(per_process), "rounds": len(group), "left_out": left_out,
                       "all_contended": contended, "slow_slots": len(slow)})
    return points


def pair_ratios(rows: Sequence[Mapping[str, Any]], model: str, a: str, b: str,
                threshold: float = CONTENTION_THRESHOLD, drift: float = 0.0) -> dict[int, Interval]:
    """Per batch size: a's time per step over b's, paired by (process slot, round), two-level interval
    (with the between-run allowance ``drift`` for a ratio); slow process slots left out."""
    mine = [r for r in without_slow(rows, threshold)[0] if r["model"] == model]
    out = {}
    for batch in sorted({int(r["batch_size"]) for r in mine}):
        num = _by_process(usable([r for r in mine if r["framework"] == a and int(r["batch_size"]) == batch],
                                 threshold)[0], "time_per_step_s")
        den = _by_process(usable([r for r in mine if r["framework"] == b and int(r["batch_size"]) == batch],
                                 threshold)[0], "time_per_step_s")
        pairs = [(num[s][r], den[s][r], s) for s in sorted(set(num) & set(den))
                 for r in sorted(set(num[s]) & set(den[s]))]
        if pairs:
            a_, b_, slots = zip(*pairs)
            out[batch] = widen(ratio_ci(a_, b_, groups=slots), drift)
    return out


def crossings(rows: Sequence[Mapping[str, Any]], model: str, names_: Sequence[str],
              threshold: float = CONTENTION_THRESHOLD, drift: float = 0.0) -> list[str]:
    """Sentences, one per pair of frameworks, on who is faster where, from the paired intervals:
    a framework leads at a batch size only where its ratio's whole interval is on its side of 1."""
    sentences = []
    for i, a in enumerate(names_):
        for b in names_[i + 1:]:
            ratios = pair_ratios(rows, model, a, b, threshold, drift)
            if not ratios:
                continue
            lead = {bs: (b if iv.clears(1.0) else a if iv.below(1.0) else None) for bs, iv in ratios.items()}
            sentences.append(_sentence(model, a, b, lead))
    return sentences


def _span(sizes: Sequence[int]) -> str:
    return f"batch {sizes[0]}" if len(sizes) == 1 else f"batch sizes {sizes[0]}–{sizes[-1]}"


def _sentence(model: str, a: str, b: str, lead: Mapping[int, str | None]) -> str:
    sizes = sorted(lead)
    winners = [lead[s] for s in sizes]
    decided = [w for w in winners if w is not None]
    if not decided:
        return f"{model}: {a} and {b} cannot be told apart at any batch size ({_span(sizes)})."
    if len(set(decided)) == 1:
        w = decided[0]
        where = [s for s in sizes if lead[s] == w]
        rest = "" if len(where) == len(sizes) else "; elsewhere they cannot be told apart"
        return f"{model}: {w} is faster than {a if w == b else b} at {_span(where)}{rest}."
    # the curves cross: name each stretch of batch sizes where one leads (or neither)
    stretches = [(w, [s for s, _ in run]) for w, run in groupby(zip(sizes, winners), key=lambda sw: sw[1])]
    said = [f"{w or 'neither'} leads at {_span(run)}" for w, run in stretches]
    first, last = decided[0], decided[-1]
    return (f"{model}: the {a} and {b} curves cross — " + ", ".join(said)
            + f" ({first} at small batches, {last} at large).")


def _fmt(v: float) -> str:
    return "n/a" if not math.isfinite(v) else f"{v:,.0f}" if v >= 100 else f"{v:.3g}"


def print_table(points: Sequence[Mapping[str, Any]], meta: Mapping[str, Any]) -> None:
    print(f"\n{'model':<8} {'framework':<11} {'mode':<9} {'batch':>6}  {'samples/s (95% CI)':<30} {'× floor':>8}  n")
    for p in points:
        iv = f"{_fmt(p['samples_per_s'])} [{_fmt(p['samples_per_s_lo'])}, {_fmt(p['samples_per_s_hi'])}]"
        print(f"{p['model']:<8} {p['framework']:<11} {p['mode']:<9} {p['batch_size']:>6}  {iv:<30} "
              f"{_fmt(p['x_floor']):>8}  {p['processes']}×{p['rounds'] // max(1, p['processes'])}"
              + (f" ({p['left_out']} contended left out)" if p["left_out"] else "")
              + (f" ({p['slow_slots']} slow process slot(s) left out)" if p.get("slow_slots") else "")
              + (" (every sample contended: kept, not trustworthy)" if p["all_contended"] else ""))
    print(flush=True)


def _iv(point: Mapping[str, Any]) -> Interval:
    return Interval(point["samples_per_s"], point["samples_per_s_lo"], point["samples_per_s_hi"], point["rounds"])


def _bracket(iv: Interval) -> str:
    """``1,619 [1,606, 1,638]``: samples per second with its interval, as the comparison prints it."""
    return f"{iv.est:,.0f} [{iv.lo:,.0f}, {iv.hi:,.0f}]" if iv.known else f"{iv.est:,.0f} (no interval)"


def compare_points(a: Sequence[Mapping[str, Any]], b: Sequence[Mapping[str, Any]], tolerance: float) -> list[dict]:
    """Two scaling passes point by point (framework, model, mode, batch size): samples per second
    within ``tolerance`` of each other (relative to the first) with overlapping 95 % intervals.
    A point only one pass has does not agree."""
    def keyed(points: Sequence[Mapping[str, Any]]) -> dict[tuple, Mapping[str, Any]]:
        return {(p["model"], p["framework"], p["mode"], int(p["batch_size"])): p for p in points}

    ka, kb = keyed(a), keyed(b)
    out = []
    for key in sorted(set(ka) | set(kb), key=lambda k: (k[0], k[1], k[2], k[3])):
        pa, pb = ka.get(key), kb.get(key)
        row: dict[str, Any] = dict(zip(("model", "framework", "mode", "batch_size"), key))
        if pa is None or pb is None:
            out.append({**row, "samples/s A": math.nan, "samples/s B": math.nan, "difference": math.nan,
                        "overlap": False, "agree": False,
                        "interval A": "not timed" if pa is None else _bracket(_iv(pa)),
                        "interval B": "not timed" if pb is None else _bracket(_iv(pb))})
            continue
        ia, ib = _iv(pa), _iv(pb)
        diff = abs(ib.est / ia.est - 1) if ia.est > 0 else math.nan
        overlap = ia.overlaps(ib)
        out.append({**row, "samples/s A": ia.est, "samples/s B": ib.est, "difference": diff, "overlap": overlap,
                    "agree": bool(diff <= tolerance and overlap),
                    "interval A": _bracket(ia), "interval B": _bracket(ib)})
    return out

"""Time per step and time ratios with 95 % intervals, from the timing pass (pure).

The timing pass (``python -m bench.timing``) times each configuration in several worker
processes, each for several rounds, interleaved A B C … A B C … after a warm-up, so that the
machine's drift hits every configuration alike; ``results_dir/timing/timing.csv`` has one row
per configuration, pass, process and round. A sample is identified by (pass, process, round):
a file without the ``pass`` or ``process`` column (written before there were several) is one
pass of one process. Intervals are two-level bootstraps (processes, then rounds within each,
:func:`bench.stats.median_ci`); a ratio pairs the samples of two configurations taken in the
same pass, process slot and round, back to back. Sweep epoch times are not used for speed
verdicts: a sweep's runs share the cores.

A sample (or a sweep epoch) during which other processes used more than
``CONTENTION_THRESHOLD`` of the machine's CPU is left out of every interval and counted.

The framework's release is part of a configuration (``framework_version``, the last key): two
releases of one framework timed in one pass are two configurations, timed in the same rounds. A
timing row without a release (a file from before the column) is the pinned release, unless the
report has already given it the release its runs were at. Ratios against the baseline framework
compare each framework's default release with the baseline's (:func:`baseline_ratios`); the
other releases of a framework are compared with its newest (:func:`version_twins`).
"""
from __future__ import annotations

import math
from collections.abc import Iterable, Mapping, Sequence

import numpy as np
import pandas as pd

from bench.clock import CONTENTION_THRESHOLD
from bench.envs import public
from bench.frameworks import BASE
from bench.report.groups import default_version, known, newest, pinned_version
from bench.report.pace import pace_medians, pace_rounds, pace_text
from bench.stats import NAN_INTERVAL, Interval, median_ci, ratio_ci, widen
from models.layers import DEFAULT_MODEL

BASELINE = BASE  # the framework every other one is compared with, unless told otherwise
# lr does not change the time of a step, so it is not part of a timing configuration; the model and
# the framework's release do.
TIMING_KEYS = ("dataset", "model", "device", "framework", "optimizer", "impl", "mode", "batch_size",
               "precision", "framework_version")  # the release stays last
TIMING_COLUMNS = (*TIMING_KEYS, "round", "time_per_step_s")
SAMPLE_KEYS = ("pass", "process", "round")  # one sample of a configuration
# Keys a timing.csv or summary.csv may lack (written before the column) and the value that means;
# the release's is the framework's pinned one.
OPTIONAL_KEYS = {"model": DEFAULT_MODEL, "precision": "fp32", "framework_version": None}
_FW = TIMING_KEYS.index("framework")
_VERSION = TIMING_KEYS.index("framework_version")


def contended(contention: pd.Series | Sequence[float], threshold: float = CONTENTION_THRESHOLD) -> np.ndarray:
    """True where the share of CPU taken by others is known and above ``threshold``."""
    c = pd.to_numeric(pd.Series(contention, dtype="object"), errors="coerce").to_numpy(float)
    return np.nan_to_num(c, nan=0.0) > threshold


def uncontended(frame: pd.DataFrame, threshold: float = CONTENTION_THRESHOLD) -> pd.DataFrame:
    """The rows of ``frame`` no other process contended above ``threshold`` (no contention column: all)."""
    return frame[~contended(frame.get("contention", pd.Series(np.nan, index=frame.index)), threshold)]


def config_key(row: Mapping) -> tuple:
    """The timing configuration a summary row or timing row belongs to (no model: the tutorial's MLP;
    no precision: float32, as every run was before float64 ones; no release: the pinned one; a
    release's local label, ``+cpu``, is left out as a run_id leaves it)."""
    def value(k: str) -> object:
        if k == "batch_size":
            return int(row[k])
        if k in OPTIONAL_KEYS:
            got = row.get(k) if hasattr(row, "get") else row[k]
            if k == "framework_version":
                return public(got) if known(got) else pinned_version(str(row["framework"]))
            return OPTIONAL_KEYS[k] if got is None or got != got or got == "" else str(got)
        return str(row[k])
    return tuple(value(k) for k in TIMING_KEYS)


def with_framework(key: tuple, framework: str, version: str | None = None) -> tuple:
    """The same configuration key in another framework, at ``version`` (None: its pinned release)."""
    out = key[:_FW] + (framework,) + key[_FW + 1:]
    return with_version(out, pinned_version(framework) if version is None else version)


def key_framework(key: tuple) -> str:
    return key[_FW]


def key_version(key: tuple) -> str:
    return key[_VERSION]


def with_version(key: tuple, version: str) -> tuple:
    """The same configuration key at another release of its framework."""
    return key[:_VERSION] + (public(version) if version else version,) + key[_VERSION + 1:]


def default_versions(keys: Iterable[tuple]) -> dict[str, str]:
    """Framework -> the release its configurations are compared with other frameworks at: the pinned one
    where it is among ``keys``, else the newest (:func:`bench.report.groups.default_version`)."""
    found: dict[str, set[str]] = {}
    for key in keys:
        found.setdefault(key_framework(key), set()).add(key_version(key))
    return {fw: public(default_version(fw, versions)) for fw, versions in found.items()}


def version_twins(keys: Iterable[tuple]) -> dict[tuple, tuple]:
    """Each configuration of a framework at a release other than the newest of that framework and
    configuration among ``keys`` -> the same configuration at the newest release."""
    keys = list(keys)
    newest_of: dict[tuple, str] = {}
    for key in keys:
        rest = with_version(key, "")
        newest_of[rest] = newest([newest_of.get(rest, ""), key_version(key)])
    return {key: with_version(key, newest_of[with_version(key, "")]) for key in keys
            if key_version(key) != newest_of[with_version(key, "")]}


def samples(timing: pd.DataFrame) -> pd.DataFrame:
    """``timing`` with every :data:`SAMPLE_KEYS` column as integers: a missing ``pass`` or
    ``process`` column (a file from before there were several) or an empty cell is 1; a precision
    in every row (a file from before float64 runs: ``fp32``); and a release in every row: a missing
    ``framework_version`` column or an empty cell is the pinned one."""
    out = timing.copy()
    for col in SAMPLE_KEYS:
        values = pd.to_numeric(out[col], errors="coerce") if col in out.columns else pd.Series(1, index=out.index)
        out[col] = values.fillna(1).astype(int)
    precision = out["precision"] if "precision" in out.columns else pd.Series(None, index=out.index)
    out["precision"] = precision.astype(object).where(precision.notna() & (precision != ""),
                                                      OPTIONAL_KEYS["precision"]).astype(str)
    versions = out["framework_version"] if "framework_version" in out.columns else pd.Series(None, index=out.index)
    out["framework_version"] = [public(v) if known(v) else pinned_version(str(fw))
                                for fw, v in zip(out["framework"], versions.astype(object), strict=True)]
    return out


def process_of(sample: tuple) -> tuple:
    """The worker process a sample's (pass, process, round) index came from: (pass, process)."""
    return tuple(sample[:2])


class Rounds(dict):
    """Configuration -> clean time per step indexed by (pass, process, round), with what every
    interval drawn from them needs to know: the between-run allowances (``drift_time`` for a time
    per step, ``drift_ratio`` for a ratio of two; :func:`bench.stats.widen`) and the slow process
    slots left out (``slow``: :func:`slow_slots`)."""

    def __init__(self, *args, drift_time: float = 0.0, drift_ratio: float = 0.0, slow: Sequence[Mapping] = (),
                 **kwargs) -> None:
        super().__init__(*args, **kwargs)
        self.drift_time, self.drift_ratio, self.slow = drift_time, drift_ratio, list(slow)

    def slowed(self, frame: pd.DataFrame) -> np.ndarray:
        """Per row of ``frame`` (timing rows with ``pass`` and ``process``: :func:`samples`), whether
        it belongs to a slow slot left out here."""
        gone = {(d["pass"], d["process"]) for d in self.slow}
        return np.array([(int(p), int(k)) in gone for p, k in zip(frame["pass"], frame["process"])], dtype=bool)


def round_times(timing: pd.DataFrame, threshold: float = CONTENTION_THRESHOLD, drift: Mapping[str, float] | None = None,
                slow_factor: float | None = None) -> Rounds:
    """Configuration -> clean time per step indexed by (pass, process, round) (contended samples dropped).

    Several rows of one configuration in one sample (several lr values) fold into their median.
    A process slot in which the machine itself ran ``slow_factor`` (default :data:`SLOW_SLOT`) or
    more slower (:func:`slow_slots`, found per pass) is left out too, like a contended sample: its
    configurations were not timed on the machine the others were. ``drift`` ({"time": .., "ratio":
    ..}) is the between-run allowance the intervals get (none by default).
    """
    drift = drift or {}
    found = Rounds(drift_time=float(drift.get("time", 0.0)), drift_ratio=float(drift.get("ratio", 0.0)))
    if timing is None or timing.empty:
        return found
    timing = samples(timing)
    clean = uncontended(timing, threshold)
    for _, grp in clean.groupby(list(TIMING_KEYS), sort=False):
        key = config_key(grp.iloc[0])
        found[key] = grp.groupby(list(SAMPLE_KEYS))["time_per_step_s"].median().dropna()
    factor = SLOW_SLOT if slow_factor is None else slow_factor
    paces = pace_rounds(clean)
    for p in sorted({int(i[0]) for times in found.values() for i in times.index}):
        one = {k: t[[int(i[0]) == p for i in t.index]] for k, t in found.items()}
        found.slow += slow_slots(one, factor)
        seen = {(d["pass"], d["process"]) for d in found.slow}
        paced = {k: t[[int(i[0]) == p for i in t.index]] for k, t in paces.items()}
        found.slow += [{**d, "by": "pace"} for d in slow_slots(paced, factor) if (d["pass"], d["process"]) not in seen]
    if found.slow:
        gone = {(d["pass"], d["process"]) for d in found.slow}
        for key, times in found.items():
            found[key] = times[[(int(i[0]), int(i[1])) not in gone for i in times.index]]
    found.slow.sort(key=lambda d: -d["factor"])
    return found


SLOW_SLOT = 1.2  # a process slot whose configurations ran this much slower than in the others, typically


def slow_slots(rounds: Mapping[tuple, pd.Series], factor: float = SLOW_SLOT) -> list[dict]:
    """Process slots in which the machine itself ran slow: for every slot (pass, process), the
    median over configurations of its median time over that configuration's median in the other
    slots; slots at ``factor`` or more, slowest first. Every framework's worker of a slot slowing
    alike is the machine (a host busy beyond the VM, whose steal counter and other processes stay
    quiet), not a worker. A ratio of two configurations timed back to back in such a slot is not
    safe either: the slowdown comes and goes within the slot, and need not hit both alike.
    :func:`round_times` leaves these slots out."""
    ratios: dict[tuple[int, int], list[float]] = {}
    for times in rounds.values():
        slot = pd.Series([(int(i[0]), int(i[1])) for i in times.index], index=times.index)
        per = times.groupby(slot.to_numpy()).median()
        if len(per) < 3:
            continue
        for s, med in per.items():
            others = float(np.median(per.drop(index=[s]).to_numpy(float)))
            if others > 0:
                ratios.setdefault(s, []).append(float(med) / others)
    slow = [{"pass": p, "process": k, "factor": float(np.median(r)), "configurations": len(r)}
            for (p, k), r in ratios.items() if np.median(r) >= factor]
    return sorted(slow, key=lambda d: -d["factor"])


def slow_slots_text(slow: Sequence[Mapping]) -> str:
    """"slow stretch: process slot 5 took 1.77x the other slots' time per step (...)" or ""."""
    if not slow:
        return ""
    def one(d: Mapping) -> str:
        slot = f"process slot {d['process']}" + (f" of pass {d['pass']}" if d["pass"] > 1 else "")
        if d.get("by") == "pace":
            return f"{slot} ran Python {d['factor']:.2f}x slower than the other slots (the workers' pace loop)"
        return f"{slot} took {d['factor']:.2f}x the other slots' time per step (every framework alike)"

    return (f"slow stretch: {'; '.join(one(d) for d in slow)}: the machine itself slowed while nothing "
            "inside it was measured busy; those samples are left out, like contended ones")


def time_interval(times: pd.Series, drift: float = 0.0) -> Interval:
    """The median of a configuration's clean samples (:func:`round_times`) with its two-level interval,
    widened by the between-run allowance ``drift`` (``Rounds.drift_time``)."""
    return widen(median_ci(times.to_numpy(float), groups=[process_of(i) for i in times.index]), drift)


def timing_table(timing: pd.DataFrame, threshold: float = CONTENTION_THRESHOLD,
                 drift: Mapping[str, float] | None = None) -> pd.DataFrame:
    """One row per configuration: median time per step with its interval, clean and contended samples.

    ``timing_n`` counts the clean samples behind the interval, ``timing_rounds`` all the samples
    (pass, process and round), ``timing_contended`` the samples left out (for contention, or for
    a slow slot of the machine's). ``drift``: the between-run allowances (:func:`round_times`).
    """
    cols = [*TIMING_KEYS, "time_per_step_s", "time_per_step_lo", "time_per_step_hi", "timing_n",
            "timing_rounds", "timing_contended"]
    if timing is None or timing.empty:
        return pd.DataFrame(columns=cols)
    clean = round_times(timing, threshold, drift)
    timing = samples(timing)
    flags = contended(timing.get("contention", pd.Series(np.nan, index=timing.index)), threshold)
    flags |= clean.slowed(timing)
    rows = []
    for _, grp in timing.assign(_bad=flags).groupby(list(TIMING_KEYS), sort=False):
        key = config_key(grp.iloc[0])
        ci = time_interval(clean.get(key, pd.Series(dtype=float)), clean.drift_time)
        per_sample = grp.groupby(list(SAMPLE_KEYS))["_bad"].any()
        rows.append({**dict(zip(TIMING_KEYS, key, strict=True)), "time_per_step_s": ci.est,
                     "time_per_step_lo": ci.lo, "time_per_step_hi": ci.hi, "timing_n": ci.n,
                     "timing_rounds": len(per_sample), "timing_contended": int(per_sample.sum())})
    return pd.DataFrame(rows, columns=cols)


def time_ratio(rounds: Mapping[tuple, pd.Series], num: tuple, den: tuple, scale: float = 1.0,
               drift: float | None = None) -> Interval:
    """Time of ``num`` over time of ``den`` (times ``scale``), paired by sample; NaN interval if unknown.

    Only samples where both configurations were timed clean in the same pass, process slot and
    round are paired: both were measured back to back, so the machine's drift cancels in each
    ratio. The interval resamples process slots, then the pairs within each, and is widened by the
    between-run allowance ``drift`` (by default ``rounds.drift_ratio``, none for a plain mapping).
    """
    drift = getattr(rounds, "drift_ratio", 0.0) if drift is None else drift
    a, b = rounds.get(num), rounds.get(den)
    if a is None or b is None:
        return NAN_INTERVAL
    both = a.index.intersection(b.index)
    if len(both) == 0:
        return NAN_INTERVAL
    ci = widen(ratio_ci(a[both].to_numpy(float), b[both].to_numpy(float), groups=[process_of(i) for i in both]),
               drift)
    return Interval(ci.est * scale, ci.lo * scale, ci.hi * scale, ci.n, ci.groups)


def protocol_text(rows: pd.DataFrame, meta: Mapping, baseline: str = BASELINE,
                  threshold: float = CONTENTION_THRESHOLD, slow: Sequence[Mapping] = (),
                  drift: Mapping[str, float] | None = None) -> str:
    """The report's paragraph on how the timing pass measured: how many processes, rounds and
    passes stand behind each number, how many samples were left out for contention, the slots
    in which the machine slowed (``slow``: :func:`slow_slots`) and the between-run allowances
    the intervals carry (``drift``)."""
    rows = samples(rows)
    procs = rows.groupby([*TIMING_KEYS, "pass"])["process"].nunique()
    rnds = rows.groupby([*TIMING_KEYS, "pass", "process"])["round"].nunique()
    passes = int(rows["pass"].nunique())

    def span(values: pd.Series) -> str:
        lo, hi = int(values.min()), int(values.max())
        return f"{lo}" if lo == hi else f"{lo}–{hi}"

    busy = int(contended(rows["contention"], threshold).sum())
    versions = rows.groupby("framework")["framework_version"].nunique()
    several = [str(fw) for fw, n in versions.items() if n > 1]
    how = (f"{span(procs)} worker process(es) per configuration"
           + (f" in each of {passes} passes" if passes > 1 else "")
           + f", started slot by slot across the pass, each timed in {span(rnds)} round(s) after "
           f"{meta.get('warmup_rounds', '?')} warm-up round(s), configurations interleaved round by round")
    extras = [f"workers pinned to {'their own cores' if meta.get('pin') else 'no core'}" if "pin" in meta else "",
              f"ASLR {'off' if (meta.get('aslr') or {}).get('used') else 'on'}" if "aslr" in meta else ""]
    extra = ", ".join(e for e in extras if e)
    paced = pace_medians(uncontended(rows, threshold))
    return (f"Speed from the timing pass ({meta.get('started', 'start not recorded')}, host {meta.get('host', '?')}): "
            f"{how}" + (f" ({extra})" if extra else "") + ". "
            f"ms/step: median over clean samples with its 95 % interval, a two-level bootstrap (processes, then "
            f"rounds within each); time vs {baseline}: median of the per-sample ratios against the {baseline} "
            f"configuration timed in the same process slot and round, with its 95 % interval, resampled the same "
            f"way; rounds: clean / all samples. {busy} of {len(rows)} timed rows ran under contention (other "
            f"processes used over {threshold:.0%} of the CPU) and are left out."
            + (f" Several releases of {', '.join(several)} were timed, each a configuration of its own in the same "
               "rounds; the ratios against the baseline compare each framework's default release, the others are "
               "compared with their framework's newest in the section Versions." if several else "")
            + (f" Note the {slow_slots_text(slow)}." if slow else "")
            + (f" {drift_text(drift)}" if drift_text(drift) else "")
            + (f" The interpreter's pace (a fixed Python loop each worker timed beside every sample; where another "
               f"run's differs, the machine did, though the same pace does not prove the same machine): "
               f"{pace_text(paced)}." if paced else "")
            + failed_text(meta))


def failed_text(meta: Mapping) -> str:
    """The sentence naming the configurations the timing pass could not time, and why (timing.json's
    ``configs``), or "" when it timed them all."""
    configs = meta.get("configs")  # a list of rows; a count in files of older passes, which named none
    failed = [c for c in configs if isinstance(c, Mapping) and c.get("error")] if isinstance(configs, list) else []
    if not failed:
        return ""
    said = "; ".join(f"{config_label(c)}: {c['error']}" for c in failed)
    return f" **The pass could not time {len(failed)} configuration{'s' if len(failed) > 1 else ''}** ({said})."


def config_label(row: Mapping) -> str:
    """``jax adam/native/eager bs32``: the framework, then :func:`config_rest`."""
    return f"{row['framework']} {config_rest(row)}"


def config_rest(row: Mapping) -> str:
    """``adam/native/eager bs32``, with the model unless the tutorial's and the precision unless float32."""
    words = [f"{row['optimizer']}/{row['impl']}/{row['mode']} bs{row['batch_size']}"]
    for key in ("model", "precision"):  # named only when not what a row without it means
        value = row.get(key) or OPTIONAL_KEYS[key]
        if value != OPTIONAL_KEYS[key]:
            words.append(str(value))
    return " ".join(words)


def drift_text(drift: Mapping[str, float] | None) -> str:
    """The sentence on the between-run allowances the intervals carry, or "" when they carry none."""
    drift = drift or {}
    time, ratio = float(drift.get("time", 0.0)), float(drift.get("ratio", 0.0))
    if not (time > 0 or ratio > 0):
        return ""
    return (f"Every interval also carries a between-run allowance, {time:.1%} for a time per step and {ratio:.1%} "
            "for a ratio (the relative spread of one configuration from one run of the pass to the next on this "
            "kind of machine, beyond what one pass's processes show; measured with `python -m bench.timing "
            "passes=3`), so that it holds for the next run too, not only for this one.")


def baseline_twin(key: tuple, defaults: Mapping[str, str], baseline: str = BASELINE) -> tuple | None:
    """The configuration ``key`` is compared with: the baseline framework at its default release, when
    ``key`` is at its own framework's default release (``defaults``: :func:`default_versions`); None for
    any other release, which is compared with its framework's newest instead (like with like)."""
    if key_version(key) != defaults.get(key_framework(key), key_version(key)):
        return None
    return with_framework(key, baseline, defaults.get(baseline))


def baseline_ratios(summary: pd.DataFrame, rounds: Mapping[tuple, pd.Series], baseline: str = BASELINE
                    ) -> pd.DataFrame:
    """Per summary row: its time per step over the baseline framework's, same configuration otherwise.

    Columns ``time_ratio_vs_<baseline>``, ``_lo``, ``_hi``, ``_n``; the baseline's own rows get 1.
    Only rows at their framework's default release get one, against the baseline at its default
    release (:func:`baseline_twin`); a row at another release gets NaN.
    """
    name = f"time_ratio_vs_{baseline}"
    keys = [config_key(row) for _, row in summary.iterrows()]
    defaults = default_versions(keys)
    out = []
    for key in keys:
        base = baseline_twin(key, defaults, baseline)
        ci = time_ratio(rounds, key, base) if base is not None else NAN_INTERVAL
        out.append({name: ci.est, f"{name}_lo": ci.lo, f"{name}_hi": ci.hi, f"{name}_n": ci.n})
    return pd.DataFrame(out, index=summary.index, columns=[name, f"{name}_lo", f"{name}_hi", f"{name}_n"])


def version_ratios(rounds: Mapping[tuple, pd.Series]) -> dict[tuple, tuple[tuple, Interval]]:
    """Each timed configuration at a release other than its framework's newest -> (the newest's
    configuration, time per step over the newest's): paired by pass, process slot and round, since
    the releases were timed in the same interleaved rounds; a two-level interval."""
    return {key: (twin, time_ratio(rounds, key, twin)) for key, twin in version_twins(rounds).items()
            if twin in rounds}


def interval_text(ci: Interval, unit_scale: float = 1.0, digits: int = 3) -> str:
    """``1.23 [1.10, 1.40]``; ``1.23 (no interval)``; ``n/a``."""
    if not math.isfinite(ci.est):
        return "n/a"
    est = f"{ci.est * unit_scale:.{digits}g}"
    if not ci.known:
        return f"{est} (no interval)"
    return f"{est} [{ci.lo * unit_scale:.{digits}g}, {ci.hi * unit_scale:.{digits}g}]"

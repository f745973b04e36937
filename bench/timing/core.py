"""Parent side of the timing pass: find the sweep's configurations, time them under the timing
protocol (:mod:`bench.timing.protocol`), write ``timing/timing.csv`` + ``timing.json``, print a table.

A sweep's epoch times are single samples taken while other lanes train beside them; here
every configuration of the sweep is timed in several worker processes (``bench.timing.worker``),
started slot by slot across the pass (process k of every configuration, then process k+1), each
pinned to its own core(s), warmed up and timed in interleaved rounds A B C ... A B C ... while
this pass holds the machine-wide CPU lock exclusively (no run of ours trains). So a slow stretch
of the machine hits every configuration alike, a ratio of two configurations is taken within
each process slot and round, and what differs from one process to the next (address-space
layout, allocator state, the core) is sampled instead of being frozen into one interval. Each
median and ratio gets a two-level bootstrap interval: processes, then rounds within each.

``passes=N`` repeats the whole pass N times with fresh processes and checks whether each
pass's intervals contain the other passes' medians (:mod:`bench.timing.honesty`).

The framework's release is part of a configuration: runs of jax 0.9.2 and jax 0.10.2 are two
configurations, each worker started in its run's interpreter (that release's venv,
:func:`bench.envs.interpreter`) and timed in the same interleaved rounds as the other. So besides
every framework's ratio to the baseline (each at its default release: like with like), each
release other than a framework's newest gets its time per step over the newest's, paired by pass,
process slot and round.

Imports neither framework: each worker imports its own.
"""
from __future__ import annotations

import dataclasses
import socket
import time
from collections.abc import Callable, Iterable, Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from bench.clock import CONTENTION_THRESHOLD, DRIFT
from bench.envs import public, python_for
from bench.exits import BadInput
from bench.frameworks import BASE
from bench.machine import cpu_name
from bench.options import Option, Options, boolean, choice, integer, number, pathname
from bench.report.groups import pinned_version
from bench.report.pace import pace_medians, pace_text
from bench.report.speed import (
    TIMING_KEYS,
    Rounds,
    baseline_twin,
    config_key,
    config_label,
    config_rest,
    contended,
    default_versions,
    drift_text,
    key_framework,
    round_times,
    samples,
    slow_slots_text,
    time_interval,
    time_ratio,
    uncontended,
    version_ratios,
)
from bench.results import FINISHED, read_json, write_csv, write_json
from bench.timing.honesty import honesty, print_honesty
from bench.timing.protocol import (  # noqa: F401  (Worker, measure, steps_for: the protocol's parts, used by tests and other passes)
    ASLR,
    REPLY_TIMEOUT_S,
    START_TIMEOUT_S,
    Settings,
    Worker,
    measure,
    steps_for,
    time_configs,
)
from bench.timing.schedule import MIN_PROCESS_ROUNDS
from models.layers import DEFAULT_MODEL

COLUMNS = (
    "framework", "optimizer", "impl", "mode", "batch_size", "lr", "dataset", "n_train", "device",
    "threads", "round", "steps", "time_s", "time_per_step_s", "cpu_time_s", "contention",
    "model",  # appended later: a timing.csv without it timed the tutorial's "mlp"
    "process", "pass",  # appended later: a timing.csv without them is one pass of one worker process
    "framework_version",  # appended later: a timing.csv without it timed each framework's pinned release
    "pace_s",  # appended later: the worker's interpreter pace beside the sample (bench.report.pace); none before
    "precision",  # appended later: a timing.csv without it timed float32 runs only
)
# What makes two runs the same configuration for speed; lr, seed and epochs do not change a step's cost,
# the model and the framework's release do. The framework comes first (print_table swaps it for the baseline's).
KEY = ("framework", "optimizer", "impl", "mode", "batch_size", "dataset", "n_train", "device", "threads", "model",
       "precision", "framework_version")
BASELINE = BASE  # every other framework's time is given as a ratio to this one (the registry's)


# ------------------------------------------------------------------ arguments
OPTIONS = Options(
    "python -m bench.timing",
    f"""Time the sweep found in results_dir: every distinct configuration of its finished runs
    (framework x release x optimizer x impl x mode x batch size x data x model x precision x device x
    threads), each
    in its runs' interpreter (a framework release's own venv), in several
    worker processes, started slot by slot across the pass, each warmed up and timed in interleaved
    rounds (A B C ... A B C ...) while this pass holds the machine's CPU lock exclusively. Writes
    results_dir/timing/timing.csv (one row per configuration, pass, process and round) and
    timing.json, and prints each configuration's median time per step, every framework's ratio
    to {BASELINE} (each at its default release) and every other release's ratio to its framework's
    newest, each with its 95 % two-level bootstrap interval (processes, then rounds) and the
    processes and rounds behind it.""",
    {
        "results_dir": Option("results", "the sweep's folder (its runs/ are timed)", pathname),
        "processes": Option(5, "worker processes per configuration, each started, warmed up and timed in "
                            "its own slot of the pass; 1 is the one-process protocol, whose intervals say "
                            "nothing about the next process (kept to measure what processes buy)", integer(1)),
        "rounds": Option(3, f"timed interleaved rounds per process (at least {MIN_PROCESS_ROUNDS}); cut down "
                         "to fit budget_s, never below that", integer(MIN_PROCESS_ROUNDS)),
        "warmup_rounds": Option(1, "untimed rounds at the start of each process", integer(1)),
        "budget_s": Option(300.0, "seconds one pass aims to fit, every worker's start-up included (measured on "
                           "the first slot); spent on processes, then rounds, then longer samples", number()),
        "min_sample_s": Option(0.2, "the shortest sample the budget is planned with: long enough that a "
                               "scheduler tick does not matter", number()),
        "host": Option(True, "one worker process per framework (and environment) and slot builds and times all "
                       "of that framework's configurations, so a slot imports each framework once; false: "
                       "a process per configuration", boolean),
        "pin": Option(True, "pin each worker to its own core(s) (as many as the configuration's threads), "
                      "a different one for each process; false: the scheduler places them", boolean),
        "aslr": Option("on", "off: run each worker under setarch -R (address-space layout not randomised) "
                       "where the kernel permits it; on: as the kernel does", choice(*ASLR)),
        "passes": Option(1, "independent passes, each with its own processes; 2 or more also check whether "
                         "each pass's intervals contain the other passes' medians (timing/honesty.json)",
                         integer(1)),
        "contention_threshold": Option(CONTENTION_THRESHOLD, "a sample during which other processes used more "
                                       "than this share of the CPUs is left out of every interval and counted",
                                       number(high=1.0)),
        "drift_time": Option(DRIFT["time"], "between-run allowance of a time per step: its relative spread from "
                             "one run of the pass to the next, beyond what one pass's processes show, added to "
                             "every interval (0: the pass's own spread only; passes=3 measures it)",
                             number(low_inclusive=True)),
        "drift_ratio": Option(DRIFT["ratio"], "the same for a time ratio of two configurations (smaller: what "
                              "slows the machine slows both)", number(low_inclusive=True)),
    },
    positional=("results_dir",),
)


def parse_args(argv: list[str]) -> dict[str, Any]:
    """``[results_dir] [key=value ...]`` over :data:`OPTIONS`; anything else is BadInput."""
    return OPTIONS.parse(argv)


# ------------------------------------------------------------------ the sweep's configurations
def sweep_configs(results_dir: Path) -> list[dict[str, Any]]:
    """One entry per distinct :data:`KEY` among the finished runs: its row fields, lr and spec.

    A completed run is preferred to a diverged one as the source of the spec (and so of the lr),
    so the worker does not time arithmetic on NaN weights.
    """
    found: dict[tuple, dict[str, Any]] = {}
    for path in sorted((results_dir / "runs").glob("*/run.json")):
        info = read_json(path)
        if not info or info.get("status") not in FINISHED or not isinstance(info.get("config"), dict):
            continue
        spec = info["config"]
        row = {
            "framework": spec["framework"]["name"], "optimizer": spec["optimizer"]["name"],
            "impl": spec["optimizer"]["impl"], "mode": spec["mode"],
            "batch_size": info.get("batch_size_resolved", spec["batch_size"]),
            "dataset": info.get("dataset", spec["data"]["name"]), "n_train": info.get("n_train"),
            "device": spec["device"], "threads": spec["threads"],
            "model": (spec.get("model") or {}).get("name") or DEFAULT_MODEL,
            "precision": spec.get("precision") or "fp32",  # a float64 run is timed in float64, apart
            # the release the run's child imported; else the one it asked for; else the pinned one
            "framework_version": public(str(info.get("framework_version") or spec["framework"].get("version")
                                            or pinned_version(spec["framework"]["name"]))),
        }
        key = tuple(row[k] for k in KEY)
        if key not in found or (found[key]["status"] != "completed" and info["status"] == "completed"):
            found[key] = {"row": {**row, "lr": spec["optimizer"]["lr"]}, "spec": spec,
                          "run_id": info.get("run_id"), "status": info["status"]}
    return sorted(found.values(), key=lambda c: tuple(str(c["row"][k]) for k in KEY))


def label(row: Mapping[str, Any], release: bool = False) -> str:
    """``jax adam/native/eager bs32``; ``release``: ``jax 0.9.2 adam/...`` (a pass with several releases of it);
    a model other than the tutorial's and a precision other than float32 are named after it."""
    if release:
        return config_label({**row, "framework": f"{row['framework']} {row['framework_version']}"})
    return config_label(row)


def several_releases(rows: Iterable[Mapping[str, Any]]) -> set[str]:
    """The frameworks that ``rows`` (configurations' or samples' rows) hold at more than one release."""
    found: dict[str, set[str]] = {}
    for row in rows:
        found.setdefault(str(row["framework"]), set()).add(str(row.get("framework_version") or ""))
    return {fw for fw, versions in found.items() if len(versions) > 1}


def labeller(rows: Iterable[Mapping[str, Any]]) -> Callable[[Mapping[str, Any]], str]:
    """:func:`label` that names the release of every framework ``rows`` hold at several."""
    several = several_releases(rows)
    return lambda row: label(row, row["framework"] in several)


def key_labeller(keys: Iterable[tuple]) -> Callable[[tuple], str]:
    """:func:`labeller` for configuration keys of :mod:`bench.report.speed` (``TIMING_KEYS``)."""
    rows = [dict(zip(TIMING_KEYS, key, strict=True)) for key in keys]
    name = labeller(rows)
    return lambda key: name(dict(zip(TIMING_KEYS, key, strict=True)))


def prepare(configs: Iterable[Mapping[str, Any]]) -> None:
    """Build the venv of every release the configurations train at, before anything is timed (a build
    prints its one line; a venv that is there costs nothing): no worker's start-up, from which the pass's
    budget is planned, includes a build."""
    for config in configs:
        python_for(config["spec"])


# ------------------------------------------------------------------ the pass
def timing_pass(opts: dict[str, Any], command: str) -> int:
    results_dir = Path(opts["results_dir"])
    configs = sweep_configs(results_dir)
    if not configs:
        unreadable = [p for p in sorted((results_dir / "runs").glob("*/run.json")) if read_json(p) is None]
        raise BadInput(f"no finished runs under {results_dir / 'runs'}"
                       + (f" ({len(unreadable)} run.json unreadable, the first {unreadable[0]})" if unreadable else "")
                       + ": run a sweep first")
    out = results_dir / "timing"
    settings = Settings.from_options(opts)
    prepare(configs)
    name = labeller(c["row"] for c in configs)
    t0, started = time.perf_counter(), time.strftime("%Y-%m-%dT%H:%M:%S%z")
    print(f"[timing] {len(configs)} configuration(s) x {settings.processes} processes x {settings.rounds} rounds"
          + (f", {opts['passes']} passes" if opts["passes"] > 1 else "") + f", budget {settings.budget_s:g} s a pass"
          + f", pinned {'on' if settings.pin else 'off'}, ASLR {settings.aslr}", flush=True)
    rows: list[dict[str, Any]] = []
    passes, errors = [], {}
    for p in range(1, opts["passes"] + 1):
        logs = out / "logs" / (f"pass-{p}" if opts["passes"] > 1 else "")
        got = time_configs(configs, settings, logs, name)
        rows += [{**r, "pass": p} for r in got.rows]
        errors.update(got.errors)
        passes.append({"pass": p, "plan": dataclasses.asdict(got.plan) if got.plan else None,
                       "start_up_s": got.start_up_s,
                       "measure_start": got.measure_start, "measure_end": got.measure_end, "aslr": got.aslr,
                       "steps": got.steps, "processes": got.processes})
    meta: dict[str, Any] = {
        "command": command, "started": started, "host": socket.gethostname(), "cpu": cpu_name(),
        "processes": settings.processes, "rounds": settings.rounds, "warmup_rounds": settings.warmup_rounds,
        "budget_s": settings.budget_s, "min_sample_s": settings.min_sample_s, "passes": opts["passes"],
        "pin": settings.pin, "aslr": passes[-1]["aslr"], "sample_s": (passes[0]["plan"] or {}).get("sample_s"),
        "start_up_s": passes[0]["start_up_s"], "elapsed_s": time.perf_counter() - t0,
        "measure_start": passes[0]["measure_start"], "measure_end": passes[-1]["measure_end"],
        "contention_threshold": opts["contention_threshold"], "pass_details": passes,
        "configs": [{**c["row"], "run_id": c["run_id"], "steps": passes[0]["steps"].get(i, 0), "error": errors.get(i)}
                    for i, c in enumerate(configs)],
    }
    drift = {"time": opts["drift_time"], "ratio": opts["drift_ratio"]}
    meta["drift"] = drift
    meta["summary"], rounds = summary(rows, opts["contention_threshold"], drift)
    meta["slow_slots"] = rounds.slow
    timed = samples(pd.DataFrame(rows)) if rows else pd.DataFrame()
    meta["pace_s"] = pace_medians(uncontended(timed, opts["contention_threshold"]))
    write_csv(out / "timing.csv", rows, COLUMNS)
    write_json(out / "timing.json", meta)
    print_table(meta["summary"], opts["contention_threshold"], rounds.slow, drift)
    if meta["pace_s"]:
        print(f"\nthe interpreter's pace (a fixed Python loop beside every sample, median): "
              f"{pace_text(meta['pace_s'])}")
    if opts["passes"] > 1 and rows:
        check = honesty(timed, opts["contention_threshold"], key_labeller(rounds), BASELINE, drift=drift)
        write_json(out / "honesty.json", {"command": command, "started": started, **check})
        print_honesty(check)
    print(f"[timing] {time.perf_counter() - t0:.0f} s; wrote {out / 'timing.csv'}", flush=True)
    return 1 if errors else 0


# ------------------------------------------------------------------ the numbers and the table
def summary(rows: list[dict[str, Any]], threshold: float,
            drift: Mapping[str, float] | None = None) -> tuple[list[dict[str, Any]], Rounds]:
    """Per configuration: the median time per step, its interval, and what stands behind it (clean
    samples, processes, rounds per process, samples left out for contention or a slow slot); for
    every framework but the baseline at its default release, its time ratio to the baseline's twin
    configuration (at the baseline's default release); and for every release but a framework's
    newest, its time ratio to the newest's twin configuration. Also the clean samples themselves
    (:func:`round_times`, with the slow slots it found), from which all of it was drawn."""
    if not rows:
        return [], round_times(pd.DataFrame(), threshold, drift)
    df = samples(pd.DataFrame(rows))
    clean = round_times(df, threshold, drift)
    busy = contended(df["contention"], threshold)
    slowed = clean.slowed(df)
    keys = [config_key(grp.iloc[0]) for _, grp in df.groupby(list(TIMING_KEYS), sort=False)]
    defaults, releases, name = default_versions(keys), version_ratios(clean), key_labeller(keys)
    several = several_releases(dict(zip(TIMING_KEYS, k, strict=True)) for k in keys)
    out = []
    for _, grp in df.assign(_bad=busy, _slow=slowed & ~busy).groupby(list(TIMING_KEYS), sort=False):
        key = config_key(grp.iloc[0])
        times = clean.get(key, pd.Series(dtype=float))
        iv = time_interval(times, clean.drift_time)
        fw = key_framework(key)
        entry = {"configuration": name(key), "key": dict(zip(TIMING_KEYS, key, strict=True)),
                 "framework_label": f"{fw} {key[-1]}" if fw in several else fw,
                 "steps": int(grp["steps"].iloc[0]), "median_s": iv.est,
                 "lo_s": iv.lo, "hi_s": iv.hi, "n": iv.n, "processes": iv.groups if iv.n else 0,
                 "samples": len(grp), "contended": int(grp["_bad"].sum()), "slow_slot": int(grp["_slow"].sum()),
                 "rounds_per_process": int(grp.groupby(["pass", "process"])["round"].nunique().max()),
                 "contention_median": float(np.nanmedian(grp["contention"])) if grp["contention"].notna().any()
                 else None}
        twin = baseline_twin(key, defaults, BASELINE)
        if key_framework(key) != BASELINE and twin is not None and twin in clean:
            ratio = time_ratio(clean, key, twin)
            entry.update({"ratio_to": BASELINE, "ratio": ratio.est, "ratio_lo": ratio.lo, "ratio_hi": ratio.hi,
                          "ratio_n": ratio.n, "ratio_processes": ratio.groups})
        if key in releases:  # another release of the framework, timed in the same rounds as its newest
            newest, ratio = releases[key]
            entry.update({"version_ratio_to": name(newest), "version_ratio": ratio.est, "version_ratio_lo": ratio.lo,
                          "version_ratio_hi": ratio.hi, "version_ratio_n": ratio.n,
                          "version_ratio_processes": ratio.groups})
        out.append(entry)
    return out, clean


def _fmt_time(est: float, lo: float, hi: float) -> str:
    if not np.isfinite(est):
        return "n/a"
    scale, unit = (1e3, "ms") if est >= 1e-3 else (1e6, "us")
    if not (np.isfinite(lo) and np.isfinite(hi)):
        return f"{est * scale:.1f} {unit}"
    return f"{est * scale:.1f} [{lo * scale:.1f}, {hi * scale:.1f}] {unit}"


def print_table(entries: list[dict[str, Any]], threshold: float, slow: Sequence[Mapping] = (),
                drift: Mapping[str, float] | None = None) -> None:
    """Median time per step (95 % interval) per configuration (``entries``: :func:`summary`), with the
    clean samples, processes and rounds behind it; each framework vs the baseline per method.
    Contended samples are left out, and so are the slots in which the machine slowed (``slow``:
    :func:`bench.report.speed.slow_slots`); ``drift``: the between-run allowances in the intervals."""
    print(f"\n{'configuration':<44} {'steps':>7}  {'time per step (95% CI)':<30} {'clean/all':>9}  "
          f"{'processes x rounds':<18} contention (>{threshold:g})")
    for e in entries:
        share = (f"{e['contention_median']:.2f} ({e['contended']}/{e['samples']})"
                 if e["contention_median"] is not None else "n/a")
        print(f"{e['configuration']:<44} {e['steps']:>7}  {_fmt_time(e['median_s'], e['lo_s'], e['hi_s']):<30} "
              f"{e['n']:>4}/{e['samples']:<4}  {e['processes']} x {e['rounds_per_process']:<14} {share}")
    busy = sum(e["contended"] for e in entries)
    if busy:
        print(f"\nnote: {busy} of {sum(e['samples'] for e in entries)} samples ran while other processes used "
              f"more than {threshold:.0%} of the CPUs (column contention): the machine was shared; they are "
              "left out of every interval")
    if slow:
        print(f"\nnote: {slow_slots_text(slow)}")
    if drift_text(drift):
        print(f"\nnote: {drift_text(drift)}")
    ratios = [e for e in entries if "ratio" in e]
    if ratios:
        print("\ntime-per-step ratios, paired by process slot and round (median, 95% CI, two-level):")
        for e in ratios:
            k = e["key"]
            iv = f"{e['ratio']:.3g} [{e['ratio_lo']:.3g}, {e['ratio_hi']:.3g}]" if np.isfinite(e["ratio_lo"]) \
                else f"{e['ratio']:.3g} (no interval)"
            print(f"  {config_rest(k)}: "
                  f"{e['framework_label']}/{BASELINE} = {iv} (n={e['ratio_n']}, {e['ratio_processes']} processes)")
    releases = [e for e in entries if "version_ratio" in e]
    if releases:
        print("\ntime per step of each release over its framework's newest, same configuration, paired by process "
              "slot and round (median, 95% CI, two-level):")
        for e in releases:
            iv = (f"{e['version_ratio']:.3g} [{e['version_ratio_lo']:.3g}, {e['version_ratio_hi']:.3g}]"
                  if np.isfinite(e["version_ratio_lo"]) else f"{e['version_ratio']:.3g} (no interval)")
            print(f"  {e['configuration']} / {e['version_ratio_to']} = {iv} (n={e['version_ratio_n']}, "
                  f"{e['version_ratio_processes']} processes)")
    print(flush=True)

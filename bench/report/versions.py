"""Releases of one framework side by side: their labels on the page and the section "Versions" (pure).

A results folder may hold runs of one framework at several releases (``framework.version``). Then
each release is a framework of its own to the report, labelled ``"jax 0.9.2"`` and ``"jax 0.10.2"``
in every table, figure and sentence (:func:`label`, which adds the ``fw_label`` column the other
modules read, and ``fw_default``: is the row at its framework's default release). Where every
framework ran at one release, nothing changes: the label is the framework's name.

The section "Versions" answers "did the upgrade make us faster or slower, and did it change the
numbers?" per framework: each release's time per step over its framework's newest release's, from
the timing pass (the releases were timed as configurations of their own in the same interleaved
rounds, so each ratio is paired by pass, process slot and round, with the two-level interval of
:func:`bench.report.speed.version_ratios`), and the largest parameter difference after N steps of
the ``bench.parity`` checks that compared two releases step by step (:func:`bench.parity.section.version_checks`).
"""
from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from pathlib import Path

import pandas as pd

from bench.envs import public
from bench.report.groups import (
    default_version,
    framework_label,
    framework_order,
    known,
    method_rank,
    version_key,
)
from bench.report.render import Part
from bench.report.speed import (
    config_key,
    interval_text,
    key_framework,
    key_version,
    samples,
    time_interval,
    version_ratios,
    with_version,
)
from bench.stats import Interval
from models.layers import DEFAULT_MODEL

BRIEF = 3  # a release's sentence lists at most this many configurations' ratios, else their lowest and highest


# ------------------------------------------------------------------ labels
def defaults_of(metrics: pd.DataFrame) -> dict[str, str]:
    """Framework -> its default release among the runs (``bench.report.groups.default_version``)."""
    if metrics.empty or "framework_version" not in metrics.columns:
        return {}
    return {str(fw): default_version(str(fw), grp) for fw, grp in metrics.groupby("framework")["framework_version"]}


def label(frame: pd.DataFrame, several: set[str], defaults: Mapping[str, str]) -> pd.DataFrame:
    """``frame`` with ``fw_label`` (``"jax 0.9.2"`` for a framework in ``several``, else its name) and
    ``fw_default`` (the row is at its framework's default release, or recorded none)."""
    if frame.empty:
        return frame
    versions = (frame["framework_version"].astype(object) if "framework_version" in frame.columns
                else pd.Series(None, index=frame.index, dtype=object))
    return frame.assign(
        fw_label=[framework_label(fw, v, fw in several) for fw, v in zip(frame["framework"], versions, strict=True)],
        fw_default=[not known(v) or public(str(v)) == public(defaults.get(fw, str(v)))
                    for fw, v in zip(frame["framework"], versions, strict=True)])


# ------------------------------------------------------------------ the numbers
def _configuration(key: tuple, keys: Sequence[tuple]) -> str:
    """``adam/native/eager bs32``, plus the model, dataset and device where the keys hold several."""
    at = dict(zip(("dataset", "model", "device"), (0, 1, 2), strict=True))
    row = {"dataset": key[0], "model": key[1], "device": key[2], "optimizer": key[4], "impl": key[5],
           "mode": key[6], "batch_size": key[7]}
    words = [f"{row['optimizer']}/{row['impl']}/{row['mode']} bs{row['batch_size']}"]
    words += [str(row[k]) for k, i in at.items() if len({k2[i] for k2 in keys}) > 1
              or (k == "model" and row[k] != DEFAULT_MODEL)]
    return " ".join(words)


def timed_releases(rounds: Mapping[tuple, pd.Series], several: set[str]) -> pd.DataFrame:
    """One row per timed configuration of a framework in ``several`` and release: its median time per
    step, and its time over its framework's newest release's (same configuration, paired by round)."""
    ratios = version_ratios(rounds)
    keys = [k for k in rounds if key_framework(k) in several and len(rounds[k])]
    rows = []
    for key in keys:
        time = time_interval(rounds[key], getattr(rounds, "drift_time", 0.0))
        newest, ratio = ratios.get(key, (key, None))
        behind = ratio or time
        rows.append({"framework": key_framework(key), "release": key_version(key),
                     "configuration": _configuration(key, keys), "_rest": str(with_version(key, "")),
                     "ms/step (timing pass)": interval_text(Interval(*(v * 1e3 for v in time[:3]), time.n)),
                     "time ÷ newest's": "newest" if ratio is None else interval_text(ratio),
                     "newest": key_version(newest), "ratio": ratio,
                     "n": f"{behind.n} samples, {behind.groups} processes"})
    table = pd.DataFrame(rows)
    if table.empty:
        return table
    order = {fw: i for i, fw in enumerate(framework_order(table["framework"]))}
    releases = {v: i for i, v in enumerate(sorted(set(table["release"]), key=version_key))}
    table = table.assign(_f=table["framework"].map(order), _v=table["release"].map(releases),
                         _m=[method_rank(c.split("/", 1)[0]) for c in table["configuration"]])
    # per framework and configuration (methods in their registry order), its releases oldest first
    return (table.sort_values(["_f", "_m", "_rest", "_v"]).drop(columns=["_f", "_m", "_v", "_rest"])
            .reset_index(drop=True))


def _ratio_words(rows: pd.DataFrame) -> str:
    """``×1.05 [1.01, 1.09] (adam/native/eager bs32)``, each configuration up to :data:`BRIEF`, else the extremes."""
    items = [(r["ratio"].est, f"×{interval_text(r['ratio'])} ({r['configuration']})") for _, r in rows.iterrows()
             if r["ratio"] is not None and math.isfinite(r["ratio"].est)]
    if not items:
        return "not timed clean in the same rounds as the newest"
    items.sort(key=lambda e: e[0])
    if len(items) <= BRIEF:
        return ", ".join(text for _, text in items)
    return f"from {items[0][1]} to {items[-1][1]} over {len(items)} configurations"


def sentences(versions: Mapping[str, list[str]], timed: pd.DataFrame, checks: pd.DataFrame,
              timing: pd.DataFrame | None) -> list[str]:
    """Per framework with several releases, one line per release other than the newest: its time per
    step over the newest's (``timed``: :func:`timed_releases`; ``timing``: the timing pass's rows, None
    without one) and how far apart their parameters ended after N steps (``checks``: parity)."""
    out = []
    keys = [] if timing is None else [config_key(row) for row in samples(timing).to_dict("records")]
    in_pass = {(key_framework(k), key_version(k)) for k in keys}  # timed, clean or not
    for fw, releases in versions.items():
        newest = releases[-1]
        for release in releases[:-1]:
            mine = timed[(timed["framework"] == fw) & (timed["release"] == release)] if len(timed) else timed
            if timing is None:
                speed = "no timing pass (`python -m bench.timing`)"
            elif len(mine):
                speed = "time per step " + _ratio_words(mine)
            elif (fw, release) in in_pass:
                speed = ("timed, but no sample of it ran clean (other processes used the CPU beyond the contention "
                         "threshold), so no time per step is given")
            else:
                speed = "not in the timing pass"
            pair = checks[[f == fw and {public(a), public(b)} == {release, newest} for f, a, b in
                           zip(checks["framework"], checks["version_a"], checks["version_b"], strict=True)]]
            if len(pair):
                worst = pair.loc[pair["param@N"].idxmax()]
                params = (f"parameters at most {worst['param@N']:.1e} of their scale apart after {int(worst['n'])} "
                          f"steps ({worst['optimizer']} {worst['impl']}; {len(pair)} parity check"
                          f"{'s' if len(pair) != 1 else ''})")
            else:
                params = f"no parity check compares them (`python -m bench.parity frameworks.{fw}.version={release}`)"
            out.append(f"**{fw} {release} against {fw} {newest}** (the newest here): {speed}; {params}.")
    return out


def releases_of(metrics: pd.DataFrame, several: set[str]) -> dict[str, list[str]]:
    """Framework in ``several`` (registry order) -> its releases among the runs, oldest first."""
    out = {}
    for fw in framework_order(several):
        found = {public(str(v)) for v in metrics.loc[metrics["framework"] == fw, "framework_version"] if known(v)}
        out[fw] = sorted(found, key=version_key)
    return out


# ------------------------------------------------------------------ the section
def versions_part(metrics: pd.DataFrame, rounds: Mapping[tuple, pd.Series], timing: pd.DataFrame | None,
                  results_dir: Path, several: set[str], defaults: Mapping[str, str], baseline: str) -> Part | None:
    """The section "Versions" (``rounds``: the timing pass's clean samples, ``timing``: its rows, None
    without one); None where every framework ran at one release."""
    if not several:
        return None
    from bench.parity.section import version_checks  # neutral: reads the parity CSVs

    versions = releases_of(metrics, several)
    timed = timed_releases(rounds, several) if timing is not None else pd.DataFrame()
    checks = version_checks(results_dir)
    part = Part("versions", "Versions")
    listed = "; ".join(f"{fw} {', '.join(v)}" for fw, v in versions.items())
    chosen = ", ".join(f"{fw} {public(defaults[fw])}" for fw in versions if fw in defaults)
    part.text(f"Some frameworks ran at more than one release here ({listed}). Each release is a framework of its "
              "own in every table and figure of this report; its releases share the framework's colour, with a line "
              "style (or a hatch) each. The tutorial's claims and every time ratio against "
              f"{baseline} use each framework's default release, the pinned one where it ran ({chosen}). Here each "
              "release is compared with its framework's newest: *time per step* from the timing pass, where the "
              "releases were configurations of their own timed in the same interleaved rounds, so each ratio is "
              "paired by pass, process slot and round (median with its 95 % two-level interval: processes, then "
              "rounds); *parameters*: the largest difference between the two releases' weights after N steps, "
              "relative to each tensor's scale, from `python -m bench.parity` checks that trained both from the "
              "same start on the same batches.")
    for line in sentences(versions, timed, checks, timing):
        part.text(line)
    if len(timed):
        part.table(timed.drop(columns=["newest", "ratio"]))
    if len(checks):
        shown = checks.assign(releases=checks["version_a"] + " vs " + checks["version_b"],
                              steps=checks["n"].astype(int),
                              **{"params apart @N": checks["param@N"].map(lambda v: f"{v:.1e}"),
                                 "loss apart @N": checks["loss@N"].map(lambda v: f"{v:.1e}")})
        part.table(shown[["framework", "releases", "optimizer", "impl", "model", "seed", "steps", "params apart @N",
                          "loss apart @N"]].rename(columns={"optimizer": "method"}))
    return part

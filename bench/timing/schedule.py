"""The timing protocol as plain data (pure): which worker process of which configuration runs
when, on which CPUs, and how the budget is spent.

Each configuration is timed in several worker processes, because what differs between two
processes (address-space layout, allocator state, the core, the thread pools' start) is never
sampled inside one. The processes are started in slots: slot k starts process k of every
configuration, warms each up, times them in interleaved rounds (A B C ... A B C ...) and closes
them before slot k+1 starts. So no configuration gets all its processes in one stretch of the
machine, a slow stretch hits every configuration alike, and two configurations' samples of the
same slot and round were taken back to back (their ratio is paired). Each slot visits the
configurations in an order rotated from the previous slot's, so no configuration is always the
first one timed after a start.
"""
from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass

MIN_PROCESS_ROUNDS = 2  # a process's rounds are resampled within it: one round gives nothing to resample
KINDS = ("start", "warmup", "round", "close")


@dataclass(frozen=True)
class Step:
    """One step of a pass: ``kind`` (:data:`KINDS`) done for process ``process`` (1-based) of each
    configuration in ``configs`` (indices, in the order they are visited); ``round`` numbers the
    warm-up and timed rounds from 1 within the process (0 for start and close)."""

    kind: str
    process: int
    round: int
    configs: tuple[int, ...]


def order(n_configs: int, process: int, processes: int) -> tuple[int, ...]:
    """The configurations in the order slot ``process`` visits them: rotated by a share of the list per slot."""
    shift = ((process - 1) * n_configs) // max(1, processes)
    return tuple((shift + i) % n_configs for i in range(n_configs)) if n_configs else ()


def slot(n_configs: int, process: int, processes: int, rounds: int, warmup_rounds: int) -> list[Step]:
    """Slot ``process``: start every configuration's worker, warm-up rounds, timed rounds, close them."""
    visit = order(n_configs, process, processes)
    everyone = tuple(range(n_configs))
    return ([Step("start", process, 0, everyone)]
            + [Step("warmup", process, r, visit) for r in range(1, warmup_rounds + 1)]
            + [Step("round", process, r, visit) for r in range(1, rounds + 1)]
            + [Step("close", process, 0, everyone)])


def schedule(n_configs: int, processes: int, rounds: int, warmup_rounds: int) -> list[Step]:
    """Every step of a pass over ``n_configs`` configurations, slot after slot."""
    return [step for k in range(1, processes + 1) for step in slot(n_configs, k, processes, rounds, warmup_rounds)]


def cpus_for(config: int, process: int, threads: int, allowed: Sequence[int]) -> list[int]:
    """The CPUs process ``process`` of configuration ``config`` is pinned to: ``threads`` of the
    ``allowed`` ones, next to each other, starting one further for each configuration and each
    slot. So a slot's workers start spread over the cores, and a configuration's processes run on
    different cores in turn: which core a process gets is sampled, not fixed. All of ``allowed``
    when ``threads`` covers them.
    """
    cpus = sorted(allowed)
    if threads >= len(cpus):
        return cpus
    first = (config + process - 1) % len(cpus)
    return sorted(cpus[(first + i) % len(cpus)] for i in range(threads))


@dataclass(frozen=True)
class Plan:
    """How one pass spends its budget: ``processes`` per configuration, ``rounds`` timed rounds per
    process of samples of about ``sample_s``; ``expected_s`` the whole pass as planned (start-ups
    included); ``note`` says what was cut to fit the budget, or by how much the pass overruns it."""

    processes: int
    rounds: int
    sample_s: float
    expected_s: float
    note: str | None = None


def samples(n_configs: int, processes: int, rounds: int, warmup_rounds: int) -> int:
    """Samples of a pass: every process's warm-up and timed rounds, and one sample's worth of
    calibration per configuration (its first process measures how many steps a sample takes)."""
    return n_configs * (processes * (rounds + warmup_rounds) + 1)


def plan(budget_s: float, start_up_s: float, n_configs: int, processes: int, rounds: int, warmup_rounds: int,
         min_sample_s: float) -> Plan:
    """Spend ``budget_s`` on processes rather than on short samples.

    ``start_up_s`` is one slot's start-up (every configuration's worker started together,
    measured on the first slot); each of the ``processes`` slots pays it. What is left is shared
    by the samples. When samples of ``min_sample_s`` do not fit, rounds per process are cut first
    (down to :data:`MIN_PROCESS_ROUNDS`): a process more samples what one process cannot, a
    round more only narrows one process's noise. When even that does not fit, the pass keeps
    ``processes`` and ``min_sample_s`` and runs over the budget, and the note says by how much
    and which budget would fit.
    """
    fixed = processes * start_up_s
    lowest = min(rounds, MIN_PROCESS_ROUNDS)
    for r in range(rounds, lowest - 1, -1):
        n = samples(n_configs, processes, r, warmup_rounds)
        left = budget_s - fixed
        if left >= n * min_sample_s:
            note = None if r == rounds else (f"rounds per process cut from {rounds} to {r} to fit "
                                             f"budget_s={budget_s:g}")
            return Plan(processes, r, left / n, budget_s, note)
    expected = fixed + samples(n_configs, processes, lowest, warmup_rounds) * min_sample_s
    wanted = fixed + samples(n_configs, processes, rounds, warmup_rounds) * min_sample_s
    note = (f"over budget: budget_s={budget_s:g} is too small for {processes} start-ups of {start_up_s:.0f} s and "
            f"samples of {min_sample_s:g} s (budget_s={math.ceil(wanted)} would fit {rounds} rounds)")
    return Plan(processes, lowest, min_sample_s, expected, note)

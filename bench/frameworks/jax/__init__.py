"""The JAX runner, reference rules, naive loop and toy paths.

On the CPU, XLA sizes its thread pools by the CPUs the process may run on, and the
``intra_op_parallelism_threads`` flag does not bind its newer runtime: with ``threads=1`` a
JAX child used both cores of a 2-core machine (CPU time twice the wall time, measured),
while torch and TensorFlow used one. So before JAX is imported, a CPU child is pinned to
``threads`` CPUs (``OMP_NUM_THREADS``, set by bench.run.proc), the least busy ones, so that
two lanes of a sweep do not pile onto one core: :func:`pin_to_threads`, which the child calls
through the registry's ``prepare`` hook. Importing this package changes nothing by itself.
"""
from __future__ import annotations

import os
import time

from bench.clock import PROC, parse_proc_stat_per_cpu


def _busy_jiffies() -> dict[int, int]:
    """Per-CPU busy jiffies from /proc/stat (empty where there is none)."""
    try:
        return {cpu: j.busy for cpu, j in parse_proc_stat_per_cpu((PROC / "stat").read_text()).items()}
    except (OSError, ValueError):
        return {}


def pin_to_threads() -> None:
    """Pin a CPU JAX child to its ``OMP_NUM_THREADS`` least busy CPUs (a 50 ms look at the load).

    A no-op off the CPU, without affinity support, or when the threads cover every allowed CPU;
    so a second call in the same process changes nothing.
    """
    if os.environ.get("JAX_PLATFORMS") != "cpu" or not hasattr(os, "sched_setaffinity"):
        return
    try:
        threads = int(os.environ.get("OMP_NUM_THREADS", "0"))
        allowed = sorted(os.sched_getaffinity(0))
    except (ValueError, OSError):
        return
    if threads < 1 or threads >= len(allowed):
        return
    before = _busy_jiffies()
    time.sleep(0.05)
    after = _busy_jiffies()
    load = {cpu: after.get(cpu, 0) - before.get(cpu, 0) for cpu in allowed}
    chosen = sorted(allowed, key=lambda cpu: (load[cpu], (cpu - os.getpid()) % len(allowed)))[:threads]
    os.sched_setaffinity(0, chosen)


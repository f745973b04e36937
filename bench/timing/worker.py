"""Child side of the timing pass: one configuration (or several hosted together), built once, timed on command.

``python -m bench.timing --worker <spec json> [<options json>]`` first pins itself to the CPUs
the options name (``{"cpus": [1]}``), every thread of the process, before it loads the data or
imports its framework, the same way for every framework (the threads the framework starts later
inherit the pinning). It then builds the runner exactly as a run's child does (the same data,
the same model, the shared initial weights, the same batch order function), warms it up, says
it is ready (with the CPUs it runs on and whether its address space is laid out without
randomisation), and answers each ``{"steps": k}`` line on stdin with the wall time, process CPU
time and contention of running ``k`` steps, and the interpreter's pace right after them
(:func:`pace`). Between commands it blocks on stdin, so an idle
worker uses no CPU while another one is timed. Replies are stdout lines starting with
:data:`TAG`; the framework is imported here only, through ``bench.run.child.make_runner``.

Given a JSON list of specs (one framework, interpreter and environment) the worker hosts them
all: it builds and warms up every runner, says ready once with each configuration's figures
(``configs``), and each request names its configuration (``{"config": i, "steps": k}``). The
framework is imported once per process instead of once per configuration.
"""
from __future__ import annotations

import json
import math
import os
import sys
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np

from bench import frameworks
from bench.clock import Snapshot
from bench.data import epoch_order, load_dataset
from bench.run.child import make_runner, resolve_batch_size

TAG = "TIMING "
ADDR_NO_RANDOMIZE = 0x0040000  # the personality flag ``setarch -R`` sets (linux/personality.h)


def pin(cpus: Sequence[int]) -> list[int]:
    """Pin every thread of this process to ``cpus`` (a thread started later inherits it); returns
    the CPUs the process may run on afterwards. ``sched_setaffinity(0)`` alone would pin the
    calling thread only, and numpy's BLAS may have started threads of its own at import."""
    if not cpus or not hasattr(os, "sched_setaffinity"):
        return sorted(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else []
    tasks = [int(t.name) for t in Path("/proc/self/task").iterdir()] if Path("/proc/self/task").is_dir() else [0]
    for tid in tasks:
        try:
            os.sched_setaffinity(tid, cpus)
        except ProcessLookupError:  # a thread that ended meanwhile
            continue
    return sorted(os.sched_getaffinity(0))


def aslr_off() -> bool | None:
    """True when this process's address space is laid out without randomisation (``setarch -R``);
    None where the kernel does not say."""
    try:
        return bool(int(Path("/proc/self/personality").read_text().strip(), 16) & ADDR_NO_RANDOMIZE)
    except (OSError, ValueError):
        return None


def probe() -> int:
    """``python -m bench.timing --probe``: this process's personality, for the parent's ASLR probe."""
    print(json.dumps({"aslr_off": aslr_off()}), flush=True)
    return 0


PACE_LOOPS, PACE_REPEATS = 10_000, 3  # about 1 ms a repeat on the machines of docs/PERFORMANCE.md


def pace() -> float:
    """Seconds of a fixed pure-Python loop (the best of :data:`PACE_REPEATS`): how fast this process's
    interpreter runs on its core right now. Timed beside every sample, outside its clock: a time per
    step that is Python dispatch (torch or TensorFlow at small batches) moves with it, a compiled
    loop need not, so a change of the machine that slows only interpreted code is seen, not guessed
    (:mod:`bench.report.pace`)."""
    best = math.inf
    for _ in range(PACE_REPEATS):
        table: dict[int, int] = {}
        acc = 0
        start = time.perf_counter()
        for i in range(PACE_LOOPS):
            acc += len(str(i))
            table[i & 255] = acc
        best = min(best, time.perf_counter() - start)
    return best


def reply(obj: dict[str, Any]) -> None:
    print(TAG + json.dumps(obj), flush=True)


class Stepper:
    """Runs ``k`` steps as a run's epochs do: successive epoch orders, whole batches only
    (the partial last batch of an epoch is a step of another shape and another cost)."""

    def __init__(self, runner: Any, seed: int, n_train: int, batch_size: int) -> None:
        self.runner, self.seed, self.n, self.batch = runner, seed, n_train, batch_size
        self.epoch = 0

    def _chunks(self, steps: int) -> list[np.ndarray]:
        chunks, left = [], steps
        while left > 0:
            self.epoch += 1
            order = epoch_order(self.seed, self.epoch, self.n)
            if self.batch >= self.n:  # full batch: an epoch is one step
                chunks.append(order)
                left -= 1
            else:
                take = min(left, self.n // self.batch)
                chunks.append(order[: take * self.batch])
                left -= take
        return chunks

    def run(self, steps: int) -> dict[str, float]:
        chunks = self._chunks(steps)  # built before the clocks start
        before = Snapshot.take()
        for order in chunks:
            self.runner.train_epoch(order, self.batch)  # returns after the device is synchronised
        used = Snapshot.take().since(before)
        return {"steps": steps, "time_s": used.wall_s, "cpu_time_s": used.cpu_s, "contention": used.contention,
                "pace_s": pace()}


def _build(spec: dict[str, Any], datasets: dict[str, Any]) -> tuple[Stepper, dict[str, Any]]:
    """One configuration's runner, warmed up, and what the parent is told about it."""
    key = json.dumps(spec["data"], sort_keys=True)
    if key not in datasets:  # the configurations of a host share their data
        datasets[key] = load_dataset(spec["data"])
    data = datasets[key]
    batch = resolve_batch_size(spec, data.n_train)
    runner = make_runner(spec, data)
    warm_up = getattr(runner, "warm_up", None)
    warmup_s = warm_up(epoch_order(spec["seed"], 1, data.n_train), batch) if warm_up else 0.0
    return Stepper(runner, spec["seed"], data.n_train, batch), {"warmup_s": warmup_s, "batch_size": batch,
                                                                "n_train": data.n_train}


def serve(spec_json: str, options_json: str = "{}") -> int:
    """One configuration (a spec) or several hosted in this process (a list of specs of one
    framework, interpreter and environment): then each request names its ``config`` (an index),
    and a configuration that cannot be built fails alone."""
    given, options = json.loads(spec_json), json.loads(options_json)
    hosted = isinstance(given, list)
    specs = given if hosted else [given]
    steppers: list[Stepper | None] = []
    infos: list[dict[str, Any]] = []
    try:
        cpus = pin([int(c) for c in options.get("cpus") or []])  # before the framework starts any thread
        frameworks.get(specs[0]["framework"]["name"]).prepare_process()  # before make_runner imports it
        datasets: dict[str, Any] = {}
        for spec in specs:
            try:
                stepper, info = _build(spec, datasets)
            except Exception as exc:  # this configuration's failure; the host's others go on
                if not hosted:
                    raise
                stepper, info = None, {"error": f"{type(exc).__name__}: {exc}"}
            steppers.append(stepper)
            infos.append(info)
    except Exception as exc:  # reported by the parent as this worker's failure
        reply({"error": f"{type(exc).__name__}: {exc}"})
        return 1
    common = {"ready": True, "cpus": cpus, "aslr_off": aslr_off(), "pid": os.getpid()}
    reply({**common, "configs": infos} if hosted else {**common, **infos[0]})
    for line in sys.stdin:
        ask = json.loads(line)
        at = int(ask.get("config", 0))
        stepper = steppers[at]
        if stepper is None:
            reply({"error": "not built"})
            continue
        try:
            got = stepper.run(int(ask["steps"]))
        except Exception as exc:  # hosted: this configuration fails alone, the others are timed on
            if not hosted:
                raise
            steppers[at] = None
            got = {"error": f"{type(exc).__name__}: {exc}"}
        reply(got)
    return 0

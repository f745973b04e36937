"""Parent side of the timing pass: find the sweep's configurations, time them in interleaved
rounds on an otherwise idle machine, write ``timing/timing.csv`` + ``timing.json``, print a table.

A sweep's epoch times are single samples taken while other lanes train beside them; here
every configuration of the sweep gets one long-lived worker process (``bench.timing.worker``),
and while this pass holds the machine-wide CPU lock exclusively (no run of ours trains) the
workers are asked, in turn, for a sample of a fixed number of steps: rounds A B C ... A B C ...,
so a slow stretch of the machine hits every configuration alike and a ratio of two
configurations can be taken within each round.
A worker that does not answer in time (:data:`START_TIMEOUT_S`, :data:`REPLY_TIMEOUT_S`) is
killed and its configuration reported failed; the others are timed on.

Imports neither framework: each worker imports its own.
"""
from __future__ import annotations

import json
import math
import queue
import socket
import sys
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path
from subprocess import PIPE, Popen, TimeoutExpired
from typing import IO, Any

import numpy as np

from bench.clock import CONTENTION_THRESHOLD
from bench.exits import BadInput
from bench.frameworks import BASE
from bench.machine import cpu_name
from bench.options import Option, Options, integer, number
from bench.results import FINISHED, read_json, write_csv, write_json
from bench.run.cpulock import CpuLock
from bench.run.proc import spec_env, start
from bench.stats import median_ci, ratio_ci
from bench.timing.worker import TAG
from models.layers import DEFAULT_MODEL

COLUMNS = (
    "framework", "optimizer", "impl", "mode", "batch_size", "lr", "dataset", "n_train", "device",
    "threads", "round", "steps", "time_s", "time_per_step_s", "cpu_time_s", "contention",
    "model",  # appended later: a timing.csv without it timed the tutorial's "mlp"
)
# What makes two runs the same configuration for speed; lr, seed and epochs do not change a step's cost,
# the model does. The framework comes first (print_table swaps it for the baseline's).
KEY = ("framework", "optimizer", "impl", "mode", "batch_size", "dataset", "n_train", "device", "threads", "model")
MIN_ROUNDS = 5  # fewer paired rounds give no useful 95 % interval
CALIBRATE_S = 0.1  # the steps of a sample are estimated from a stretch at least this long (or a quarter sample)
BASELINE = BASE  # every other framework's time is given as a ratio to this one (the registry's)
# A worker that says nothing this long is stuck (a hung framework call, a deadlock): it is
# killed and its configuration reported failed, and the pass goes on with the others.
START_TIMEOUT_S = 900.0  # import, data, build and warm-up
REPLY_TIMEOUT_S = 300.0  # one sample; measure() raises it to 10 samples' length for long samples


# ------------------------------------------------------------------ arguments
OPTIONS = Options(
    "python -m bench.timing",
    """Time the sweep found in results_dir: one worker per distinct configuration of its finished
    runs (framework x optimizer x impl x mode x batch size x data x device x threads), timed in
    interleaved rounds (A B C ... A B C ...) while this pass holds the machine's CPU lock
    exclusively. Writes results_dir/timing/timing.csv (one row per configuration and round) and
    timing.json, and prints each configuration's median time per step with its 95 % interval and
    every framework's ratio to torch.""",
    {
        "results_dir": Option("results", "the sweep's folder (its runs/ are timed)"),
        "rounds": Option(7, f"timed interleaved rounds (at least {MIN_ROUNDS}: fewer give no useful interval)",
                         integer(MIN_ROUNDS)),
        "warmup_rounds": Option(1, "untimed rounds first", integer(1)),
        "budget_s": Option(120.0, "seconds the whole pass, worker start-up included, aims to fit", number()),
        "min_sample_s": Option(0.05, "no sample is shorter than this many seconds", number()),
        "contention_threshold": Option(CONTENTION_THRESHOLD, "a sample during which other processes used more "
                                       "than this share of the CPUs counts as contended in the table", number()),
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
        }
        key = tuple(row[k] for k in KEY)
        if key not in found or (found[key]["status"] != "completed" and info["status"] == "completed"):
            found[key] = {"row": {**row, "lr": spec["optimizer"]["lr"]}, "spec": spec,
                          "run_id": info.get("run_id"), "status": info["status"]}
    return sorted(found.values(), key=lambda c: tuple(str(c["row"][k]) for k in KEY))


def label(row: dict[str, Any]) -> str:
    model = row.get("model") or DEFAULT_MODEL
    return (f"{row['framework']} {row['optimizer']}/{row['impl']}/{row['mode']} bs{row['batch_size']}"
            + ("" if model == DEFAULT_MODEL else f" {model}"))


# ------------------------------------------------------------------ workers
@dataclass
class Worker:
    """One configuration's worker process and what it has said so far."""

    config: dict[str, Any]
    log: IO[str]
    proc: Popen | None = None
    error: str | None = None
    steps: int = 0
    samples: list[dict[str, Any]] = field(default_factory=list)
    reply_timeout_s: float = REPLY_TIMEOUT_S
    replies: queue.Queue = field(default_factory=queue.Queue)

    def begin(self) -> None:
        spec = self.config["spec"]
        try:
            self.proc = start("bench.timing", ["--worker", json.dumps(spec)], env=spec_env(spec),
                              python=spec["framework"].get("python") or sys.executable,
                              stdin=PIPE, stdout=PIPE, stderr=self.log)
        except OSError as exc:
            self.error = f"cannot start: {exc.strerror or exc}"
            return
        self.listen()

    def listen(self) -> None:
        """Read the worker's stdout in a thread, so a wait for its reply can time out."""
        def read() -> None:
            for line in self.proc.stdout:
                if line.startswith(TAG):
                    self.replies.put(line[len(TAG):])
            self.replies.put(None)  # end of output: the worker has ended

        threading.Thread(target=read, name=f"timing-reply-{self.proc.pid}", daemon=True).start()

    def _answer(self, timeout_s: float | None = None) -> dict[str, Any]:
        timeout_s = self.reply_timeout_s if timeout_s is None else timeout_s
        try:
            line = self.replies.get(timeout=timeout_s)
        except queue.Empty:
            self.proc.kill()
            self.proc.wait()
            raise RuntimeError(f"no answer in {timeout_s:g} s, worker killed; see {self.log.name}") from None
        if line is None:
            self.proc.wait()
            raise RuntimeError(f"worker ended (exit code {self.proc.returncode}); see {self.log.name}")
        return json.loads(line)

    def ready(self) -> bool:
        if self.error is None:
            try:
                answer = self._answer(START_TIMEOUT_S)
                self.error = answer.get("error")
            except RuntimeError as exc:
                self.error = str(exc)
        return self.error is None

    def sample(self, steps: int) -> dict[str, Any]:
        self.proc.stdin.write(json.dumps({"steps": steps}) + "\n")
        self.proc.stdin.flush()
        return self._answer()

    def close(self) -> None:
        if self.proc is not None:
            try:
                self.proc.stdin.close()
                self.proc.wait(timeout=30)
            except (OSError, TimeoutExpired):
                self.proc.kill()
                self.proc.wait()
        self.log.close()


def steps_for(worker: Worker, sample_s: float) -> int:
    """Steps that take about ``sample_s``, from doubling runs until one lasts long enough.

    Each size runs twice and the second is timed: a framework that compiles per input length
    (JAX, XLA) pays the compilation on the first. Above one epoch the count is rounded to whole
    epochs, so every sample is made of the epoch-sized calls a run makes (one shape to compile).
    """
    steps, target = 1, min(CALIBRATE_S, sample_s / 4)
    while True:
        worker.sample(steps)
        took = worker.sample(steps)["time_s"]
        if took >= target or steps >= 10**7:
            break
        steps *= 2 if took <= 0 else min(16, max(2, math.ceil(target / took)))
    want = max(1, round(sample_s * steps / max(took, 1e-9)))
    row = worker.config["row"]
    per_epoch = max(1, int(row["n_train"]) // int(row["batch_size"]))
    return per_epoch * max(1, round(want / per_epoch)) if want > per_epoch else want


# ------------------------------------------------------------------ the pass
def measure(workers: list[Worker], opts: dict[str, Any], spent_s: float) -> list[dict[str, Any]]:
    """Calibrate, warm up and time every ready worker in interleaved rounds; returns the rows."""
    live = [w for w in workers if w.error is None]
    samples = len(live) * (opts["rounds"] + opts["warmup_rounds"] + 1)  # +1: the calibration, about one sample
    sample_s = max(opts["min_sample_s"], (opts["budget_s"] - spent_s) / max(1, samples))
    opts["sample_s"] = sample_s
    for w in live:
        w.reply_timeout_s = max(w.reply_timeout_s, 10 * sample_s)

    def guarded(worker: Worker, fn) -> Any:
        try:
            return fn()
        except (RuntimeError, OSError, ValueError) as exc:
            worker.error = str(exc)
            print(f"[timing] {label(worker.config['row'])}: failed: {exc}", file=sys.stderr, flush=True)
            return None

    for w in live:
        w.steps = guarded(w, lambda w=w: steps_for(w, sample_s)) or 0
    for _ in range(opts["warmup_rounds"]):
        for w in live:
            if w.error is None:
                guarded(w, lambda w=w: w.sample(w.steps))
    rows = []
    for rnd in range(1, opts["rounds"] + 1):
        for w in live:
            if w.error is not None:
                continue
            got = guarded(w, lambda w=w: w.sample(w.steps))
            if got is None:
                continue
            rows.append({**w.config["row"], "round": rnd, "steps": got["steps"], "time_s": got["time_s"],
                         "time_per_step_s": got["time_s"] / got["steps"], "cpu_time_s": got["cpu_time_s"],
                         "contention": got["contention"]})
    return rows


def timing_pass(opts: dict[str, Any], command: str) -> int:
    results_dir = Path(opts["results_dir"])
    configs = sweep_configs(results_dir)
    if not configs:
        raise BadInput(f"no finished runs under {results_dir / 'runs'}: run a sweep first")
    out = results_dir / "timing"
    (out / "logs").mkdir(parents=True, exist_ok=True)
    t0, started = time.perf_counter(), time.strftime("%Y-%m-%dT%H:%M:%S%z")
    print(f"[timing] {len(configs)} configuration(s), {opts['rounds']} rounds, budget {opts['budget_s']:g} s",
          flush=True)
    workers = [Worker(c, open(out / "logs" / f"worker-{i}.log", "w")) for i, c in enumerate(configs)]
    meta: dict[str, Any] = {}
    try:
        for w in workers:  # all start at once: imports and warm-ups are not timed
            w.begin()
        for w in workers:
            if not w.ready():
                print(f"[timing] {label(w.config['row'])}: failed: {w.error}", file=sys.stderr, flush=True)
        start_up = time.perf_counter() - t0  # counts against the budget; waiting for the lock does not
        with CpuLock(exclusive=True, who="timing pass"):
            meta["measure_start"] = time.time()
            rows = measure(workers, opts, start_up)
            meta["measure_end"] = time.time()
    finally:
        for w in workers:
            w.close()
    meta.update({
        "command": command, "started": started, "host": socket.gethostname(), "cpu": cpu_name(),
        "rounds": opts["rounds"], "warmup_rounds": opts["warmup_rounds"], "budget_s": opts["budget_s"],
        "sample_s": opts.get("sample_s"), "start_up_s": start_up, "elapsed_s": time.perf_counter() - t0,
        "contention_threshold": opts["contention_threshold"],
        "configs": [{**w.config["row"], "run_id": w.config["run_id"], "steps": w.steps, "error": w.error}
                    for w in workers],
    })
    write_csv(out / "timing.csv", rows, COLUMNS)
    write_json(out / "timing.json", meta)
    print_table(rows, opts["contention_threshold"])
    print(f"[timing] {meta['elapsed_s']:.0f} s; wrote {out / 'timing.csv'}", flush=True)
    return 1 if any(w.error for w in workers) else 0


# ------------------------------------------------------------------ the table
def _fmt_time(iv) -> str:
    if not math.isfinite(iv.est):
        return "n/a"
    scale, unit = (1e3, "ms") if iv.est >= 1e-3 else (1e6, "us")
    if not iv.known:
        return f"{iv.est * scale:.1f} {unit}"
    return f"{iv.est * scale:.1f} [{iv.lo * scale:.1f}, {iv.hi * scale:.1f}] {unit}"


def print_table(rows: list[dict[str, Any]], threshold: float) -> None:
    """Median time per step (95 % interval) per configuration; each framework vs torch per method."""
    by_config: dict[tuple, list[dict[str, Any]]] = {}
    for row in rows:
        by_config.setdefault(tuple(row[k] for k in KEY), []).append(row)
    print(f"\n{'configuration':<44} {'steps':>7}  {'time per step (95% CI)':<30} contention (>{threshold:g})")
    for group in by_config.values():
        times = [r["time_per_step_s"] for r in group]
        shares = np.array([r["contention"] for r in group], dtype=float)
        busy = int(np.sum(shares > threshold))
        share = f"{np.nanmedian(shares):.2f} ({busy}/{len(group)})" if np.isfinite(shares).any() else "n/a"
        print(f"{label(group[0]):<44} {group[0]['steps']:>7}  {_fmt_time(median_ci(times)):<30} {share}")
    ratios = []
    for key, group in by_config.items():
        row = group[0]
        if row["framework"] == BASELINE:
            continue
        base_key = (BASELINE,) + key[1:]
        if base_key not in by_config:
            continue
        num = {r["round"]: r["time_per_step_s"] for r in group}
        den = {r["round"]: r["time_per_step_s"] for r in by_config[base_key]}
        common = sorted(set(num) & set(den))
        iv = ratio_ci([num[r] for r in common], [den[r] for r in common])
        model = "" if row.get("model", DEFAULT_MODEL) == DEFAULT_MODEL else f" {row['model']}"
        ratios.append(f"{row['optimizer']}/{row['impl']}/{row['mode']} bs{row['batch_size']}{model}: "
                      f"{row['framework']}/{BASELINE} = {iv.text()}")
    shares = np.array([r["contention"] for r in rows], dtype=float)
    busy = int(np.sum(shares > threshold))
    if busy:
        print(f"\nnote: {busy} of {len(rows)} samples ran while other processes used more than "
              f"{threshold:.0%} of the CPUs (column contention): the machine was shared")
    if ratios:
        print("\ntime-per-step ratios, paired by round (median, 95% CI):")
        print("\n".join(f"  {line}" for line in ratios))
    print(flush=True)

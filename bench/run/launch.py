"""Parent side of a run: validate, skip what is done, start the child process, record the end.

Runs inside ``python -m bench`` (or a Hydra launcher's worker). Imports neither framework:
each run trains in its own ``python -m bench.run.child`` process, so torch and TensorFlow never
share a process and every run starts with fresh thread pools.
"""
from __future__ import annotations

import collections
import csv
import fcntl
import math
import os
import shutil
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path
from typing import Any, NamedTuple

from hydra.core.hydra_config import HydraConfig
from hydra.experimental.callback import Callback
from omegaconf import DictConfig, OmegaConf

from bench.exits import EXIT_BAD_INPUT, EXIT_INTERRUPTED
from bench.machine import git_commit, host_info
from bench.run.proc import NOISE, die_with_parent, spec_env, start
from bench.results import FINISHED, run_dir, run_status, update_run_json, write_json
from bench.run.cpulock import CpuLock
from bench.spec import BadInput, build_spec, unknown_keys

STDERR_TAIL = 40
SWEEP_PID_ENV = "OPTBENCH_SWEEP_PID"  # set by `python -m bench`; workers whose parent it is die with it
OBJECTIVES = ("val_acc",)  # what a tuning sweep (hydra/sweeper=tune_lr) maximises
FAILED_OBJECTIVE = 0.0  # a failed or diverged trial scores the worst accuracy, so the sweep goes on


class RunOutcome(NamedTuple):
    status: str  # the run's status after this call (see bench.results.STATUSES)
    code: int  # this run's share of the exit code: 0 ok, 1 failed, 2 bad input
    out_dir: Path
    skipped: bool = False  # already finished (or running elsewhere): no child was started


def _tee(stream, sink, tail: collections.deque, log_path: Path) -> None:
    with open(log_path, "a", encoding="utf-8", errors="replace") as log:
        for line in iter(stream.readline, ""):
            tail.append(line.rstrip("\n"))
            log.write(line)
            log.flush()
            if not any(noise in line for noise in NOISE):
                sink.write(line)
                sink.flush()


def _signal_name(code: int) -> str:
    try:
        return signal.Signals(-code).name
    except ValueError:
        return f"signal {-code}"


def execute(spec: dict[str, Any], results_dir: str, force: bool = False) -> RunOutcome:
    """Run one spec in a child process, unless it is finished already or running elsewhere.

    The run folder's ``.lock`` (flock) is held while the child runs, so two sweeps into the
    same results_dir never train the same run at once; the lock dies with its process.
    """
    out = run_dir(results_dir, spec["run_id"])
    out.mkdir(parents=True, exist_ok=True)
    lock = open(out / ".lock", "w")
    try:
        fcntl.flock(lock, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
        print(f"[skip] {spec['run_id']}: running in another process", flush=True)
        lock.close()
        return RunOutcome("running", 0, out, skipped=True)
    cpu = CpuLock(exclusive=False, who=spec["run_id"])
    try:
        previous = run_status(out)
        if previous in FINISHED and not force:
            print(f"[skip] {spec['run_id']}: already {previous}", flush=True)
            return RunOutcome(previous, 0, out, skipped=True)
        for stale in ("metrics.csv", "steps.csv", "run.json", "stderr.log"):
            (out / stale).unlink(missing_ok=True)
        write_json(out / "spec.json", spec)
        update_run_json(out, run_id=spec["run_id"], status="running", config=spec,
                        git_commit=git_commit(), start_time=time.time(),
                        start_time_iso=time.strftime("%Y-%m-%dT%H:%M:%S%z"), **host_info())
        python = spec["framework"].get("python") or sys.executable
        tail: collections.deque = collections.deque(maxlen=STDERR_TAIL)
        cpu.acquire()  # shared: lanes train side by side, but never while a timing pass measures
        try:
            proc = start("bench.run.child", [out / "spec.json"], env=spec_env(spec), python=python,
                         stderr=subprocess.PIPE)
        except OSError as exc:
            update_run_json(out, status="failed", error=f"cannot start {python}: {exc}", end_time=time.time())
            print(f"error: cannot start framework.python={python}: {exc.strerror or exc}", file=sys.stderr)
            return RunOutcome("failed", EXIT_BAD_INPUT, out)
        reader = threading.Thread(target=_tee, args=(proc.stderr, sys.stderr, tail, out / "stderr.log"), daemon=True)
        reader.start()
        try:
            code = proc.wait()
        except BaseException:  # Ctrl-C / SIGTERM: end the child, record, re-raise
            proc.terminate()
            try:
                proc.wait(timeout=10)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait()
            if run_status(out) not in FINISHED:  # it may have finished just before the signal
                update_run_json(out, status="interrupted", end_time=time.time())
            raise
        reader.join(timeout=5)
        status = run_status(out)
        if status in FINISHED:  # the child writes this last: a signal during its teardown loses nothing
            return RunOutcome(status, 0, out)
        if code == EXIT_BAD_INPUT:
            # The child found bad input (data, batch size) before training: it printed the one
            # line; the folder holds nothing worth keeping, so nothing is left behind.
            shutil.rmtree(out, ignore_errors=True)
            return RunOutcome("failed", EXIT_BAD_INPUT, out)
        if code == EXIT_INTERRUPTED and status == "interrupted":  # SIGTERM/SIGINT reached the child alone
            print(f"[interrupted] {spec['run_id']}", file=sys.stderr, flush=True)
            return RunOutcome(status, 1, out)
        reason = f"exit code {code}" if code >= 0 else f"killed by {_signal_name(code)}"
        update_run_json(out, status="failed", exit_code=code, exit_reason=reason,
                        exit_signal=_signal_name(code) if code < 0 else None,
                        stderr_tail=list(tail), end_time=time.time())
        print(f"[failed] {spec['run_id']}: {reason}", file=sys.stderr, flush=True)
        return RunOutcome("failed", 1, out)
    finally:
        cpu.release()
        fcntl.flock(lock, fcntl.LOCK_UN)
        lock.close()


def mark_interrupted(results_dir: str | os.PathLike) -> list[str]:
    """Runs left ``running`` that no live process owns (their ``.lock`` is free) become ``interrupted``.

    Called when a sweep is stopped: joblib kills its workers outright, so they cannot record
    the end of their runs themselves. Runs owned by another live sweep keep their status.
    """
    runs = Path(results_dir) / "runs"
    marked: list[str] = []
    if not runs.is_dir():
        return marked
    for out in sorted(runs.iterdir()):
        if run_status(out) != "running":
            continue
        with open(out / ".lock", "a") as lock:
            try:
                fcntl.flock(lock, fcntl.LOCK_EX | fcntl.LOCK_NB)
            except BlockingIOError:
                continue
            update_run_json(out, status="interrupted", end_time=time.time())
            marked.append(out.name)
    return marked


def stop_sweep_processes(sweep_pid: int, grace_s: float = 15.0) -> int:
    """SIGTERM every process this sweep started, then wait for them; returns how many there were.

    They are found by the ``OPTBENCH_SWEEP_PID`` in their environment, which reaches processes
    that are not our descendants any more (submitit_local's job controller runs in its own
    session). Each run's child then records itself ``interrupted``. Linux only; a no-op elsewhere.
    """
    tag = f"{SWEEP_PID_ENV}={sweep_pid}".encode()
    pids = []
    for environ in Path("/proc").glob("[0-9]*/environ"):
        pid = int(environ.parent.name)
        try:
            if pid != os.getpid() and tag in environ.read_bytes().split(b"\0"):
                pids.append(pid)
        except OSError:  # gone already, or not ours to read
            continue
    for pid in pids:
        try:
            os.kill(pid, signal.SIGTERM)
        except ProcessLookupError:
            pass
    deadline = time.monotonic() + grace_s
    while time.monotonic() < deadline and any(Path(f"/proc/{pid}").exists() for pid in pids):
        time.sleep(0.2)
    return len(pids)


def check_results_dir(results_dir: str) -> None:
    """One clear line, before any run starts, when results_dir cannot be written."""
    runs = Path(results_dir) / "runs"
    try:
        runs.mkdir(parents=True, exist_ok=True)
        probe = runs / f".probe-{os.getpid()}"
        probe.write_text("")
        probe.unlink()
    except OSError as exc:
        raise BadInput(f"results_dir={results_dir} cannot be written ({exc.strerror or exc})") from None


def objective_value(outcome: RunOutcome, objective: str) -> float:
    """What a tuning sweep maximises: the last epoch's ``objective`` column of a completed run."""
    if outcome.status != "completed":
        return FAILED_OBJECTIVE
    with open(outcome.out_dir / "metrics.csv", newline="") as fh:
        rows = list(csv.DictReader(fh))
    try:
        value = float(rows[-1][objective])
    except (IndexError, KeyError, ValueError):
        return FAILED_OBJECTIVE
    return value if math.isfinite(value) else FAILED_OBJECTIVE


def _sweeper() -> str:
    try:
        return str(HydraConfig.get().sweeper.get("_target_", ""))
    except ValueError:  # not under Hydra
        return ""


def _check_task_config(cfg: dict[str, Any], sweeper: str = "") -> None:
    extra = unknown_keys(cfg)
    if extra:
        raise BadInput(f"unknown key(s) {', '.join(extra)}: no config file in conf/ declares them")
    objective = cfg.get("objective")
    if sweeper.endswith("OptunaSweeper") and objective is None:
        raise BadInput("an Optuna sweep maximises what each run returns: add objective=val_acc "
                          "(and data.val_size > 0)")
    if objective is not None:
        if objective not in OBJECTIVES:
            raise BadInput(f"objective={objective!r} is not one of {', '.join(OBJECTIVES)}")
        if not cfg["data"].get("val_size"):
            raise BadInput(f"objective={objective} is measured on a validation split: set data.val_size > 0")


# ------------------------------------------------------------------ sweep progress
def _progress_dir() -> Path | None:
    try:
        hc = HydraConfig.get()
    except ValueError:
        return None
    if hc.mode is None or hc.mode.name != "MULTIRUN":
        return None
    return Path(hc.sweep.dir) / ".progress"


def _report_progress(pdir: Path) -> None:
    total_file = pdir / "total"
    total = int(total_file.read_text()) if total_file.exists() else None
    names = [p.suffix for p in pdir.iterdir()]
    done = sum(s in (".done", ".skipped", ".failed") for s in names)
    running = names.count(".running")
    failed = names.count(".failed")
    left = "?" if total is None else total - done - running
    print(f"[sweep] {done} done ({failed} failed), {running} running, {left} left", flush=True)


def run_job(cfg: DictConfig, raise_errors: bool = False) -> RunOutcome | None:
    """The Hydra task: validate, then one run. Returns its outcome, or None for bad input.

    Bad input is printed as one line, or raised as BadInput when ``raise_errors`` (a tuning
    trial: Optuna then stops and ``python -m bench`` prints the line, exit code 2).
    """
    if os.environ.get(SWEEP_PID_ENV) == str(os.getppid()):  # a local worker of the sweep
        die_with_parent()
    pdir = _progress_dir()
    marker = None
    if pdir is not None:
        pdir.mkdir(parents=True, exist_ok=True)
        marker = pdir / f"{HydraConfig.get().job.num}.running"
        marker.touch()
        _report_progress(pdir)
    outcome = None
    try:
        plain = OmegaConf.to_container(cfg, resolve=True)
        _check_task_config(plain, _sweeper())
        spec = build_spec(plain)
        check_results_dir(str(cfg.results_dir))
        outcome = execute(spec, str(cfg.results_dir), bool(cfg.force))
    except BadInput as exc:
        if raise_errors:
            raise
        print(f"error: {exc}", file=sys.stderr, flush=True)
    finally:
        if marker is not None:
            suffix = ".failed" if outcome is None or outcome.code else ".skipped" if outcome.skipped else ".done"
            marker.rename(marker.with_suffix(suffix))
            _report_progress(pdir)
    return outcome


class SweepProgress(Callback):
    """Knows the sweep's size up front, and its failures at the end."""

    failed: int | None = None
    results_dir: str | None = None  # where to mark runs interrupted if the sweep is stopped

    def on_multirun_start(self, config: DictConfig, **kwargs: Any) -> None:
        try:
            self._start(config)
        except BadInput as exc:
            # Hydra turns a callback's exceptions into warnings and sweeps on; SystemExit gets through.
            print(f"error: {exc}", file=sys.stderr, flush=True)
            raise SystemExit(EXIT_BAD_INPUT) from None

    def _start(self, config: DictConfig) -> None:
        from hydra.core.override_parser.overrides_parser import OverridesParser
        from hydra._internal.core_plugins.basic_sweeper import BasicSweeper

        lanes, threads, cores = int(config.get("jobs", 1)), int(config.get("threads", 1)), os.cpu_count() or 1
        if "Joblib" in config.hydra.launcher.get("_target_", "") and lanes * threads > cores:
            # Oversubscribed lanes distort every timing (measured here: batch 32 went from 5 s to
            # 151 s per epoch with 2 threads on a loaded 2-core CPU), so refuse rather than warn.
            raise BadInput(f"jobs={lanes} x threads={threads} = {lanes * threads} threads on {cores} cores "
                              f"would oversubscribe them: lower jobs or threads")
        # A tuning sweep's trials would all fail the same way: say it once, before the first one.
        task = {k: v for k, v in OmegaConf.to_container(config, resolve=False).items() if k != "hydra"}
        _check_task_config(task, str(config.hydra.sweeper.get("_target_", "")))
        overrides = list(config.hydra.overrides.task)
        overrides += [f"{k}={v}" for k, v in (config.hydra.sweeper.get("params") or {}).items()]
        total = None
        if config.hydra.sweeper.get("_target_", "").endswith("BasicSweeper"):
            parsed = OverridesParser.create().parse_overrides(overrides)
            total = sum(len(batch) for batch in BasicSweeper.split_arguments(parsed, None))
        pdir = Path(config.hydra.sweep.dir) / ".progress"
        pdir.mkdir(parents=True, exist_ok=True)
        if total is not None:
            (pdir / "total").write_text(str(total))
        SweepProgress.results_dir = str(config.results_dir)

    def on_multirun_end(self, config: DictConfig, **kwargs: Any) -> None:
        sweep_dir = Path(config.hydra.sweep.dir)
        pdir = sweep_dir / ".progress"
        count = {s: len(list(pdir.glob(f"*{s}"))) if pdir.is_dir() else 0 for s in (".done", ".skipped", ".failed")}
        SweepProgress.failed = count[".failed"]
        print(f"[sweep] finished: {count['.done']} ran, {count['.skipped']} skipped (already done), "
              f"{count['.failed']} failed", flush=True)
        write_json(sweep_dir / "sweep.json", {"ok": count[".done"], "skipped": count[".skipped"],
                                              "failed": count[".failed"]})
        best = sweep_dir / "optimization_results.yaml"  # written by the Optuna sweeper
        if best.is_file():
            print(f"[tune] best parameters: {best}", flush=True)

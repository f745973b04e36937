"""Parent side of a run: validate, skip what is done, start the child process, record the end.

Runs inside ``python -m bench`` (or a Hydra launcher's worker). Imports neither framework:
each run trains in its own ``python -m bench.run.child`` process, so torch and TensorFlow never
share a process and every run starts with fresh thread pools.
"""
from __future__ import annotations

import collections
import contextlib
import csv
import errno
import fcntl
import math
import os
import shutil
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import IO, Any, NamedTuple

from hydra.core.hydra_config import HydraConfig
from omegaconf import DictConfig, OmegaConf
from omegaconf.errors import OmegaConfBaseException

from bench import envs
from bench.cli import one_line
from bench.exits import EXIT_BAD_INPUT
from bench.machine import PROJECT_ROOT, git_commit, host_info
from bench.results import FINISHED, clear_partial_writes, run_dir, run_status, update_run_json, write_json
from bench.run.cpulock import CpuLock
from bench.run.lanes import gpu_slot
from bench.run.proc import NOISE, die_with_parent, spec_env, start
from bench.run.progress import SWEEP_JOB_ENV
from bench.run.slurm import WarningNoted, slurm_stop_reason
from bench.run.sweep import (
    apply_tuning_defaults,
    check_task_config,
    current_sweeper,
    mark_interrupted,
    progress_dir,
)
from bench.spec import BadInput, build_spec

STDERR_TAIL = 40
SWEEP_PID_ENV = "OPTBENCH_SWEEP_PID"  # set by `python -m bench`; workers whose parent it is die with it
# TensorFlow's GPU build lives in a venv of its own (`make gpu-env`): the project venv has
# tensorflow-cpu, and torch and TensorFlow want different CUDA libraries.
TF_GPU_PYTHON = PROJECT_ROOT / ".venv-tf-gpu" / "bin" / "python"
FAILED_OBJECTIVE = 0.0  # a failed or diverged trial scores the worst accuracy, so the sweep goes on


class RunOutcome(NamedTuple):
    status: str  # the run's status after this call (see bench.results.STATUSES)
    code: int  # this run's share of the exit code: 0 ok, 1 failed, 2 bad input
    out_dir: Path
    skipped: bool = False  # already finished (or running elsewhere): no child was started


_LOUD_SAID: set[str] = set()  # the loud notes (``!!! ...``) this process has shown already
_LOUD_LOCK = threading.Lock()


def _said_before(line: str) -> bool:
    """True for a loud note (a data fallback, ``!!! ...``) this process has already shown: a sweep's
    runs all fall back alike, and one line per lane says it. Each run's stderr.log and run.json
    keep the note."""
    if not line.startswith("!!! "):
        return False
    with _LOUD_LOCK:
        seen = line in _LOUD_SAID
        _LOUD_SAID.add(line)
    return seen


def _tee(stream, sink, tail: collections.deque, log_path: Path) -> None:
    log = open(log_path, "a", encoding="utf-8", errors="replace")
    try:
        for line in iter(stream.readline, ""):
            tail.append(line.rstrip("\n"))
            if log is not None:
                try:
                    log.write(line)
                    log.flush()
                except OSError:  # a full disk: the terminal and run.json's stderr_tail still get it
                    with contextlib.suppress(OSError):
                        log.close()
                    log = None
            if not any(noise in line for noise in NOISE) and not _said_before(line):
                sink.write(line)
                sink.flush()
    finally:
        if log is not None:
            with contextlib.suppress(OSError):
                log.close()


def _signal_name(code: int) -> str:
    try:
        return signal.Signals(-code).name
    except ValueError:
        return f"signal {-code}"


def child_python(spec: dict[str, Any]) -> str:
    """The interpreter of a run's child: framework.python, else its framework.version's venv (built
    first if need be: BadInput when pip cannot), else TensorFlow's GPU venv for a TensorFlow run on a
    GPU when it exists, else this one."""
    if spec["framework"].get("python"):
        return str(spec["framework"]["python"])
    version_python = envs.python_for(spec)
    if version_python is not None:
        return version_python
    if spec["framework"]["name"] == "tensorflow" and spec["device"] == "cuda":
        if TF_GPU_PYTHON.exists():
            return str(TF_GPU_PYTHON)
        print(f"[gpu] {spec['run_id']}: TensorFlow runs on the CPU from this venv (tensorflow-cpu); "
              "`make gpu-env` builds .venv-tf-gpu, used from then on", file=sys.stderr, flush=True)
    return sys.executable


def _stopped(default: str | None = None) -> dict[str, str]:
    """run.json fields saying why a run was stopped from outside (Slurm's reason if it was Slurm)."""
    reason = slurm_stop_reason() or default
    return {"exit_reason": reason} if reason else {}


def _wait(proc: subprocess.Popen) -> tuple[int, str | None]:
    """The child's exit code, and the reason Slurm gave if it warned the job while the child ran.

    Slurm warns a job (SIGUSR2, which submitit turns into UncompletedJobError; :class:`WarningNoted`
    keeps its reason) ahead of its time limit. A run cannot checkpoint, so it trains on: it may still
    finish in time; if not, Slurm's SIGTERM at the limit ends the child, which records itself interrupted.
    """
    warned = None
    with WarningNoted() as noted:
        while True:
            try:
                code = proc.wait(timeout=1.0 if noted.active else None)
            except subprocess.TimeoutExpired:
                code = None
            if noted.reason and warned is None:
                warned = noted.reason
                print(f"[slurm] the job is warned ({warned}); the run goes on until Slurm ends it", flush=True)
            if code is not None:
                return code, warned


def execute(spec: dict[str, Any], results_dir: str, force: bool = False, runs_per_gpu: int = 1) -> RunOutcome:
    """Run one spec in a child process, unless it is finished already or running elsewhere.

    The run folder's ``.lock`` (flock) is held while the child runs, so two sweeps into the
    same results_dir never train the same run at once; the lock dies with its process.
    A ``device=cuda`` run holds one of the ``runs_per_gpu`` slots of one GPU while its child runs.
    """
    envs.python_for(spec)  # a framework.version's venv first: when pip cannot build it, nothing is written
    out = run_dir(results_dir, spec["run_id"])
    out.mkdir(parents=True, exist_ok=True)
    with _folder_lock(out) as held:
        if not held:
            print(f"[skip] {spec['run_id']}: running in another process", flush=True)
            return RunOutcome("running", 0, out, skipped=True)
        clear_partial_writes(out)  # the lock is held: no writer of this folder is alive
        previous = run_status(out)
        if previous in FINISHED and not force:
            damaged = _damaged(out)
            if not damaged:
                print(f"[skip] {spec['run_id']}: already {previous}", flush=True)
                return RunOutcome(previous, 0, out, skipped=True)
            # a finished run whose results cannot be read is redone; the damaged file is kept aside
            os.replace(out / "metrics.csv", out / "metrics.csv.damaged")
            print(f"[redo] {spec['run_id']}: {previous}, but its metrics.csv {damaged}; running it again "
                  "(the old file is kept as metrics.csv.damaged)", flush=True)
        _prepare_folder(out, spec)
        python = child_python(spec)
        with contextlib.ExitStack() as slots:
            gpu = None
            if spec["device"] == "cuda":
                gpu = slots.enter_context(gpu_slot(results_dir, runs_per_gpu, spec["run_id"]))
                update_run_json(out, gpu_index=gpu.index, gpu_name=gpu.name, gpu_uuid=gpu.uuid)
            # shared: lanes train side by side, but never while a timing pass measures
            with CpuLock(exclusive=False, who=spec["run_id"]):
                return _run_child(spec, out, python, gpu and gpu.uuid)


@contextlib.contextmanager
def _folder_lock(out: Path) -> Iterator[bool]:
    """Hold the run folder's ``.lock`` for the block: True, or False when another process holds it."""
    lock: IO[str] | None = open(out / ".lock", "w")
    try:
        fcntl.flock(lock, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
        lock.close()
        lock = None
    try:
        yield lock is not None
    finally:
        if lock is not None:
            fcntl.flock(lock, fcntl.LOCK_UN)
            lock.close()


def _damaged(out: Path) -> str | None:
    """Why a finished run's metrics.csv cannot be read (the report's own reader decides), or None;
    a run without one (``OPTBENCH_FAULT=envonly``, the lanes' tests) is left as it finished."""
    from bench.report.load import read_metrics

    if not (out / "metrics.csv").is_file():
        return None
    df, why = read_metrics(out / "metrics.csv")
    return None if df is not None and len(df) else f"is damaged ({why or 'no epochs'})"


def _prepare_folder(out: Path, spec: dict[str, Any]) -> None:
    """Clear what an earlier attempt left, then write spec.json and run.json (status running)."""
    for stale in ("metrics.csv", "steps.csv", "run.json", "stderr.log"):
        (out / stale).unlink(missing_ok=True)
    write_json(out / "spec.json", spec)
    update_run_json(out, run_id=spec["run_id"], status="running", config=spec,
                    git_commit=git_commit(), start_time=time.time(),
                    start_time_iso=time.strftime("%Y-%m-%dT%H:%M:%S%z"), **host_info())


def _run_child(spec: dict[str, Any], out: Path, python: str, gpu_uuid: str | None) -> RunOutcome:
    """Start the run's child, wait for it, and record how it ended."""
    try:
        proc = start("bench.run.child", [out / "spec.json"], env=_child_env(spec, gpu_uuid), python=python,
                     stderr=subprocess.PIPE)
    except OSError as exc:
        update_run_json(out, status="failed", error=f"cannot start {python}: {exc}", end_time=time.time())
        print(f"error: cannot start framework.python={python}: {exc.strerror or exc}", file=sys.stderr)
        return RunOutcome("failed", EXIT_BAD_INPUT, out)
    tail: collections.deque = collections.deque(maxlen=STDERR_TAIL)
    code, warned = _watch(proc, out, tail)
    return _outcome(spec, out, code, warned, list(tail))


def _child_env(spec: dict[str, Any], gpu_uuid: str | None) -> dict[str, str]:
    """The run's environment, telling a sweep's run that it is one (``progress=auto`` then prints
    only the run's end line); the spec, and so the run_id, is the same in a sweep or not."""
    env = spec_env(spec, gpu_uuid)
    env.pop(SWEEP_JOB_ENV, None)
    if progress_dir() is not None:
        env[SWEEP_JOB_ENV] = str(HydraConfig.get().job.num)
    return env


def _watch(proc: subprocess.Popen, out: Path, tail: collections.deque) -> tuple[int, str | None]:
    """Tee the child's stderr (terminal, stderr.log, ``tail``) until it exits; as :func:`_wait` returns.

    Ctrl-C, SIGTERM or a preempted job's requeue ends the child and records the run
    interrupted (unless it finished just before), then goes on up.
    """
    reader = threading.Thread(target=_tee, args=(proc.stderr, sys.stderr, tail, out / "stderr.log"), daemon=True)
    reader.start()
    try:
        result = _wait(proc)
    except BaseException:
        _end(proc)
        if run_status(out) not in FINISHED:  # it may have finished just before the signal
            update_run_json(out, status="interrupted", end_time=time.time(), **_stopped())
        raise
    reader.join(timeout=5)
    return result


def _end(proc: subprocess.Popen) -> None:
    """SIGTERM the child (it records itself), SIGKILL if it is still there 10 s later."""
    proc.terminate()
    try:
        proc.wait(timeout=10)
    except subprocess.TimeoutExpired:
        proc.kill()
        proc.wait()


def _outcome(spec: dict[str, Any], out: Path, code: int, warned: str | None, tail: list[str]) -> RunOutcome:
    """What the child's end means: the status it recorded, else run.json and one line saying why it failed."""
    status = run_status(out)
    if status in FINISHED:  # the child writes this last: a signal during its teardown loses nothing
        return RunOutcome(status, 0, out)
    if code == EXIT_BAD_INPUT:
        # The child found bad input (data, batch size) before training: it printed the one
        # line; the folder holds nothing worth keeping, so nothing is left behind.
        shutil.rmtree(out, ignore_errors=True)
        return RunOutcome("failed", EXIT_BAD_INPUT, out)
    if status == "interrupted":  # SIGTERM/SIGINT reached the child alone (a scheduler may kill it after)
        stopped = _stopped(warned)
        if stopped:
            update_run_json(out, **stopped)
        print(f"[interrupted] {spec['run_id']}{': ' + stopped['exit_reason'] if stopped else ''}",
              file=sys.stderr, flush=True)
        return RunOutcome(status, 1, out)
    reason = _stopped(warned or (f"exit code {code}" if code >= 0 else f"killed by {_signal_name(code)}"))[
        "exit_reason"]
    update_run_json(out, status="failed", exit_code=code, exit_reason=reason,
                    exit_signal=_signal_name(code) if code < 0 else None,
                    stderr_tail=tail, end_time=time.time())
    print(f"[failed] {spec['run_id']}: {reason}", file=sys.stderr, flush=True)
    return RunOutcome("failed", 1, out)


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


def check_results_dir(results_dir: str) -> list[Path]:
    """One clear line, before any run starts, when results_dir cannot be written. Returns the
    folders it created, deepest first: bad input found later takes them away again."""
    runs = Path(results_dir) / "runs"
    made = [p for p in (runs, *runs.parents) if not p.exists()]
    try:
        runs.mkdir(parents=True, exist_ok=True)
        probe = runs / f".probe-{os.getpid()}"
        probe.write_text("")
        probe.unlink()
    except OSError as exc:
        raise BadInput(f"results_dir={results_dir} cannot be written ({exc.strerror or exc})") from None
    return made


def _unmake(folders: list[Path]) -> None:
    """Remove the folders a run created, deepest first, where they are still empty."""
    for folder in folders:
        try:
            folder.rmdir()
        except OSError:  # not empty (another run of a sweep wrote there), or gone: leave it
            return


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


def _disk_full(results_dir: str, run_id: str | None) -> RunOutcome:
    """A full disk fails the run with one line; a folder it left without run.json goes away.

    ``run_id`` is None when the disk was full before the run had a spec (its sweep's progress
    marker could not be written): there is no folder of its own to clear then.
    """
    if run_id is None:
        print(f"error: results_dir={results_dir}: no space left on device; this run not started",
              file=sys.stderr, flush=True)
        return RunOutcome("failed", 1, Path(results_dir) / "runs")
    out = run_dir(results_dir, run_id)
    if not (out / "run.json").exists():
        shutil.rmtree(out, ignore_errors=True)
    print(f"error: results_dir={results_dir}: no space left on device; {run_id} not run", file=sys.stderr, flush=True)
    return RunOutcome("failed", 1, out)


def _task_spec(cfg: DictConfig) -> tuple[dict[str, Any], int]:
    """The Hydra task's config checked and turned into a run spec, with its ``runs_per_gpu``; BadInput if wrong."""
    apply_tuning_defaults(cfg, current_sweeper())
    try:
        plain = OmegaConf.to_container(cfg, resolve=True)
    except OmegaConfBaseException as exc:  # e.g. an override with a broken ${...} interpolation
        raise BadInput(one_line(exc)) from None
    check_task_config(plain)
    return build_spec(plain), int(plain.get("runs_per_gpu") or 1)


def _mark_running(pdir: Path | None) -> Path | None:
    """In a sweep, this job's ``<num>.running`` progress marker, once written; None in a single run."""
    if pdir is None:
        return None
    pdir.mkdir(parents=True, exist_ok=True)
    marker = pdir / f"{HydraConfig.get().job.num}.running"
    marker.touch()  # the sweep's parent reads the markers and prints the progress line
    return marker


def _mark_ended(marker: Path | None, outcome: RunOutcome | None) -> None:
    """Rename the progress marker to how the job ended (``.done``, ``.skipped``, ``.failed``)."""
    if marker is None:
        return
    suffix = ".failed" if outcome is None or outcome.code else ".skipped" if outcome.skipped else ".done"
    marker.rename(marker.with_suffix(suffix))


def run_job(cfg: DictConfig, raise_errors: bool = False) -> RunOutcome | None:
    """The Hydra task: validate, then one run. Returns its outcome, or None for bad input.

    Bad input is printed as one line, or raised as BadInput when ``raise_errors`` (a tuning
    trial: Optuna then stops and ``python -m bench`` prints the line, exit code 2).
    """
    if os.environ.get(SWEEP_PID_ENV) == str(os.getppid()):  # a local worker of the sweep
        die_with_parent()
    pdir = progress_dir()
    marker: Path | None = None
    spec: dict[str, Any] | None = None
    outcome: RunOutcome | None = None
    try:
        marker = _mark_running(pdir)  # in the try: a disk full already here gets the one line too
        spec, runs_per_gpu = _task_spec(cfg)
        made = check_results_dir(str(cfg.results_dir))
        if pdir is None:  # a single run; a sweep did this once at its start
            mark_interrupted(str(cfg.results_dir))
        outcome = execute(spec, str(cfg.results_dir), bool(cfg.force), runs_per_gpu)
        if outcome.code == EXIT_BAD_INPUT:  # the child found it (the data): nothing written, no folder either
            _unmake(made)
    except BadInput as exc:
        if raise_errors:
            raise
        print(f"error: {exc}", file=sys.stderr, flush=True)
    except OSError as exc:
        if exc.errno != errno.ENOSPC:
            raise
        outcome = _disk_full(str(cfg.results_dir), None if spec is None else spec["run_id"])
    finally:
        _mark_ended(marker, outcome)
    return outcome

"""Parent side of a run: validate, skip what is done, start the child process, record the end.

Runs inside ``python -m bench`` (or a Hydra launcher's worker). Imports neither framework:
each run trains in its own ``python -m bench.child`` process, so torch and TensorFlow never
share a process and every run starts with fresh thread pools.
"""
from __future__ import annotations

import collections
import fcntl
import os
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path
from typing import Any

from hydra.core.hydra_config import HydraConfig
from hydra.experimental.callback import Callback
from omegaconf import DictConfig, OmegaConf

from bench.machine import PROJECT_ROOT, git_commit, host_info
from bench.results import FINISHED, run_dir, run_status, update_run_json, write_json
from bench.spec import ConfigError, build_spec

EXIT_BAD_INPUT = 2
STDERR_TAIL = 40


def child_env(spec: dict[str, Any]) -> dict[str, str]:
    """Threads and visible devices are fixed here, before the child imports its framework."""
    env = dict(os.environ)
    threads = str(spec["threads"])
    env.update({
        "OMP_NUM_THREADS": threads, "MKL_NUM_THREADS": threads,
        "TF_NUM_INTRAOP_THREADS": threads, "TF_NUM_INTEROP_THREADS": "1",
        "TF_CPP_MIN_LOG_LEVEL": env.get("TF_CPP_MIN_LOG_LEVEL", "3"),
        "PYTHONPATH": os.pathsep.join([str(PROJECT_ROOT)] + ([env["PYTHONPATH"]] if env.get("PYTHONPATH") else [])),
        "PYTHONUNBUFFERED": "1",
    })
    if spec["device"] == "cpu":
        env["CUDA_VISIBLE_DEVICES"] = ""
    if spec["deterministic"] and spec["framework"]["name"] == "tensorflow":
        env["TF_DETERMINISTIC_OPS"] = "1"
    return env


# TensorFlow start-up chatter printed before its log level applies; kept in stderr.log only.
_NOISE = ("All log messages before absl::InitializeLog()", "oneDNN custom operations are on")


def _tee(stream, sink, tail: collections.deque, log_path: Path) -> None:
    with open(log_path, "a", encoding="utf-8", errors="replace") as log:
        for line in iter(stream.readline, ""):
            tail.append(line.rstrip("\n"))
            log.write(line)
            log.flush()
            if not any(noise in line for noise in _NOISE):
                sink.write(line)
                sink.flush()


def _signal_name(code: int) -> str:
    try:
        return signal.Signals(-code).name
    except ValueError:
        return f"signal {-code}"


def execute(spec: dict[str, Any], results_dir: str, force: bool = False) -> tuple[str, int]:
    """Run one spec in a child process. Returns (status, exit code of this run)."""
    out = run_dir(results_dir, spec["run_id"])
    out.mkdir(parents=True, exist_ok=True)
    lock = open(out / ".lock", "w")
    try:
        fcntl.flock(lock, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
        print(f"[skip] {spec['run_id']}: running in another process", flush=True)
        lock.close()
        return "running", 0
    try:
        previous = run_status(out)
        if previous in FINISHED and not force:
            print(f"[skip] {spec['run_id']}: already {previous}", flush=True)
            return previous, 0
        for stale in ("metrics.csv", "steps.csv", "run.json", "stderr.log"):
            (out / stale).unlink(missing_ok=True)
        write_json(out / "spec.json", spec)
        update_run_json(out, run_id=spec["run_id"], status="running", config=spec,
                        git_commit=git_commit(), start_time=time.time(),
                        start_time_iso=time.strftime("%Y-%m-%dT%H:%M:%S%z"), **host_info())
        python = spec["framework"].get("python") or sys.executable
        cmd = [python, "-m", "bench.child", str(out / "spec.json")]
        tail: collections.deque = collections.deque(maxlen=STDERR_TAIL)
        try:
            proc = subprocess.Popen(cmd, env=child_env(spec), stderr=subprocess.PIPE, text=True,
                                    errors="replace", cwd=os.getcwd())
        except OSError as exc:
            update_run_json(out, status="failed", error=f"cannot start {python}: {exc}", end_time=time.time())
            print(f"error: cannot start {python}: {exc}", file=sys.stderr)
            return "failed", EXIT_BAD_INPUT
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
            update_run_json(out, status="interrupted", end_time=time.time())
            raise
        reader.join(timeout=5)
        status = run_status(out)
        if code == 0 and status == "completed":
            return status, 0
        if status == "diverged":
            return status, 0
        reason = f"exit code {code}" if code >= 0 else f"killed by {_signal_name(code)}"
        update_run_json(out, status="failed", exit_code=code, exit_reason=reason,
                        stderr_tail=list(tail), end_time=time.time())
        if code == EXIT_BAD_INPUT:
            return "failed", EXIT_BAD_INPUT
        print(f"[failed] {spec['run_id']}: {reason}", file=sys.stderr, flush=True)
        return "failed", 1
    finally:
        fcntl.flock(lock, fcntl.LOCK_UN)
        lock.close()


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
    done = sum(s in (".done", ".failed") for s in names)
    running = names.count(".running")
    failed = names.count(".failed")
    left = "?" if total is None else total - done - running
    print(f"[sweep] {done} done ({failed} failed), {running} running, {left} left", flush=True)


def run_job(cfg: DictConfig) -> int:
    """The Hydra task: one run. Returns the exit code for this run."""
    pdir = _progress_dir()
    marker = None
    if pdir is not None:
        pdir.mkdir(parents=True, exist_ok=True)
        marker = pdir / f"{HydraConfig.get().job.num}.running"
        marker.touch()
        _report_progress(pdir)
    code = 1
    try:
        plain = OmegaConf.to_container(cfg, resolve=True)
        spec = build_spec(plain)
        _, code = execute(spec, str(cfg.results_dir), bool(cfg.force))
    except ConfigError as exc:
        print(f"error: {exc}", file=sys.stderr, flush=True)
        code = EXIT_BAD_INPUT
    finally:
        if marker is not None:
            marker.rename(marker.with_suffix(".done" if code == 0 else ".failed"))
            _report_progress(pdir)
    return code


class SweepProgress(Callback):
    """Knows the sweep's size up front, and its failures at the end."""

    failed: int | None = None

    def on_multirun_start(self, config: DictConfig, **kwargs: Any) -> None:
        from hydra.core.override_parser.overrides_parser import OverridesParser
        from hydra._internal.core_plugins.basic_sweeper import BasicSweeper

        overrides = list(config.hydra.overrides.task)
        total = None
        if config.hydra.sweeper.get("_target_", "").endswith("BasicSweeper"):
            parsed = OverridesParser.create().parse_overrides(overrides)
            total = sum(len(batch) for batch in BasicSweeper.split_arguments(parsed, None))
        pdir = Path(config.hydra.sweep.dir) / ".progress"
        pdir.mkdir(parents=True, exist_ok=True)
        if total is not None:
            (pdir / "total").write_text(str(total))
        SweepProgress.sweep_dir = Path(config.hydra.sweep.dir)

    def on_multirun_end(self, config: DictConfig, **kwargs: Any) -> None:
        pdir = Path(config.hydra.sweep.dir) / ".progress"
        failed = len(list(pdir.glob("*.failed"))) if pdir.is_dir() else 0
        done = len(list(pdir.glob("*.done"))) if pdir.is_dir() else 0
        SweepProgress.failed = failed
        print(f"[sweep] finished: {done} ok, {failed} failed", flush=True)
        write_json(Path(config.hydra.sweep.dir) / "sweep.json", {"ok": done, "failed": failed})


"""Child-process entry: ``python -m bench.run.child <run dir>/spec.json``.

Exactly one framework is imported here, after the data is loaded and checked and after
the thread count and visible devices are fixed (the parent sets them in the environment).

Exit codes: 0 completed, 3 diverged, 2 bad input (one line on stderr), 130 interrupted
(SIGTERM or Ctrl-C; run.json says so), 1 anything else.

Fault injection for tests: ``OPTBENCH_FAULT=<kind>@<epoch>[@<text>]`` makes the run whose
run_id contains ``<text>`` (every run if omitted) misbehave as epoch ``<epoch>`` starts:
``segv`` (crash by SIGSEGV), ``kill`` (SIGKILL, as the OOM killer does), ``raise`` (a Python
exception), ``hang`` (sleep, so a test can interrupt a sweep mid-way).
``OPTBENCH_FAULT=alloc@<epoch>@<MiB>`` makes every run allocate and touch that many MiB (numpy ones)
as that epoch starts and keep them until the run ends (tests of the memory figures).
``OPTBENCH_FAULT=envonly@<seconds>`` trains nothing and imports no framework: the child records
the CUDA_VISIBLE_DEVICES it was given and its start and end times in run.json, stays that many
seconds, and ends ``completed`` (tests of the GPU lanes on a machine without a GPU).
"""
from __future__ import annotations

import errno
import json
import os
import platform
import signal
import sys
import time
import traceback
from pathlib import Path

import numpy as np

from bench import frameworks
from bench.clock import loadavg
from bench.data import DataError, load_dataset
from bench.exits import EXIT_BAD_INPUT, EXIT_DIVERGED, EXIT_INTERRUPTED, sigterm_as_interrupt
from bench.loop import train
from bench.memory import after_training, floor_mib, rounded, rss_now_mib
from bench.results import update_run_json
from models.init import initial_weights
from models.layers import parse_model

FAULTS = ("segv", "kill", "raise", "hang", "alloc")


class _Faulty:
    """Wraps a runner and injects the fault named by ``OPTBENCH_FAULT`` (see the module doc)."""

    def __init__(self, runner, kind: str, epoch: int, mib: int = 0) -> None:
        self._runner, self._kind, self._at, self._epoch, self._mib = runner, kind, epoch, 0, mib
        self._held: list[np.ndarray] = []  # the ``alloc`` fault's memory, alive as long as the runner

    def __getattr__(self, name: str):
        return getattr(self._runner, name)

    def train_epoch(self, order, batch_size):
        self._epoch += 1
        if self._epoch == self._at:
            print(f"[fault] injecting {self._kind} at epoch {self._epoch}", file=sys.stderr, flush=True)
            if self._kind == "segv":
                os.kill(os.getpid(), signal.SIGSEGV)
            elif self._kind == "kill":
                os.kill(os.getpid(), signal.SIGKILL)
            elif self._kind == "raise":
                raise RuntimeError("injected fault")
            elif self._kind == "alloc":
                self._held.append(np.ones(self._mib * 2**20 // 8))  # ones, not zeros: every page touched
            else:
                time.sleep(3600)
        return self._runner.train_epoch(order, batch_size)


def with_fault(runner, run_id: str, setting: str | None):
    """``runner`` itself, or wrapped to misbehave when ``setting`` names this run."""
    if not setting:
        return runner
    kind, _, rest = setting.partition("@")
    epoch, _, match = rest.partition("@")
    if kind not in FAULTS or not epoch.isdigit():
        raise ValueError(f"OPTBENCH_FAULT={setting!r}: expected <{'|'.join(FAULTS)}>@<epoch>[@<run_id text>]")
    if kind == "alloc":  # its third part is the size, not a run_id filter
        if not match.isdigit():
            raise ValueError(f"OPTBENCH_FAULT={setting!r}: expected alloc@<epoch>@<MiB>")
        return _Faulty(runner, kind, int(epoch), int(match))
    return _Faulty(runner, kind, int(epoch)) if match in run_id else runner


def resolve_batch_size(spec: dict, n_train: int) -> int:
    batch = spec["batch_size"]
    if batch == "full":
        return n_train
    if batch > n_train:
        raise DataError(f"batch_size={batch} is larger than the training set ({n_train} images)")
    return int(batch)


def spec_weights(spec: dict) -> dict[str, np.ndarray]:
    """The shared start of the run's model, from its seed."""
    return initial_weights(spec["seed"], parse_model(spec["model"]))


def runner_class(spec: dict):
    """The framework's runner class (the registry names it; its module, and the framework, are
    imported only now, in this child)."""
    framework = frameworks.get(spec["framework"]["name"])
    return framework.load("runner", framework.runner)


def make_runner(spec: dict, data, weights: dict[str, np.ndarray] | None = None):
    """The framework's runner, built on ``data`` with ``weights`` (the seed's own by default)."""
    return runner_class(spec)(spec, data, spec_weights(spec) if weights is None else weights)


class _FirstStep:
    """Wraps a runner to record, in run.json, when its warm-up (the first step, compiling and tracing
    included) ended, counted from the child's start like the other ``startup_*`` keys."""

    def __init__(self, runner, out_dir: Path, started: float) -> None:
        self._runner, self._out_dir, self._started = runner, out_dir, started

    def __getattr__(self, name: str):
        return getattr(self._runner, name)

    def warm_up(self, order, batch_size):
        seconds = self._runner.warm_up(order, batch_size)
        update_run_json(self._out_dir, startup_first_step_s=round(time.time() - self._started, 3))
        return seconds


def build_runner(spec: dict, data, out_dir: Path, started: float, batch_size: int):
    """make_runner, timed and measured: the startup_* seconds since ``started`` and the resident
    memory once the framework, the data on the device and the model are ready (before any step)."""
    cls = runner_class(spec)
    imported = time.time()
    runner = cls(spec, data, spec_weights(spec))
    ready = time.time()
    ready_mib = rss_now_mib()
    update_run_json(out_dir, startup_import_s=round(imported - started, 3), startup_ready_s=round(ready - started, 3),
                    rss_ready_mib=rounded(ready_mib), mem_floor_mib=round(floor_mib(spec, batch_size), 3))
    # A runner without a warm-up keeps none (the loop looks the method up), and has no first-step time.
    return (_FirstStep(runner, out_dir, started) if hasattr(runner, "warm_up") else runner), ready_mib


def record_memory(out_dir: Path, runner, ready_mib: float | None) -> None:
    """run.json's peak and training memory, and the framework's device peak where it has one."""
    device_peak = getattr(runner, "device_peak_bytes", None)
    update_run_json(out_dir, **after_training(ready_mib, device_peak() if device_peak is not None else None))


def env_only(out_dir: Path, seconds: str) -> int:
    """The ``envonly`` fault: record what the parent gave this child, train nothing."""
    started = time.time()
    time.sleep(float(seconds or 0))
    update_run_json(out_dir, status="completed", env_only=True, child_start_time=started, child_end_time=time.time(),
                    cuda_visible_devices=os.environ.get("CUDA_VISIBLE_DEVICES"), end_time=time.time())
    return 0


def main(spec_path: str) -> int:
    started = time.time()
    sigterm_as_interrupt()  # the parent stopping, or the parent gone, ends the run cleanly
    # Slurm's warning ahead of a job's time limit (SIGUSR2, asked for by submitit) reaches every
    # process of the job; a run cannot checkpoint, so it trains on until Slurm's SIGTERM.
    signal.signal(signal.SIGUSR2, signal.SIG_IGN)
    try:
        spec = json.loads(Path(spec_path).read_text())
    except (OSError, ValueError) as exc:  # an internal command, but a person may call it by hand
        print(f"error: cannot read the run's spec {spec_path}: {getattr(exc, 'strerror', None) or exc}",
              file=sys.stderr)
        return EXIT_BAD_INPUT
    out_dir = Path(spec_path).parent
    kind, _, seconds = os.environ.get("OPTBENCH_FAULT", "").partition("@")
    if kind == "envonly":
        return env_only(out_dir, seconds)
    try:
        data = load_dataset(spec["data"])
        batch_size = resolve_batch_size(spec, data.n_train)
    except DataError as exc:
        update_run_json(out_dir, status="failed", error=str(exc), end_time=time.time())
        print(f"error: {exc}", file=sys.stderr)
        return EXIT_BAD_INPUT
    # The load next to the run's times says whether the machine was busy while it trained.
    update_run_json(
        out_dir, status="running", child_start_time=started, loadavg_before=loadavg(),
        dataset=data.name, data_source=data.source, data_notes=data.notes,
        n_train=data.n_train, n_test=data.n_test, batch_size_resolved=batch_size,
        python=platform.python_version(), python_executable=sys.executable, numpy=np.__version__,
    )
    try:
        frameworks.get(spec["framework"]["name"]).prepare_process()  # before make_runner imports it
        runner, ready_mib = build_runner(spec, data, out_dir, started, batch_size)
        runner = with_fault(runner, spec["run_id"], os.environ.get("OPTBENCH_FAULT"))
        # framework_version: the version this child imported, from package metadata, as a run_id names it
        installed = frameworks.get(spec["framework"]["name"]).installed_version()
        update_run_json(out_dir, **{**runner.describe(), **({"framework_version": installed} if installed else {})})
        status = train(spec, runner, data, out_dir, batch_size)
        record_memory(out_dir, runner, ready_mib)
    except KeyboardInterrupt:
        update_run_json(out_dir, status="interrupted", end_time=time.time())
        print(f"[{spec['run_id']}] interrupted", file=sys.stderr, flush=True)
        return EXIT_INTERRUPTED
    except Exception as exc:  # recorded in run.json, then the child fails
        if isinstance(exc, OSError) and exc.errno == errno.ENOSPC:  # nothing more can be recorded
            print(f"error: {exc.filename or out_dir}: no space left on device", file=sys.stderr, flush=True)
            return 1
        tail = traceback.format_exc().splitlines()[-30:]
        update_run_json(out_dir, status="failed", error=f"{type(exc).__name__}: {exc}",
                        traceback=tail, end_time=time.time())
        raise
    update_run_json(out_dir, status=status, loadavg_after=loadavg(), end_time=time.time())
    return 0 if status == "completed" else EXIT_DIVERGED


if __name__ == "__main__":
    if len(sys.argv) != 2:
        print("usage: python -m bench.run.child <run dir>/spec.json", file=sys.stderr)
        sys.exit(2)
    sys.exit(main(sys.argv[1]))

"""Helpers shared by the test files that drive the real CLI: start a sweep in the background,
wait for it, find its runs, read their status, check that bad input is one line.

A plain module, not a test file: test files import from here (and from conftest), never from
each other.
"""
from __future__ import annotations

import json
import math
import os
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path

import numpy as np
from conftest import ROOT

from bench import frameworks
from bench.results import METRIC_COLUMNS, STEP_COLUMNS, write_csv, write_json


def no_framework_env(tmp_path: Path) -> dict[str, str]:
    """PYTHONPATH with stand-ins for every framework that fail on import: bad input must be
    reported before any framework is imported, in the parent and in the child."""
    shim = tmp_path / "shim"
    for name in {fw.imports[0] for fw in frameworks.FRAMEWORKS.values()}:
        (shim / name).mkdir(parents=True)
        (shim / name / "__init__.py").write_text(f"raise ImportError('{name} imported before validation')\n")
    return {"PYTHONPATH": f"{shim}{os.pathsep}{ROOT}"}


def assert_one_line_error(proc: subprocess.CompletedProcess, *needles: str) -> str:
    assert proc.returncode == 2, (proc.returncode, proc.stderr[-2000:])
    # a "[wait]" note (another test's timing pass holds the CPU lock) says the machine is busy,
    # not that the input is bad: the error is still the one line besides it
    lines = [line for line in proc.stderr.strip().splitlines() if not line.startswith("[wait] ")]
    assert len(lines) == 1 and lines[0].startswith("error: "), proc.stderr[-2000:]
    assert "Traceback" not in proc.stderr + proc.stdout
    for needle in needles:
        assert needle in lines[0], lines[0]
    return lines[0]


def run_dirs(results: Path) -> list[Path]:
    return sorted((results / "runs").iterdir()) if (results / "runs").is_dir() else []


def run_info(run: Path) -> dict:
    return json.loads((run / "run.json").read_text())


def run_of(results: Path, seed: int) -> Path:
    found = [p for p in run_dirs(results) if f"-s{seed}-" in p.name]
    assert len(found) == 1, run_dirs(results)
    return found[0]


def wait_for(condition: Callable[[], bool], timeout: float = 240) -> None:
    end = time.monotonic() + timeout
    while time.monotonic() < end:
        if condition():
            return
        time.sleep(0.5)
    raise AssertionError("timed out waiting")


def status_of(results: Path, seed: int) -> str | None:
    runs = [p for p in run_dirs(results) if f"-s{seed}-" in p.name]
    if not runs or not (runs[0] / "run.json").exists():
        return None
    return run_info(runs[0]).get("status")


def is_hanging(results: Path, seed: int) -> bool:
    logs = [p / "stderr.log" for p in run_dirs(results) if f"-s{seed}-" in p.name]
    return bool(logs) and logs[0].exists() and "injecting hang" in logs[0].read_text(errors="replace")


def processes_mentioning(text: str) -> list[str]:
    found = []
    for cmdline in Path("/proc").glob("[0-9]*/cmdline"):
        try:
            args = cmdline.read_bytes().replace(b"\0", b" ").decode(errors="replace")
        except OSError:
            continue
        if text in args:
            found.append(args)
    return found


def start_bench(args: list[str], tmp_path: Path, name: str, fault: str | None = None,
           new_session: bool = False) -> tuple[subprocess.Popen, Path]:
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    if fault:
        env["OPTBENCH_FAULT"] = fault
    log = tmp_path / f"{name}.log"
    proc = subprocess.Popen([sys.executable, "-m", "bench", *args], stdout=open(log, "w"),
                            stderr=subprocess.STDOUT, env=env, cwd=ROOT, start_new_session=new_session)
    return proc, log


def write_fake_run(results: Path, run_id: str, base: dict, final: float, n_train: int, spec: dict,
                   **info: object) -> str:
    """A finished run as the harness writes it, without training: metrics.csv (epochs 0-2 reaching
    ``final`` + 0.01 * seed), steps.csv (20 falling losses), run.json (``spec`` as its config, ``info``
    added). ``base`` holds the columns every row carries (run_id, framework, optimizer, seed, ...)."""
    seed, per_epoch = int(base["seed"]), math.ceil(n_train / int(base["batch_size"]))
    accs = [0.1, final - 0.1 + 0.01 * seed, final + 0.01 * seed]
    rows = [{**base, "epoch": e, "steps": e * per_epoch, "train_loss": 2.3 * (1 - a), "test_loss": 2.0,
             "test_acc": a, "epoch_time_s": 0.0 if e == 0 else 0.3, "status": "completed"} for e, a in enumerate(accs)]
    folder = results / "runs" / run_id
    write_csv(folder / "metrics.csv", rows, METRIC_COLUMNS)
    losses = np.linspace(2.3, 0.5, 20) + 0.05 * np.sin(np.arange(20) * (seed + 1))
    write_csv(folder / "steps.csv",
              [{**base, "epoch": 1, "step": k + 1, "loss": float(v)} for k, v in enumerate(losses)], STEP_COLUMNS)
    write_json(folder / "run.json", {"run_id": run_id, "status": "completed", "dataset": base["dataset"],
                                     "n_train": n_train, "config": spec, "start_time": 100.0, "end_time": 110.0,
                                     **info})
    return run_id

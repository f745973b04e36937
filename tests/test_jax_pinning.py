"""A CPU JAX child is pinned to ``threads`` CPUs by an explicit call (the registry's ``prepare``
hook), never by importing ``bench.frameworks.jax``: each check runs in a fresh interpreter."""
from __future__ import annotations

import json
import os
import subprocess
import sys
import threading
from pathlib import Path

import pytest
from conftest import HARNESS_FRAMEWORK, ROOT, SMALL, compose_config

from bench.run.proc import spec_env
from bench.spec import build_spec

ONE_THREAD_ON_CPU = {"JAX_PLATFORMS": "cpu", "OMP_NUM_THREADS": "1"}
MULTI_CPU = pytest.mark.skipif(len(os.sched_getaffinity(0)) < 2, reason="pinning needs more than one CPU")


def _affinity_around(code: str) -> dict:
    """``{"before", "after", "jax_imported"}`` around ``code``, run in a fresh interpreter."""
    script = ("import json, os, sys\nbefore = sorted(os.sched_getaffinity(0))\n" + code +
              "\nprint(json.dumps({'before': before, 'after': sorted(os.sched_getaffinity(0)),"
              " 'jax_imported': 'jax' in sys.modules}))")
    env = {**os.environ, "PYTHONPATH": str(ROOT), **ONE_THREAD_ON_CPU}
    done = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, timeout=120,
                          env=env, cwd=ROOT)
    assert done.returncode == 0, done.stderr[-2000:]
    return json.loads(done.stdout.strip().splitlines()[-1])


def test_importing_the_jax_package_changes_nothing() -> None:
    seen = _affinity_around("import bench.frameworks.jax")
    assert seen["after"] == seen["before"]
    assert not seen["jax_imported"]


@MULTI_CPU
def test_the_prepare_hook_pins_to_the_threads_without_importing_jax() -> None:
    seen = _affinity_around("from bench import frameworks\nframeworks.get('jax').prepare_process()")
    assert len(seen["after"]) == 1 and set(seen["after"]) <= set(seen["before"])
    assert not seen["jax_imported"]


@pytest.mark.slow  # trains a run
@MULTI_CPU
def test_a_jax_run_child_trains_on_one_cpu(tmp_path: Path) -> None:
    """The run's child calls the hook itself: while it trains (held by the ``hang`` fault at
    epoch 1) it may run on one CPU only."""
    spec = build_spec(compose_config(*SMALL, HARNESS_FRAMEWORK, "epochs=1", "progress=none", "threads=1"))
    spec_path = tmp_path / spec["run_id"] / "spec.json"
    spec_path.parent.mkdir()
    spec_path.write_text(json.dumps(spec))
    env = {**spec_env(spec), "OPTBENCH_FAULT": "hang@1"}
    child = subprocess.Popen([sys.executable, "-m", "bench.run.child", str(spec_path)], env=env, cwd=ROOT,
                             stderr=subprocess.PIPE, text=True)
    deadline = threading.Timer(240, child.kill)  # a child that never reaches epoch 1 ends the wait
    deadline.start()
    try:
        hanging = any("[fault] injecting hang" in line for line in child.stderr)
        status = Path(f"/proc/{child.pid}/status").read_text() if hanging else ""
    finally:
        deadline.cancel()
        child.kill()
        child.wait()
    assert hanging, "the child ended before epoch 1"
    allowed = next(line.split(":", 1)[1].strip() for line in status.splitlines()
                   if line.startswith("Cpus_allowed_list"))
    assert allowed.isdigit(), allowed  # one CPU, not a list or a range

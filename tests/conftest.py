"""Shared helpers. The pytest process imports neither torch nor TensorFlow: anything that
needs a framework runs in a subprocess (torch then TensorFlow in one process segfaults)."""
from __future__ import annotations

import http.server
import os
import subprocess
import sys
import tempfile
import threading
import time
from functools import partial
from pathlib import Path

import pytest

from bench import envs, frameworks

ROOT = Path(__file__).resolve().parent.parent
# The tests' runs take a CPU lock of their own, so a `make bench` timing pass on the same
# machine neither waits for the suite nor makes it wait (tests of the lock set their own).
os.environ.setdefault("OPTBENCH_CPU_LOCK", str(Path(tempfile.mkdtemp(prefix="optbench-tests-")) / "cpu.lock"))
SMALL = ["data=mnist_embedded", "data.limit_train=256", "data.limit_test=128"]
# The harness tests (sweeps, kills, launchers, locks) train with JAX: the harness is the same for
# every framework, and a JAX child starts in half a torch child's CPU time.
HARNESS_FRAMEWORK = "framework=jax"


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    """Under xdist, slow tests first: the long ones start while every worker is busy instead of
    ending the run on one worker while the others wait. (xdist deals out an xdist_group before
    the single tests, and single tests in collection order.)"""
    if os.environ.get("PYTEST_XDIST_WORKER"):
        items.sort(key=lambda item: item.get_closest_marker("slow") is None)


def run_cli(*args: str, timeout: float = 300, env: dict | None = None, module: str = "bench",
            cwd: Path | None = None) -> subprocess.CompletedProcess:
    """Run ``python -m <module> <args>`` as a user would; returns the finished process."""
    full_env = {**os.environ, "PYTHONPATH": str(ROOT), **(env or {})}
    return subprocess.run([sys.executable, "-m", module, *args], capture_output=True, text=True,
                          timeout=timeout, env=full_env, cwd=cwd or ROOT)


def run_python(code: str, timeout: float = 300) -> subprocess.CompletedProcess:
    """Run a snippet in a fresh interpreter (for framework imports)."""
    env = {**os.environ, "PYTHONPATH": str(ROOT), "TF_CPP_MIN_LOG_LEVEL": "3", "CUDA_VISIBLE_DEVICES": ""}
    return subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=timeout,
                          env=env, cwd=ROOT)


def compose_config(*overrides: str, config_name: str = "config") -> dict:
    """The plain config dict Hydra composes from conf/ for ``overrides`` (no framework imported)."""
    from hydra import compose, initialize_config_dir
    from omegaconf import OmegaConf

    with initialize_config_dir(config_dir=str(ROOT / "conf"), version_base="1.3"):
        cfg = compose(config_name=config_name, overrides=list(overrides))
    return OmegaConf.to_container(cfg, resolve=True)


@pytest.fixture
def compose():
    """``compose(*overrides, config_name="config") -> dict``: the one way tests compose configs."""
    return compose_config


@pytest.fixture
def results(tmp_path: Path) -> Path:
    return tmp_path / "results"


@pytest.fixture
def http_server(tmp_path: Path):
    """Plain HTTP on 127.0.0.1 (the only place bench.data allows http) serving ``tmp_path/srv``."""
    root = tmp_path / "srv"
    root.mkdir()
    handler = partial(http.server.SimpleHTTPRequestHandler, directory=str(root))
    handler.log_message = lambda *a, **k: None
    httpd = http.server.ThreadingHTTPServer(("127.0.0.1", 0), handler)
    threading.Thread(target=httpd.serve_forever, daemon=True).start()
    yield root, f"http://127.0.0.1:{httpd.server_address[1]}/"
    httpd.shutdown()


# ------------------------------------------------------------------ one real venv of another JAX release
# Shared by tests/test_versions.py and tests/test_versions_report.py: built and swept once per session.
OTHER_JAX = "0.9.2"  # the release before the pinned 0.10.2 that installs on Python 3.11 with its jaxlib
PINNED_JAX = envs.project_version(frameworks.get("jax"))
SWEEP_JAX_RELEASES = ("-m", "framework=jax", f"framework.version={OTHER_JAX},{PINNED_JAX}", "optimizer=adam,sgd",
                      *SMALL, "epochs=2", "progress=none")


@pytest.fixture(scope="session")
def other_jax(tmp_path_factory: pytest.TempPathFactory) -> dict:
    """The real sweep over two JAX releases, run once: it builds the venv of the other one (under the
    pytest basetemp), then trains 4 runs. Its cache, results and finished process."""
    base = tmp_path_factory.mktemp("versions")
    cache, results = base / "envs", base / "results"
    env = {envs.ENVS_VAR: str(cache)}
    started = time.monotonic()
    done = run_cli(*SWEEP_JAX_RELEASES, f"results_dir={results}", env=env, timeout=900)
    return {"cache": cache, "results": results, "env": env, "proc": done, "seconds": time.monotonic() - started}



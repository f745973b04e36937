"""The only place that builds a child's environment and starts a child process.

Fairness between frameworks is decided here: the thread counts and the visible devices are
fixed in the environment *before* the child imports its framework, the same way for every
command (a sweep's runs, parity, perf, the toy paths, gpu-check, the report's sections).
torch and TensorFlow never share a process: each framework runs in a child of its own.
"""
from __future__ import annotations

import ctypes
import os
import signal
import subprocess
import sys
from collections.abc import Mapping, Sequence
from typing import IO, Any

from bench.machine import PROJECT_ROOT

# TensorFlow start-up chatter printed before its log level applies; kept in logs only.
NOISE = ("All log messages before absl::InitializeLog()", "oneDNN custom operations are on")


def child_env(threads: int = 1, device: str = "cpu", framework: str | None = None,
              deterministic: bool = True, gpu: str | None = None,
              extra: Mapping[str, str] | None = None) -> dict[str, str]:
    """The environment of a child process that may import ``framework``.

    ``threads`` caps every thread pool (OpenMP, MKL, TensorFlow's intra-op; inter-op is 1).
    ``device="cpu"`` hides every GPU; ``gpu`` (an index or UUID) shows that one GPU only.
    """
    env = dict(os.environ)
    n = str(threads)
    env.update({
        "OMP_NUM_THREADS": n, "MKL_NUM_THREADS": n, "OPENBLAS_NUM_THREADS": n,
        "TF_NUM_INTRAOP_THREADS": n, "TF_NUM_INTEROP_THREADS": "1",
        "TF_CPP_MIN_LOG_LEVEL": env.get("TF_CPP_MIN_LOG_LEVEL", "3"),
        # A framework that preallocates GPU memory (JAX) must leave room for other lanes.
        "XLA_PYTHON_CLIENT_PREALLOCATE": "false",
        "PYTHONPATH": os.pathsep.join([str(PROJECT_ROOT)] + ([env["PYTHONPATH"]] if env.get("PYTHONPATH") else [])),
        "PYTHONUNBUFFERED": "1",
    })
    if device == "cpu":
        env["CUDA_VISIBLE_DEVICES"] = ""
        env["JAX_PLATFORMS"] = "cpu"
    elif gpu is not None:
        env["CUDA_VISIBLE_DEVICES"] = str(gpu)
    if deterministic and framework in (None, "tensorflow"):
        env["TF_DETERMINISTIC_OPS"] = "1"
    if framework in (None, "jax"):
        env["XLA_FLAGS"] = " ".join(jax_xla_flags(threads, device, deterministic))
    if extra:
        env.update(extra)
    return env


def jax_xla_flags(threads: int, device: str, deterministic: bool) -> list[str]:
    """XLA_FLAGS for a JAX child: XLA reads them once, when JAX starts its backend."""
    flags = os.environ.get("XLA_FLAGS", "").split()
    if threads == 1:
        # One thread: no Eigen pool for XLA's CPU matmuls and convolutions.
        flags += ["--xla_cpu_multi_thread_eigen=false", "intra_op_parallelism_threads=1"]
    if deterministic and device != "cpu":
        flags.append("--xla_gpu_deterministic_ops=true")
    return flags


def spec_env(spec: Mapping[str, Any], gpu: str | None = None) -> dict[str, str]:
    """The environment of the child that trains run ``spec`` (a ``bench.spec.build_spec`` dict),
    shown only GPU ``gpu`` (an index or UUID) when given."""
    return child_env(int(spec["threads"]), str(spec["device"]), str(spec["framework"]["name"]),
                     bool(spec.get("deterministic", True)), gpu=gpu)


def die_with_parent() -> None:
    """Get SIGTERM when the parent process dies (Linux; a no-op elsewhere).

    Used in each child (before exec) and in the local sweep workers: a ``kill -9`` of the
    parent must not leave orphans training on and holding their run folders.
    """
    parent = os.getppid()
    try:
        ctypes.CDLL(None, use_errno=True).prctl(1, signal.SIGTERM)  # 1 = PR_SET_PDEATHSIG
    except (OSError, AttributeError):
        return
    if os.getppid() != parent:  # the parent died before prctl took effect
        os.kill(os.getpid(), signal.SIGTERM)


def command(module: str, args: Sequence[str] = (), python: str | None = None,
            wrapper: Sequence[str] = ()) -> list[str]:
    """``[*wrapper, python, -m, module, *args]``; ``python`` defaults to this interpreter; ``wrapper``
    is a command that runs it (``setarch x86_64 -R`` for the timing pass without ASLR)."""
    return [*wrapper, python or sys.executable, "-m", module, *map(str, args)]


def start(module: str, args: Sequence[str] = (), *, env: Mapping[str, str], python: str | None = None,
          stdout: int | IO[Any] | None = None, stderr: int | IO[Any] | None = None,
          cwd: str | os.PathLike | None = None, text: bool = True,
          stdin: int | IO[Any] | None = None, wrapper: Sequence[str] = ()) -> subprocess.Popen:
    """Start ``python -m module args`` (under ``wrapper``) in the background; it dies with this process.

    Raises OSError when the interpreter cannot be started (a bad ``framework.python``).
    """
    return subprocess.Popen(command(module, args, python, wrapper), env=dict(env), stdin=stdin, stdout=stdout,
                            stderr=stderr, text=text, errors="replace" if text else None, cwd=cwd or os.getcwd(),
                            preexec_fn=die_with_parent if sys.platform == "linux" else None)


def run(module: str, args: Sequence[str] = (), *, env: Mapping[str, str] | None = None,
        python: str | None = None, timeout: float | None = None,
        cwd: str | os.PathLike | None = None, wrapper: Sequence[str] = ()) -> subprocess.CompletedProcess:
    """Run ``python -m module args`` (under ``wrapper``) to the end, output captured as text.

    Raises ``subprocess.TimeoutExpired`` after ``timeout`` seconds (the child is killed).
    """
    return subprocess.run(command(module, args, python, wrapper), env=dict(env or child_env()), capture_output=True,
                          text=True, errors="replace", timeout=timeout, cwd=cwd or PROJECT_ROOT,
                          preexec_fn=die_with_parent if sys.platform == "linux" else None)


def probe(python: str, code: str, args: Sequence[str] = (), *, env: Mapping[str, str],
          timeout: float | None = 60) -> subprocess.CompletedProcess:
    """Run ``python -c code args`` to the end, output captured: a question to another interpreter
    (``bench.envs`` asks one for a framework's version from its package metadata)."""
    return subprocess.run([python, "-c", code, *map(str, args)], env=dict(env), capture_output=True, text=True,
                          errors="replace", timeout=timeout, cwd=PROJECT_ROOT,
                          preexec_fn=die_with_parent if sys.platform == "linux" else None)


def last_line(proc: subprocess.CompletedProcess) -> str:
    """The last non-empty line of a finished child's stderr (or its exit code): its error."""
    lines = [ln for ln in (proc.stderr or "").splitlines() if ln.strip() and not any(n in ln for n in NOISE)]
    return lines[-1].strip()[:300] if lines else f"exit code {proc.returncode}"

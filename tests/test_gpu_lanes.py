"""One GPU per lane, on a machine without a GPU: a fake ``nvidia-smi`` on PATH lists the GPUs,
and ``OPTBENCH_FAULT=envonly@<s>`` makes each run's child record the CUDA_VISIBLE_DEVICES it got
(and when it ran) instead of importing a framework."""
from __future__ import annotations

import json
import os
import subprocess
import sys
import urllib.request
from pathlib import Path

import pytest
from conftest import ROOT, SMALL, run_cli

from bench.run import launch

FAKE_SMI = """#!/bin/sh
# A stand-in for nvidia-smi: $FAKE_GPUS GPUs named by $FAKE_TAG.
i=0
while [ "$i" -lt "$FAKE_GPUS" ]; do
    case "$*" in
        *-L*) echo "GPU $i: Fake GPU $i (UUID: GPU-$FAKE_TAG-$i)" ;;
        *--query-gpu=index,name,uuid*) echo "$i, Fake GPU $i, GPU-$FAKE_TAG-$i" ;;
    esac
    i=$((i + 1))
done
"""


def _fake_gpu_env(tmp_path: Path, count: int, hold_s: float) -> dict[str, str]:
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir(exist_ok=True)
    smi = bin_dir / "nvidia-smi"
    smi.write_text(FAKE_SMI)
    smi.chmod(0o755)
    env = {k: v for k, v in os.environ.items() if k != "CUDA_VISIBLE_DEVICES"}
    return {**env, "PATH": f"{bin_dir}{os.pathsep}{os.environ['PATH']}", "FAKE_GPUS": str(count),
            "FAKE_TAG": tmp_path.name, "OPTBENCH_FAULT": f"envonly@{hold_s}"}


def _infos(results: Path) -> list[dict]:
    return [json.loads((p / "run.json").read_text()) for p in sorted((results / "runs").iterdir())]


def _most_at_once(intervals: list[tuple[float, float]]) -> int:
    events = sorted([(start, 1) for start, _ in intervals] + [(end, -1) for _, end in intervals])
    now = most = 0
    for _, step in events:  # an end sorts before a start at the same instant
        now += step
        most = max(most, now)
    return most


def _check_lanes(infos: list[dict], runs_per_gpu: int) -> dict[str, list[tuple[float, float]]]:
    by_gpu: dict[str, list[tuple[float, float]]] = {}
    for info in infos:
        assert info["status"] == "completed" and info["env_only"]
        # exactly one GPU, the one the parent recorded
        assert info["cuda_visible_devices"] == info["gpu_uuid"] and "," not in info["gpu_uuid"]
        assert info["gpu_name"] == f"Fake GPU {info['gpu_index']}"
        by_gpu.setdefault(info["gpu_uuid"], []).append((info["child_start_time"], info["child_end_time"]))
    for uuid, intervals in by_gpu.items():
        assert _most_at_once(intervals) <= runs_per_gpu, (uuid, intervals)
    return by_gpu


@pytest.mark.slow
def test_jobs_4_on_4_gpus_one_run_per_gpu_at_a_time(results: Path, tmp_path: Path) -> None:
    env = _fake_gpu_env(tmp_path, 4, hold_s=2)
    proc = run_cli("-m", *SMALL, "device=cuda", "jobs=4", "seed=range(8)", "progress=none",
                   f"results_dir={results}", env=env, timeout=600)
    assert proc.returncode == 0, proc.stderr[-3000:]
    infos = _infos(results)
    assert len(infos) == 8
    by_gpu = _check_lanes(infos, runs_per_gpu=1)
    assert len(by_gpu) == 4  # every GPU was used; a slot is free once its run ends
    assert sum(len(v) for v in by_gpu.values()) == 8


@pytest.mark.slow
def test_runs_per_gpu_packs_runs_and_never_exceeds_it(results: Path, tmp_path: Path) -> None:
    env = _fake_gpu_env(tmp_path, 1, hold_s=2)
    proc = run_cli("-m", *SMALL, "device=cuda", "jobs=3", "runs_per_gpu=2", "seed=range(4)", "progress=none",
                   f"results_dir={results}", env=env, timeout=600)
    assert proc.returncode == 0, proc.stderr[-3000:]
    infos = _infos(results)
    assert len(infos) == 4
    _check_lanes(infos, runs_per_gpu=2)
    # runs_per_gpu stays out of the run_id, like jobs: the same runs, skipped when packed differently
    again = run_cli("-m", *SMALL, "device=cuda", "jobs=1", "seed=range(4)", "progress=none",
                    f"results_dir={results}", env=env, timeout=600)
    assert again.returncode == 0 and "0 ran, 4 skipped" in again.stdout, again.stdout[-2000:]


def test_a_single_cuda_run_gets_one_gpu(results: Path, tmp_path: Path) -> None:
    env = _fake_gpu_env(tmp_path, 2, hold_s=0)
    proc = run_cli(*SMALL, "device=cuda", "progress=none", f"results_dir={results}", env=env, timeout=300)
    assert proc.returncode == 0, proc.stderr[-3000:]
    (info,) = _infos(results)
    assert info["cuda_visible_devices"] == info["gpu_uuid"] == f"GPU-{tmp_path.name}-{info['gpu_index']}"


@pytest.mark.parametrize("override", ["runs_per_gpu=0", "runs_per_gpu=x", "runs_per_gpu=99999999999999999999"])
def test_bad_runs_per_gpu_is_one_line(override: str, results: Path) -> None:
    proc = run_cli(*SMALL, override, f"results_dir={results}", timeout=120)
    assert proc.returncode == 2 and proc.stderr.startswith("error: runs_per_gpu"), proc.stderr[-2000:]
    assert len(proc.stderr.strip().splitlines()) == 1 and not (results / "runs").exists()


def test_tensorflow_on_a_gpu_uses_the_tf_gpu_venv_when_it_exists(tmp_path: Path, monkeypatch, capsys) -> None:
    spec = {"run_id": "r", "device": "cuda", "framework": {"name": "tensorflow", "python": None}}
    monkeypatch.setattr(launch, "TF_GPU_PYTHON", tmp_path / "missing" / "python")
    assert launch.child_python(spec) == launch.sys.executable
    assert "make gpu-env" in capsys.readouterr().err  # one line says how to get it
    venv_python = tmp_path / "python"
    venv_python.write_text("")
    monkeypatch.setattr(launch, "TF_GPU_PYTHON", venv_python)
    assert launch.child_python(spec) == str(venv_python)
    assert launch.child_python({**spec, "framework": {"name": "tensorflow", "python": "/x/py"}}) == "/x/py"
    assert launch.child_python({**spec, "framework": {"name": "torch", "python": None}}) == launch.sys.executable
    assert launch.child_python({**spec, "device": "cpu"}) == launch.sys.executable


def _pypi_reachable() -> bool:
    try:
        urllib.request.urlopen("https://pypi.org/simple/tensorflow/", timeout=10).close()
    except OSError:
        return False
    return True


@pytest.mark.slow
def test_the_tf_gpu_venv_pins_resolve(tmp_path: Path) -> None:
    """``make gpu-env``'s requirements resolve on this machine, without a GPU (pip --dry-run)."""
    if not _pypi_reachable():
        pytest.skip("no network to pypi.org: the pins of .venv-tf-gpu cannot be resolved here")
    reqs = subprocess.run([sys.executable, str(ROOT / "scripts" / "tf-gpu-requirements")], capture_output=True,
                          text=True, check=True).stdout.split()
    assert "tensorflow[and-cuda]==2.21.0" in reqs and not any(r.startswith(("torch", "jax")) for r in reqs)
    report = tmp_path / "report.json"
    proc = subprocess.run([sys.executable, "-m", "pip", "install", "-q", "--disable-pip-version-check", "--dry-run",
                           "--ignore-installed", "--report", str(report), *reqs],
                          capture_output=True, text=True, timeout=900)
    assert proc.returncode == 0, proc.stderr[-3000:]
    names = {i["metadata"]["name"].lower(): i["metadata"]["version"] for i in json.loads(report.read_text())["install"]}
    assert names["tensorflow"] == "2.21.0" and "nvidia-cudnn-cu12" in names and "torch" not in names

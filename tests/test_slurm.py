"""A real one-node Slurm cluster (scripts/local-slurm) behind ``hydra/launcher=slurm``: a sweep
completes, ``scancel`` and a time limit are recorded with Slurm's reason, a re-run finishes what
was stopped. Needs root and the packages slurm-wlm and munge; skipped otherwise."""
from __future__ import annotations

import json
import os
import shutil
import subprocess
import time
from pathlib import Path

import pytest
from conftest import HARNESS_FRAMEWORK, ROOT, SMALL, run_cli
from helpers import is_hanging, start_bench, wait_for

# About 2 minutes: a real one-node cluster, part of make test. One xdist worker runs them all,
# so one cluster serves the session.
pytestmark = [pytest.mark.slow, pytest.mark.xdist_group("slurm")]

SCRIPT = ROOT / "scripts" / "local-slurm"
STATE = "/var/tmp/optbench-slurm"  # the script's default: one cluster per machine
CPU_JOBS = ["hydra/launcher=slurm", "hydra.launcher.gpus_per_node=0", "hydra.launcher.cpus_per_task=1",
            "hydra.launcher.mem_gb=1"]
TINY = [*SMALL, HARNESS_FRAMEWORK, "epochs=1", "optimizer=minibatch", "progress=none"]


@pytest.fixture(scope="session")
def slurm() -> dict[str, str]:
    """SLURM_CONF of a running one-node cluster; one started here is stopped after the session."""
    if os.geteuid() != 0:
        pytest.skip("a local Slurm cluster needs root (it starts munged, slurmctld and slurmd)")
    missing = [cmd for cmd in ("munged", "slurmctld", "slurmd", "sbatch") if not shutil.which(cmd)]
    if missing:
        pytest.skip(f"{', '.join(missing)} not found: apt-get install slurm-wlm munge")
    env = {k: v for k, v in os.environ.items() if k != "OPTBENCH_SLURM_STATE"}
    running = subprocess.run([str(SCRIPT), "status"], env=env, timeout=60).returncode == 0
    if not running:
        started = subprocess.run([str(SCRIPT)], capture_output=True, text=True, env=env, timeout=180)
        assert started.returncode == 0, started.stdout + started.stderr
    yield {"SLURM_CONF": f"{STATE}/slurm.conf"}
    if not running:
        subprocess.run([str(SCRIPT), "stop"], capture_output=True, text=True, env=env, timeout=120)


def _cluster_state(env: dict[str, str]) -> str:
    """What Slurm says, for a failed test's message: its queue, its node, its daemons' last lines."""
    said = []
    for cmd in (["squeue", "-t", "all", "-r", "-o", "%i %T %r %M %l"], ["sinfo", "-N", "-o", "%N %T %E"]):
        out = subprocess.run(cmd, capture_output=True, text=True, env={**os.environ, **env}, timeout=30)
        said.append(f"$ {' '.join(cmd)}\n{out.stdout}{out.stderr}")
    for log in sorted(Path(STATE, "log").glob("*.log")):
        said.append(f"$ tail {log}\n" + "\n".join(log.read_text(errors="replace").splitlines()[-15:]))
    return "\n".join(said)


def _sweep(*args: str, env: dict[str, str], timeout: float = 600) -> subprocess.CompletedProcess:
    """``run_cli`` for a Slurm sweep: one that does not end fails the test with the cluster's state."""
    try:
        return run_cli(*args, env=env, timeout=timeout)
    except subprocess.TimeoutExpired as exc:
        out = b"".join(part or b"" for part in (exc.stdout, exc.stderr)).decode(errors="replace")
        pytest.fail(f"the sweep did not end in {timeout:.0f} s; it said:\n{out[-3000:]}\n{_cluster_state(env)}")


def _ended(proc: subprocess.Popen, log: Path, env: dict[str, str], timeout: float = 300) -> int:
    """The exit code of a sweep started in the background; one that does not end fails the test."""
    try:
        return proc.wait(timeout=timeout)
    except subprocess.TimeoutExpired:
        proc.kill()
        pytest.fail(f"the sweep did not end in {timeout:.0f} s; it said:\n{log.read_text()[-3000:]}\n"
                    f"{_cluster_state(env)}")


def _infos(results: Path) -> dict[str, dict]:
    return {p.name: json.loads((p / "run.json").read_text()) for p in sorted((results / "runs").iterdir())}


def _job_of(results: Path, task: int, env: dict[str, str]) -> str:
    """The Slurm id of array task ``task`` of the sweep writing into ``results``."""
    out = subprocess.run(["squeue", "-h", "-o", "%i %o"], capture_output=True, text=True, env=env, timeout=30)
    ids = [line.split()[0] for line in out.stdout.splitlines() if str(results) in line]
    found = [i for i in ids if i.endswith(f"_{task}")]
    assert len(found) == 1, out.stdout
    return found[0]


def test_a_four_run_sweep_completes_and_says_sacct_once(slurm: dict[str, str], results: Path) -> None:
    proc = _sweep("-m", *CPU_JOBS, *TINY, "seed=range(4)", f"results_dir={results}", env=slurm)
    assert proc.returncode == 0, proc.stderr[-3000:]
    infos = _infos(results)
    assert len(infos) == 4 and {i["status"] for i in infos.values()} == {"completed"}
    assert "4 ran, 0 skipped" in proc.stdout
    out = proc.stdout + proc.stderr
    assert "Bypassing sacct" not in out and "accounting storage is disabled" not in out
    assert sum("sacct" in line for line in out.splitlines()) <= 1


def test_scancel_is_recorded_with_its_reason_and_a_rerun_finishes_it(slurm: dict[str, str], results: Path,
                                                                     tmp_path: Path) -> None:
    args = ["-m", *CPU_JOBS, *TINY, "seed=range(4)", f"results_dir={results}"]
    os.environ.update(slurm)  # start_bench passes this process's environment on
    try:
        proc, log = start_bench(args, tmp_path, "scancel", fault="hang@1@-s1-")
        wait_for(lambda: is_hanging(results, 1), timeout=300)
        subprocess.run(["scancel", _job_of(results, 1, {**os.environ, **slurm})], check=True, timeout=30)
        assert _ended(proc, log, slurm) == 1, log.read_text()[-3000:]
    finally:
        for key in slurm:
            os.environ.pop(key, None)
    infos = _infos(results)
    stopped = [i for name, i in infos.items() if "-s1-" in name]
    assert len(stopped) == 1 and stopped[0]["status"] in ("interrupted", "failed")
    assert stopped[0]["exit_reason"] == "cancelled by Slurm (scancel)"
    assert sorted(i["status"] for i in infos.values()) == sorted(["completed"] * 3 + [stopped[0]["status"]])
    finished = {name: i["end_time"] for name, i in infos.items() if "-s1-" not in name}

    again = _sweep(*args, env=slurm)
    assert again.returncode == 0 and "1 ran, 3 skipped" in again.stdout, again.stdout[-3000:]
    infos = _infos(results)
    assert {i["status"] for i in infos.values()} == {"completed"}
    assert {name: i["end_time"] for name, i in infos.items() if "-s1-" not in name} == finished


@pytest.mark.stress  # 2.5 min, most of it waiting for Slurm's two-minute limit: make test-all and CI
def test_a_run_past_its_time_limit_is_recorded_as_a_timeout(slurm: dict[str, str], results: Path) -> None:
    """A 2-minute limit: Slurm is asked to warn 30 s before it (conf/hydra/launcher/slurm.yaml),
    and warns up to a minute earlier still, but never before the job has started Python."""
    begin = time.monotonic()
    proc = _sweep("-m", *CPU_JOBS, "hydra.launcher.timeout_min=2", *TINY, "seed=0", f"results_dir={results}",
                  env={**slurm, "OPTBENCH_FAULT": "hang@1"})
    assert proc.returncode == 1, proc.stderr[-3000:]
    (info,) = _infos(results).values()
    assert info["status"] in ("interrupted", "failed")
    assert info["exit_reason"] == "Slurm time limit reached (timeout)"
    job_log = "".join(p.read_text() for p in results.glob(".hydra/sweep/*/.submitit/*/*_log.out"))
    assert "[slurm] the job is warned (Slurm time limit reached (timeout))" in job_log, job_log[-3000:]
    assert time.monotonic() - begin >= 115  # it trained on after Slurm's warning, up to the limit
    assert "Traceback" not in proc.stderr


def _tasks(results: Path, env: dict[str, str]) -> dict[str, str]:
    """Array task id -> Slurm state, for the sweep writing into ``results``."""
    out = subprocess.run(["squeue", "-h", "-r", "-o", "%i %T %o"], capture_output=True, text=True, env=env, timeout=30)
    return {line.split()[0]: line.split()[1] for line in out.stdout.splitlines() if str(results) in line}


def test_a_job_cancelled_before_it_started_ends_the_sweep_in_one_line(slurm: dict[str, str], results: Path,
                                                                      tmp_path: Path) -> None:
    """Without accounting, submitit alone waited forever on a job that ended without its result."""
    args = ["-m", *CPU_JOBS, *TINY, "seed=range(2)", f"results_dir={results}"]
    env = {**os.environ, **slurm}
    os.environ.update(slurm)  # start_bench passes this process's environment on
    try:
        proc, log = start_bench([*args, "+hydra.launcher.additional_parameters={hold:true}"], tmp_path, "held")
        wait_for(lambda: len(_tasks(results, env)) == 2, timeout=120)
        held = sorted(_tasks(results, env))
        assert set(_tasks(results, env).values()) == {"PENDING"}, _tasks(results, env)
        subprocess.run(["scancel", held[1]], check=True, timeout=30, env=env)
        subprocess.run(["scontrol", "release", held[0]], check=True, timeout=30, env=env)
        code = _ended(proc, log, slurm)
    finally:
        for key in slurm:
            os.environ.pop(key, None)
    out = log.read_text()
    assert code == 1, out[-3000:]
    errors = [line for line in out.splitlines() if line.startswith("error:")]
    assert len(errors) == 1 and f"Slurm job {held[1]} ended without a result" in errors[0], out[-3000:]
    assert "Traceback" not in out
    (info,) = _infos(results).values()  # the released job ran to its end; the cancelled one never started
    assert info["status"] == "completed" and "-s0-" in info["run_id"]

    again = _sweep(*args, env=slurm)
    assert again.returncode == 0 and "1 ran, 1 skipped" in again.stdout, again.stdout[-3000:]

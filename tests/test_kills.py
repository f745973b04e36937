"""Sweeps that are killed outright (SIGKILL, no chance to clean up) and started again lose nothing:
every run ends completed exactly once, in a complete folder, and no process is left behind."""
from __future__ import annotations

import csv
import json
import os
import random
import signal
import subprocess
import time
from pathlib import Path

import pytest
from conftest import HARNESS_FRAMEWORK
from helpers import is_hanging, processes_mentioning, start_bench, status_of, wait_for

TINY = [HARNESS_FRAMEWORK, "data=mnist_embedded", "data.limit_train=64", "data.limit_test=64", "epochs=1",
        "optimizer=minibatch", "progress=none"]
RUNS, KILLS = 200, 5


def _tagged(sweep_pid: int) -> list[int]:
    """Live processes started by the sweep ``sweep_pid`` (its workers and their run children)."""
    tag = f"OPTBENCH_SWEEP_PID={sweep_pid}".encode()
    found = []
    for environ in Path("/proc").glob("[0-9]*/environ"):
        try:
            if tag in environ.read_bytes().split(b"\0"):
                found.append(int(environ.parent.name))
        except OSError:  # gone, or a zombie
            continue
    return found


def _completed(results: Path) -> int:
    runs = results / "runs"
    return sum(json.loads((p / "run.json").read_text()).get("status") == "completed"
               for p in runs.iterdir() if (p / "run.json").is_file()) if runs.is_dir() else 0


def _check_every_folder(results: Path, seeds: range) -> None:
    folders = sorted((results / "runs").iterdir())
    seen = []
    for folder in folders:
        info = json.loads((folder / "run.json").read_text())
        rows = list(csv.DictReader(open(folder / "metrics.csv")))
        assert info["status"] == "completed" and info["run_id"] == folder.name, folder
        assert [r["epoch"] for r in rows] == ["0", "1"] and rows[-1]["status"] == "completed", folder
        assert {r["run_id"] for r in rows} == {folder.name}
        assert {int(r["seed"]) for r in rows} == {info["config"]["seed"]}
        assert int(rows[-1]["n_train"]) == info["n_train"] and (folder / "spec.json").is_file()
        seen.append(info["config"]["seed"])
    assert sorted(seen) == list(seeds)  # no run missing, none twice, no stray folder
    assert not list(results.rglob("*.tmp"))


@pytest.mark.slow
@pytest.mark.stress
# Its own limit, not the suite's 900 s: 200 runs beside two other pytest workers took longer than
# that on a slower machine (the waits inside have their own limits and name what they waited for).
@pytest.mark.timeout(3000)
def test_200_runs_5_kill_9s_of_the_sweep_lose_nothing(results: Path, tmp_path: Path) -> None:
    args = ["-m", *TINY, f"seed=range({RUNS})", "jobs=2", f"results_dir={results}"]
    # Seeded moments spread over the sweep: once this many runs are complete, then 0-4 s later
    # (mid-run, between runs, while a run writes its files: wherever it falls).
    moments = random.Random(20261127)
    targets = sorted(moments.sample(range(5, RUNS - 10), KILLS))
    begin = time.monotonic()
    for kill, target in enumerate(targets):
        proc, log = start_bench(args, tmp_path, f"part{kill}")
        wait_for(lambda t=target, p=proc: _completed(results) >= t or p.poll() is not None, timeout=1800)
        try:
            proc.wait(timeout=moments.uniform(0, 4))
            pytest.fail(f"the sweep ended before kill {kill}: {log.read_text()[-2000:]}")
        except subprocess.TimeoutExpired:
            os.kill(proc.pid, signal.SIGKILL)
            proc.wait()
        wait_for(lambda pid=proc.pid: not _tagged(pid), timeout=120)  # its workers and runs died with it
    last_start, done_before = time.monotonic(), _completed(results)
    proc, log = start_bench(args, tmp_path, "last")
    assert proc.wait(timeout=3600) == 0, log.read_text()[-3000:]
    end = time.monotonic()
    # the pool's workers end a moment after the sweep (joblib shuts them down, or they get SIGTERM)
    wait_for(lambda: not _tagged(proc.pid) and not processes_mentioning(str(results)), timeout=60)
    _check_every_folder(results, range(RUNS))

    steady = (RUNS - done_before) / (end - last_start)  # runs per second of a sweep nobody kills
    lost = ((end - begin) - RUNS / steady) / KILLS
    print(f"\n[kills] {RUNS} runs, {KILLS} kills: {end - begin:.0f} s in all, {steady:.3f} runs/s unkilled, "
          f"{lost:.1f} s lost per kill, kills after {targets} completed runs")


@pytest.mark.slow
def test_a_sweep_killed_with_its_whole_process_group_leaves_running_then_the_next_finishes_it(
        results: Path, tmp_path: Path) -> None:
    args = ["-m", *TINY, "seed=0,1", "jobs=2", f"results_dir={results}"]
    proc, log = start_bench(args, tmp_path, "group", fault="hang@1@-s1-", new_session=True)
    wait_for(lambda: status_of(results, 0) == "completed" and is_hanging(results, 1))
    os.killpg(proc.pid, signal.SIGKILL)  # parent, workers and run child at once: nobody records anything
    proc.wait()
    wait_for(lambda: not processes_mentioning(str(results)), timeout=60)
    assert status_of(results, 1) == "running"

    again, log = start_bench(args, tmp_path, "again")
    assert again.wait(timeout=400) == 0, log.read_text()[-3000:]
    out = log.read_text()
    assert "1 run(s) left running by a stopped sweep: marked interrupted" in out
    assert "1 ran, 1 skipped" in out
    assert status_of(results, 0) == "completed" and status_of(results, 1) == "completed"


@pytest.mark.slow
def test_a_single_run_marks_a_stale_running_run_interrupted(results: Path, tmp_path: Path) -> None:
    proc, log = start_bench(["-m", *TINY, "seed=1", f"results_dir={results}"], tmp_path, "stale", fault="hang@1",
                       new_session=True)
    wait_for(lambda: is_hanging(results, 1))
    os.killpg(proc.pid, signal.SIGKILL)
    proc.wait()
    wait_for(lambda: not processes_mentioning(str(results)), timeout=60)
    assert status_of(results, 1) == "running"
    single, log = start_bench([*TINY, "seed=0", f"results_dir={results}"], tmp_path, "single")
    assert single.wait(timeout=400) == 0, log.read_text()[-3000:]
    assert status_of(results, 1) == "interrupted" and status_of(results, 0) == "completed"

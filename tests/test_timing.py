"""The timing pass and its clocks: contention seen, the CPU lock honoured, the files exact.

The protocol itself (slots, pinning, the budget, the honesty check) is tested on fake workers in
test_timing_protocol.py; here the real pass runs on a tiny sweep (slow) and the CLI refuses bad input."""
from __future__ import annotations

import csv
import json
import math
import os
import shutil
import subprocess
import sys
import time
from pathlib import Path

import pytest
from conftest import HARNESS_FRAMEWORK, ROOT, run_cli

from bench.clock import MachineCpu, Snapshot, contention_share, parse_proc_stat, parse_self_stat
from bench.timing.core import COLUMNS, Worker, measure

PROC_STAT = """cpu  100 20 30 800 50 0 5 0 7 0
cpu0 50 10 15 400 25 0 3 0 0 0
intr 12345 0 0
"""
SELF_STAT = "4242 (python (a) b) R 1 2 3 0 -1 4194304 99 0 0 0 {u} {s} 0 0 20 0 1 0 45174 3133440 379\n"
TINY = ["data=mnist_embedded", "data.limit_train=128", "data.limit_test=128", "epochs=1", "progress=none"]


# ------------------------------------------------------------------ bench.clock on fake /proc
def test_proc_stat_busy_and_total_exclude_guest_time() -> None:
    cpu = parse_proc_stat(PROC_STAT)
    assert cpu == MachineCpu(busy=100 + 20 + 30 + 5, total=100 + 20 + 30 + 800 + 50 + 5)  # guest 7 is in user
    with pytest.raises(ValueError):
        parse_proc_stat("intr 1 2 3\n")


def test_self_stat_survives_a_command_name_with_spaces_and_parentheses() -> None:
    assert parse_self_stat(SELF_STAT.format(u=17, s=4)) == 21


def test_contention_is_the_others_share_clamped_to_0_1() -> None:
    before, after = MachineCpu(100, 1000), MachineCpu(250, 1200)  # 150 busy of 200 jiffies
    assert contention_share(before, after, 10, 60) == pytest.approx(0.5)  # we used 50 of the 150
    assert contention_share(before, after, 0, 190) == 0.0  # jiffy rounding cannot go below 0
    assert contention_share(before, MachineCpu(500, 1200), 0, 0) == 1.0
    assert math.isnan(contention_share(before, before, 0, 0))


def test_snapshot_reads_a_fake_proc_and_is_nan_without_one(tmp_path: Path) -> None:
    def write(busy_user: int, idle: int, own: int) -> None:
        (tmp_path / "self").mkdir(exist_ok=True)
        (tmp_path / "stat").write_text(f"cpu  {busy_user} 0 0 {idle} 0 0 0 0 0 0\n")
        (tmp_path / "self" / "stat").write_text(SELF_STAT.format(u=own, s=0))

    write(100, 100, 10)
    before = Snapshot.take(tmp_path)
    write(180, 120, 30)  # 80 busy of 100, 20 of them ours
    used = Snapshot.take(tmp_path).since(before)
    assert used.contention == pytest.approx(0.6)
    assert used.wall_s >= 0 and used.cpu_s >= 0
    nowhere = Snapshot.take(tmp_path / "absent")
    assert math.isnan(Snapshot.take(tmp_path / "absent").since(nowhere).contention)


@pytest.mark.skipif(not Path("/proc/stat").exists(), reason="needs Linux /proc")
def test_a_cpu_burner_beside_a_timed_sample_shows_as_contention() -> None:
    burners = [subprocess.Popen([sys.executable, "-c", "while True: pass"]) for _ in range(os.cpu_count() or 1)]
    try:
        time.sleep(0.5)  # let them reach the CPUs
        before = Snapshot.take()
        deadline = time.perf_counter() + 1.5
        while time.perf_counter() < deadline:
            sum(range(1000))
        used = Snapshot.take().since(before)
    finally:
        for proc in burners:
            proc.kill()
            proc.wait()
    # One burner per core beside our own loop: they hold about (cores)/(cores + 1) of the CPUs.
    assert 0.25 < used.contention <= 1.0


# ------------------------------------------------------------------ the timing pass, end to end
def _rows(results: Path) -> list[dict[str, str]]:
    with open(results / "timing" / "timing.csv", newline="") as fh:
        reader = csv.DictReader(fh)
        assert tuple(reader.fieldnames) == COLUMNS
        return list(reader)


@pytest.mark.slow
def test_a_float64_run_is_timed_apart_in_a_process_of_its_own(results: Path, tmp_path: Path) -> None:
    """float32 and float64 runs of one configuration: two configurations, each timed in its own
    precision. Keras' floatx is process-wide, so the two never share a hosted worker (they did,
    and the float64 one failed to build, or took the process down)."""
    env = {"OPTBENCH_CPU_LOCK": str(tmp_path / "cpu.lock")}
    sweep = run_cli("-m", *TINY, "framework=tensorflow", "optimizer=minibatch", "precision=fp32,fp64", "jobs=2",
                    f"results_dir={results}", env=env, timeout=600)
    assert sweep.returncode == 0, sweep.stderr[-2000:]
    proc = run_cli(str(results), "processes=1", "rounds=2", "budget_s=2", "passes=1", "contention_threshold=1",
                   module="bench.timing", env=env, timeout=600)
    assert proc.returncode == 0, proc.stdout[-2000:] + proc.stderr[-2000:]
    rows = _rows(results)
    assert sorted({r["precision"] for r in rows}) == ["fp32", "fp64"]
    assert all(math.isfinite(float(r["time_per_step_s"])) for r in rows)
    meta = json.loads((results / "timing" / "timing.json").read_text())
    pids = {meta["configs"][w["config"]]["precision"]: w["pid"] for d in meta["pass_details"] for w in d["processes"]}
    assert len(pids) == 2 and pids["fp32"] != pids["fp64"]
    assert "bs32 fp64" in proc.stdout  # the table names the float64 configuration


@pytest.mark.slow
def test_timing_pass_end_to_end(results: Path, tmp_path: Path) -> None:
    env = {"OPTBENCH_CPU_LOCK": str(tmp_path / "cpu.lock")}
    sweep = run_cli("-m", *TINY, "framework=torch,tensorflow", "optimizer=minibatch,bgd", "jobs=2",
                    f"results_dir={results}", env=env, timeout=600)
    assert sweep.returncode == 0, sweep.stderr[-2000:]
    another_lr = run_cli(*TINY, "optimizer=minibatch", "optimizer.lr=0.02", f"results_dir={results}", env=env)
    assert another_lr.returncode == 0, another_lr.stderr[-2000:]
    # The machine may be shared while the test runs: no sample is left out for contention here, so
    # every count below is exact (leaving them out is tested on known data in test_claims.py).
    proc = run_cli(str(results), "processes=2", "rounds=3", "budget_s=3", "passes=2", "aslr=off",
                   "contention_threshold=1", module="bench.timing", env=env, timeout=900)
    assert proc.returncode == 0, proc.stderr[-2000:]
    rows = _rows(results)
    configs = {(r["framework"], r["optimizer"]) for r in rows}
    assert len(configs) == 4  # lr does not make another configuration
    meta = json.loads((results / "timing" / "timing.json").read_text())
    planned = [d["plan"]["rounds"] for d in meta["pass_details"]]
    assert all(2 <= r <= 3 for r in planned)  # a 3 s budget may cut the rounds, never below 2
    assert len(rows) == 4 * 2 * sum(planned)
    for p, rounds in enumerate(planned, start=1):
        for config in configs:
            mine = [r for r in rows if (r["framework"], r["optimizer"]) == config and int(r["pass"]) == p]
            assert sorted((int(r["process"]), int(r["round"])) for r in mine) == [
                (k, n) for k in (1, 2) for n in range(1, rounds + 1)]
    for r in rows:
        for col in ("time_s", "time_per_step_s", "cpu_time_s"):
            assert math.isfinite(float(r[col])) and float(r[col]) > 0, (col, r)
        assert int(r["steps"]) >= 1
        share = float(r["contention"])
        assert math.isnan(share) or 0.0 <= share <= 1.0
        assert 0 < float(r["pace_s"]) < 1  # the pace loop beside every sample (about 1 ms a repeat)
    assert {"command", "started", "host", "cpu", "rounds", "warmup_rounds", "budget_s", "configs",
            "contention_threshold", "processes", "passes", "pin", "aslr", "summary"} <= set(meta)
    assert meta["rounds"] == 3 and meta["processes"] == 2 and meta["passes"] == 2 and len(meta["configs"]) == 4
    assert meta["pin"] is True and meta["aslr"]["asked"] == "off" and isinstance(meta["aslr"]["used"], bool)
    workers = [w for d in meta["pass_details"] for w in d["processes"]]
    # A fresh process each slot and pass; in it, one framework's configurations are hosted together.
    assert len(workers) == 4 * 2 * 2 and len({w["pid"] for w in workers}) == 2 * 2 * 2
    by_pid: dict = {}
    for w in workers:
        by_pid.setdefault(w["pid"], set()).add(meta["configs"][w["config"]]["framework"])
    assert all(len(names) == 1 for names in by_pid.values())
    if len(os.sched_getaffinity(0)) >= 2:
        assert all(len(w["cpus"]) == 1 for w in workers)  # threads=1: one core each
    assert all(w["aslr_off"] is meta["aslr"]["used"] for w in workers)
    for entry in meta["summary"]:  # how many processes and samples stand behind each number
        assert entry["processes"] == 4 and entry["n"] + entry["contended"] + entry["slow_slot"] == entry["samples"]
    assert "tensorflow/torch" in proc.stdout  # the ratio table
    assert set(meta["pace_s"]) == {"torch", "tensorflow"} and "the interpreter's pace" in proc.stdout
    assert "processes)" in proc.stdout and "honesty check, 2 passes" in proc.stdout
    check = json.loads((results / "timing" / "honesty.json").read_text())
    assert check["passes"] == 2 and len(check["time_per_step"]) == 4 and len(check["ratios"]) == 2


@pytest.mark.parametrize("args, words", [
    (["nosuchkey=1"], "nosuchkey"), (["rounds=1"], "rounds"), (["budget_s=-1"], "budget_s"),
    (["processes=0"], "processes"), (["processes=-2"], "processes"), (["passes=0"], "passes"),
    (["aslr=maybe"], "aslr"), (["pin=maybe"], "pin"), ([], "no finished runs"),
])
def test_timing_pass_bad_input_is_one_line(results: Path, args: list[str], words: str) -> None:
    proc = run_cli(str(results), *args, module="bench.timing", timeout=120)
    assert proc.returncode == 2
    lines = [ln for ln in proc.stderr.splitlines() if ln.strip()]
    assert len(lines) == 1 and words in lines[0], proc.stderr


# ------------------------------------------------------------------ the CPU lock
def overlapping(a: list[tuple[float, float]], b: list[tuple[float, float]]) -> list[tuple]:
    """Pairs of intervals, one from each list, that share a moment (the same pair is skipped)."""
    return [(x, y) for x in a for y in b if x is not y and x[0] < y[1] and y[0] < x[1]]


def test_overlap_check_can_fail() -> None:
    assert overlapping([(0, 2)], [(1, 3)]) and not overlapping([(0, 1)], [(1, 2)])


@pytest.mark.slow
def test_timing_passes_never_overlap_each_other_nor_a_training_run(tmp_path: Path) -> None:
    """Two sweeps and two timing passes started together: every timed phase runs alone."""
    env = {**os.environ, "PYTHONPATH": str(ROOT), "OPTBENCH_CPU_LOCK": str(tmp_path / "cpu.lock")}
    seed_run = run_cli(*TINY, HARNESS_FRAMEWORK, "optimizer=minibatch", f"results_dir={tmp_path / 'a'}", env=env)
    assert seed_run.returncode == 0, seed_run.stderr[-2000:]
    for name in ("t1", "t2"):
        shutil.copytree(tmp_path / "a", tmp_path / name)
    commands = [
        [sys.executable, "-m", "bench", "-m", *TINY, HARNESS_FRAMEWORK, "optimizer=minibatch,sgd", "jobs=2",
         f"results_dir={tmp_path / s}"] for s in ("s1", "s2")
    ] + [
        [sys.executable, "-m", "bench.timing", str(tmp_path / t), "processes=2", "rounds=3", "budget_s=2"]
        for t in ("t1", "t2")
    ]
    procs = [subprocess.Popen(c, env=env, cwd=ROOT, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
             for c in commands]
    outs = [p.communicate(timeout=900) for p in procs]
    for p, (_, err) in zip(procs, outs):
        assert p.returncode == 0, (p.args, err[-2000:])
    timed = []
    for t in ("t1", "t2"):
        meta = json.loads((tmp_path / t / "timing" / "timing.json").read_text())
        timed.append((meta["measure_start"], meta["measure_end"]))
    runs = []
    for s in ("s1", "s2"):
        for info in (json.loads(p.read_text()) for p in (tmp_path / s / "runs").glob("*/run.json")):
            runs.append((info["child_start_time"], info["end_time"]))
    assert len(runs) == 4 and all(a < b for a, b in timed + runs)
    assert not overlapping(timed, timed), "two timing passes measured at once"
    assert not overlapping(timed, runs), "a timing pass measured while a run trained"


# ------------------------------------------------------------------ a worker that stops answering
FAKE_WORKER = """
import json, sys, time
hang_after = int(sys.argv[1])
print("TIMING " + json.dumps({"ready": True}), flush=True)
for n, line in enumerate(sys.stdin):
    if n >= hang_after:
        time.sleep(600)
    steps = json.loads(line)["steps"]
    print("TIMING " + json.dumps({"steps": steps, "time_s": 1e-3 * steps, "cpu_time_s": 1e-3 * steps,
                                  "contention": 0.0}), flush=True)
"""


def _fake_worker(tmp_path: Path, name: str, hang_after: int) -> Worker:
    row = {"framework": name, "optimizer": "sgd", "impl": "native", "mode": "eager", "batch_size": 32,
           "dataset": "x", "n_train": 64, "device": "cpu", "threads": 1, "lr": 0.1}
    worker = Worker({"row": row}, open(tmp_path / f"{name}.log", "w"))
    worker.proc = subprocess.Popen([sys.executable, "-c", FAKE_WORKER, str(hang_after)], stdin=subprocess.PIPE,
                                   stdout=subprocess.PIPE, text=True)
    worker.listen()
    return worker


def test_a_worker_that_stops_answering_is_killed_and_the_others_are_timed_on(tmp_path: Path) -> None:
    good, stuck = _fake_worker(tmp_path, "good", 10**6), _fake_worker(tmp_path, "stuck", 6)
    try:
        assert good.ready() and stuck.ready()
        for w in (good, stuck):
            w.reply_timeout_s = 0.5
        opts = {"rounds": 5, "warmup_rounds": 1, "budget_s": 0.5, "min_sample_s": 0.01}
        t0 = time.monotonic()
        rows = measure([good, stuck], opts, spent_s=0.0)
        assert time.monotonic() - t0 < 30  # not the 600 s the stuck worker sleeps
        assert stuck.error and "no answer in 0.5 s, worker killed" in stuck.error
        assert stuck.proc.poll() is not None  # killed, not left behind
        assert good.error is None
        assert [r["round"] for r in rows if r["framework"] == "good"] == [1, 2, 3, 4, 5]
        assert len([r for r in rows if r["framework"] == "stuck"]) < 5  # its rounds end where it hung
    finally:
        for w in (good, stuck):
            w.close()

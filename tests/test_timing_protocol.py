"""The timing protocol as plain code: the slot schedule, the CPUs, the budget plan, the honesty
check on synthetic passes, and the whole protocol run against fake workers (nothing real is timed)."""
from __future__ import annotations

import json
import math
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from conftest import ROOT

from bench.report.speed import samples
from bench.run.proc import child_env, run
from bench.timing.honesty import honesty, reference
from bench.timing.protocol import Settings, Worker, aslr_wrapper, time_configs
from bench.timing.schedule import MIN_PROCESS_ROUNDS, cpus_for, order, plan, schedule
from bench.timing.worker import TAG

MULTI_CPU = pytest.mark.skipif(len(os.sched_getaffinity(0)) < 2, reason="pinning needs more than one CPU")


# ------------------------------------------------------------------ the schedule
def test_each_slot_starts_times_and_closes_one_process_of_every_configuration_before_the_next() -> None:
    steps = schedule(4, processes=3, rounds=5, warmup_rounds=1)
    assert [s.kind for s in steps[:8]] == ["start", "warmup", *["round"] * 5, "close"]
    assert len(steps) == 3 * 8
    for k in (1, 2, 3):
        mine = [i for i, s in enumerate(steps) if s.process == k]
        assert mine == list(range(mine[0], mine[0] + 8))  # a slot's steps are contiguous: closed before the next
        assert steps[mine[0]].kind == "start" and steps[mine[-1]].kind == "close"
        assert steps[mine[0]].configs == (0, 1, 2, 3)
        assert [s.round for s in steps if s.process == k and s.kind == "round"] == [1, 2, 3, 4, 5]
    # every configuration gets one process per slot, never two in one slot
    starts = [c for s in steps if s.kind == "start" for c in s.configs]
    assert sorted(starts) == sorted(list(range(4)) * 3)


def test_rounds_interleave_every_configuration_and_the_order_rotates_between_slots() -> None:
    steps = schedule(6, processes=3, rounds=2, warmup_rounds=1)
    visits = [s for s in steps if s.kind in ("warmup", "round")]
    for s in visits:
        assert sorted(s.configs) == list(range(6))  # A B C ... in every round
    firsts = {s.process: s.configs[0] for s in visits}
    assert firsts == {1: 0, 2: 2, 3: 4}  # each slot starts a third further along
    assert order(6, 1, 3) == (0, 1, 2, 3, 4, 5) and order(0, 1, 3) == ()


def test_each_process_is_pinned_to_as_many_cpus_as_its_threads_and_moves_between_slots() -> None:
    assert cpus_for(0, 1, 1, [0, 1]) == [0] and cpus_for(0, 2, 1, [0, 1]) == [1]  # another core next slot
    assert cpus_for(1, 1, 1, [0, 1]) == [1]  # neighbours start on different cores
    assert cpus_for(2, 2, 2, [4, 5, 6, 7]) == [4, 7]  # threads=2: two CPUs, wrapping around
    assert cpus_for(0, 1, 4, [0, 1]) == [0, 1]  # threads cover the machine: every allowed CPU
    used = {c for k in (1, 2, 3) for c in cpus_for(5, k, 1, [2, 3, 8])}
    assert used == {2, 3, 8}  # three processes of one configuration: three different cores


# ------------------------------------------------------------------ the budget
def test_the_plan_spends_the_budget_on_processes_and_accounts_for_their_start_up() -> None:
    roomy = plan(budget_s=300, start_up_s=20, n_configs=10, processes=3, rounds=5, warmup_rounds=1, min_sample_s=0.2)
    assert (roomy.processes, roomy.rounds, roomy.note) == (3, 5, None)
    samples_ = 10 * (3 * 6 + 1)
    assert roomy.sample_s == pytest.approx((300 - 3 * 20) / samples_)  # three start-ups come off first
    assert roomy.expected_s == 300
    tight = plan(budget_s=90, start_up_s=20, n_configs=10, processes=3, rounds=5, warmup_rounds=1, min_sample_s=0.2)
    assert tight.processes == 3 and MIN_PROCESS_ROUNDS <= tight.rounds < 5  # rounds go before processes
    assert tight.sample_s >= 0.2 and "cut from 5 to" in tight.note
    assert 3 * 20 + 10 * (3 * (tight.rounds + 1) + 1) * tight.sample_s == pytest.approx(90)
    short = plan(budget_s=50, start_up_s=20, n_configs=10, processes=3, rounds=5, warmup_rounds=1, min_sample_s=0.2)
    assert (short.processes, short.rounds, short.sample_s) == (3, MIN_PROCESS_ROUNDS, 0.2)  # never shorter samples
    assert short.expected_s > 50 and "over budget" in short.note and "budget_s=" in short.note


# ------------------------------------------------------------------ the honesty check
def _passes(shift: float = 0.0, n_passes: int = 3, seed: int = 4) -> pd.DataFrame:
    """Timing rows of two frameworks, one method, ``n_passes`` passes of 4 processes x 4 rounds; the
    last pass runs ``1 + shift`` times slower for the second framework only."""
    rng = np.random.default_rng(seed)
    rows = []
    for p in range(1, n_passes + 1):
        for k in range(1, 5):
            for r in range(1, 5):
                for fw, t in (("torch", 1e-3), ("jax", 0.5e-3)):
                    slow = 1 + shift if (p == n_passes and fw == "jax") else 1.0
                    t = t * slow * (1 + 0.002 * rng.standard_normal())
                    rows.append({"framework": fw, "optimizer": "adam", "impl": "native", "mode": "eager",
                                 "batch_size": 32, "dataset": "d", "device": "cpu", "model": "mlp", "pass": p,
                                 "process": k, "round": r, "time_per_step_s": t, "contention": 0.0})
    return samples(pd.DataFrame(rows))


def test_the_honesty_check_covers_passes_that_agree_and_flags_one_that_does_not() -> None:
    agree = honesty(_passes(), 0.1, lambda key: key[3], baseline="torch")
    assert agree["passes"] == 3 and len(agree["time_per_step"]) == 2 and len(agree["ratios"]) == 1
    t = agree["coverage"]["time_per_step"]
    assert t["pairs"] == 2 * 6 and t["configurations"] == 2
    first = agree["time_per_step"][0]["passes"][0]
    assert first["processes"] == 4 and first["n"] == 16
    off = honesty(_passes(shift=0.05), 0.1, lambda key: key[3], baseline="torch")
    jax = next(c for c in off["time_per_step"] if c["configuration"] == "jax")
    torch = next(c for c in off["time_per_step"] if c["configuration"] == "torch")
    assert not jax["all_covered"]
    # pass 3's jax interval holds neither other median, and neither other interval holds pass 3's
    missed = {(p["interval"], p["median"]) for p in jax["pairs"] if not p["covered"]}
    assert missed == {(3, 1), (3, 2), (1, 3), (2, 3)}
    assert off["coverage"]["time_per_step"]["pairs_covered"] <= 12 - 4
    assert off["coverage"]["time_per_step"]["all_covered"] == int(torch["all_covered"])
    assert not off["ratios"][0]["all_covered"]  # the jax/torch ratio moved with it
    assert off["coverage"]["ratios"]["share_all_covered"] == 0.0


def test_a_configuration_clean_in_one_pass_only_is_not_counted_as_uncovered(capsys) -> None:
    """jax's samples contended in every pass but the first: nothing to compare for it, so it is
    neither 'not all covered' nor part of the shares; with nothing anywhere, the line says so."""
    from bench.timing.honesty import print_honesty

    rows = _passes()
    rows.loc[(rows["framework"] == "jax") & (rows["pass"] > 1), "contention"] = 0.9
    result = honesty(rows, 0.1, lambda key: key[3], baseline="torch")
    assert result["coverage"]["time_per_step"]["configurations"] == 1  # torch only
    assert result["coverage"]["time_per_step"]["share_all_covered"] == 1.0
    print_honesty(result)
    out = capsys.readouterr().out
    assert "clean in one pass only: nothing to compare" in out and "nan%" not in out and "<- not all" not in out
    rows.loc[rows["pass"] > 1, "contention"] = 0.9
    print_honesty(honesty(rows, 0.1, lambda key: key[3], baseline="torch"))
    out = capsys.readouterr().out
    assert "no configuration has clean medians in two passes" in out and "nan%" not in out


def test_the_honesty_check_measures_the_drift_between_passes_and_applies_the_allowance() -> None:
    """Pass 3's jax runs 3 % slower (drift no pass can see from inside): the check estimates a spread
    between passes of about that size for times and ratios; with the allowance set to it the
    intervals hold the other passes' medians, where without it they did not."""
    rows = _passes(shift=0.03)
    bare = honesty(rows, 0.1, lambda key: key[3], baseline="torch")
    assert bare["drift"] == {"time": 0.0, "ratio": 0.0}
    seen = bare["between_passes"]
    # three medians, one 3 % off: their sd is 1.7 %
    assert 0.01 < seen["time"] < 0.014 and 0.015 < seen["ratio"] < 0.02  # torch 0, jax 1.7 %: pooled 1.2 %
    assert bare["coverage"]["ratios"]["share_all_covered"] == 0.0
    allowed = honesty(rows, 0.1, lambda key: key[3], baseline="torch", drift={"time": 0.02, "ratio": 0.02})
    assert allowed["coverage"]["ratios"]["share_all_covered"] == 1.0
    assert allowed["coverage"]["time_per_step"]["share_all_covered"] == 1.0
    assert allowed["between_passes"] == seen  # measured without the allowance, whatever the pass used
    assert honesty(_passes(), 0.1, lambda key: key[3], baseline="torch")["between_passes"]["ratio"] < 0.002


def test_the_honesty_reference_is_what_calibrated_intervals_score() -> None:
    ref = reference(3)
    assert ref["pair"] == pytest.approx(0.834, abs=1e-3) and ref["all"] == pytest.approx(0.652, abs=1e-3)
    assert reference(2)["all"] == pytest.approx(reference(2)["pair"], abs=1e-3)  # two passes: one pair each way
    # the same by simulation: three normal medians, each with the interval median +- 1.96 sd
    rng = np.random.default_rng(0)
    m = rng.standard_normal((20000, 3))
    all_in = (m.max(axis=1) - m.min(axis=1)) <= 1.959964
    assert all_in.mean() == pytest.approx(ref["all"], abs=0.015)


# ------------------------------------------------------------------ the protocol against fake workers
FAKE = """
import json, os, sys, time
sys.path.insert(0, {root!r})
from bench.timing.worker import pin
options = json.loads(sys.argv[1])
slow = float(sys.argv[2])
cpus = pin(options.get("cpus") or [])
began = time.time()
print({tag!r} + json.dumps({{"ready": True, "cpus": cpus, "pid": os.getpid(), "aslr_off": False,
                            "began": began}}), flush=True)
for line in sys.stdin:
    steps = json.loads(line)["steps"]
    print({tag!r} + json.dumps({{"steps": steps, "time_s": slow * 1e-3 * steps, "cpu_time_s": slow * 1e-3 * steps,
                                "contention": 0.0, "cpus": sorted(os.sched_getaffinity(0)), "at": time.time()}}),
          flush=True)
with open(options["trace"], "a") as fh:
    fh.write(json.dumps({{"pid": os.getpid(), "began": began, "ended": time.time()}}) + "\\n")
"""


class FakeWorker(Worker):
    """Starts a script that answers like a worker, without a framework: its times are made up."""

    def begin(self) -> None:
        script = FAKE.format(root=str(ROOT), tag=TAG)
        options = {"cpus": self.cpus, "trace": self.config["trace"]}
        self.proc = subprocess.Popen([sys.executable, "-c", script, json.dumps(options), str(self.config["slow"])],
                                     stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=self.log, text=True)
        self.listen()


def _fake_configs(tmp_path: Path, n: int) -> list[dict]:
    return [{"row": {"framework": f"fw{i}", "n_train": 64, "batch_size": 32}, "spec": {"threads": 1},
             "slow": 1.0 + i, "trace": str(tmp_path / "trace.jsonl")} for i in range(n)]


def test_the_protocol_times_every_configuration_in_its_processes_slot_by_slot(tmp_path: Path,
                                                                             monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("OPTBENCH_CPU_LOCK", str(tmp_path / "cpu.lock"))
    settings = Settings(processes=3, rounds=2, warmup_rounds=1, budget_s=5.0, min_sample_s=0.01, pin=True)
    said: list[str] = []
    got = time_configs(_fake_configs(tmp_path, 3), settings, tmp_path / "logs", say=said.append, worker=FakeWorker)
    assert not got.errors and got.plan is not None and got.plan.processes == 3
    assert len(got.rows) == 3 * 3 * got.plan.rounds
    per = {(r["framework"], r["process"]) for r in got.rows}
    assert per == {(f"fw{i}", k) for i in range(3) for k in (1, 2, 3)}
    for r in got.rows:  # the rows carry their configuration's fields and a per-step time
        assert r["time_per_step_s"] == pytest.approx(1e-3 * (1 + int(r["framework"][2:])))
    assert {p["config"] for p in got.processes} == {0, 1, 2} and len(got.processes) == 9
    assert got.measure_start <= got.measure_end and got.start_up_s > 0
    assert any("plan:" in line for line in said)
    # slot k+1's processes started only after every process of slot k had ended
    trace = [json.loads(line) for line in (tmp_path / "trace.jsonl").read_text().splitlines()]
    assert len(trace) == 9
    by_pid = {t["pid"]: t for t in trace}
    slots = {k: [by_pid[p["pid"]] for p in got.processes if p["process"] == k] for k in (1, 2, 3)}
    for k in (1, 2):
        assert max(t["ended"] for t in slots[k]) <= min(t["began"] for t in slots[k + 1])
    if len(os.sched_getaffinity(0)) >= 2:  # each process on one core, a configuration's processes on different ones
        assert all(len(p["cpus"]) == 1 for p in got.processes)
        for i in range(3):
            assert len({p["cpus"][0] for p in got.processes if p["config"] == i}) == 2


def test_a_failed_configuration_is_not_started_again_and_the_others_are_timed(tmp_path: Path,
                                                                              monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("OPTBENCH_CPU_LOCK", str(tmp_path / "cpu.lock"))
    configs = _fake_configs(tmp_path, 2)
    configs[1]["slow"] = "not a number"  # its script dies at once: the worker ends before it is ready

    settings = Settings(processes=2, rounds=2, warmup_rounds=1, budget_s=2.0, min_sample_s=0.01, pin=False)
    got = time_configs(configs, settings, tmp_path / "logs", say=lambda _: None, worker=FakeWorker)
    assert set(got.errors) == {1}
    assert {r["framework"] for r in got.rows} == {"fw0"} and len(got.rows) == 2 * got.plan.rounds
    assert [p["config"] for p in got.processes if p["process"] == 2] == [0]  # not started again


# ------------------------------------------------------------------ the worker's own pinning and ASLR
@MULTI_CPU
def test_pinning_reaches_every_thread_of_the_worker_even_one_started_before() -> None:
    code = ("import json, os, threading, time\n"
            "from bench.timing.worker import pin\n"
            "stop = threading.Event()\n"
            "t = threading.Thread(target=stop.wait); t.start()\n"
            "cpus = pin([min(os.sched_getaffinity(0))])\n"
            "tids = [int(x) for x in os.listdir('/proc/self/task')]\n"
            "print(json.dumps({'cpus': cpus, 'threads': [sorted(os.sched_getaffinity(x)) for x in tids]}))\n"
            "stop.set(); t.join()\n")
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60,
                          env={**os.environ, "PYTHONPATH": str(ROOT)}, cwd=ROOT)
    assert done.returncode == 0, done.stderr
    seen = json.loads(done.stdout)
    assert len(seen["cpus"]) == 1 and len(seen["threads"]) >= 2
    assert all(t == seen["cpus"] for t in seen["threads"])


def test_the_aslr_probe_says_whether_setarch_turns_randomisation_off() -> None:
    wrapper, note = aslr_wrapper()
    assert (wrapper and note is None) or (not wrapper and note and "ASLR on" in note)
    plain = run("bench.timing", ["--probe"], env=child_env(), timeout=60)
    assert plain.returncode == 0 and json.loads(plain.stdout)["aslr_off"] in (False, None)
    if wrapper:  # where it is permitted, the worker really runs without randomisation
        off = run("bench.timing", ["--probe"], env=child_env(), wrapper=wrapper, timeout=60)
        assert json.loads(off.stdout)["aslr_off"] is True


def test_settings_come_from_the_options() -> None:
    s = Settings.from_options({"processes": 4, "rounds": 3, "pin": False, "aslr": "off", "passes": 3,
                               "results_dir": "x", "budget_s": 10.0})
    assert (s.processes, s.rounds, s.pin, s.aslr, s.budget_s) == (4, 3, False, "off", 10.0)
    assert math.isfinite(s.min_sample_s) and s.warmup_rounds == 1


def test_configurations_share_a_worker_process_only_with_the_same_framework_and_environment() -> None:
    from bench.spec import build_spec, compose
    from bench.timing.protocol import host_key

    def spec(fw: str, optimizer: str = "adam", **kw) -> dict:
        return build_spec(compose(fw, optimizer, "mnist_embedded", **kw))

    assert host_key(spec("jax", "adam")) == host_key(spec("jax", "sgd", batch_size=1))  # methods and batches share
    assert host_key(spec("jax")) != host_key(spec("torch"))
    assert host_key(spec("jax")) != host_key(spec("jax", threads=2))  # other thread pools: another process
    # float64 is process-wide in JAX and Keras: a float64 twin never shares its float32 worker
    assert host_key(spec("tensorflow")) != host_key(spec("tensorflow", precision="fp64"))
    assert host_key(spec("jax", "sgd", precision="fp64")) == host_key(spec("jax", "adam", precision="fp64"))

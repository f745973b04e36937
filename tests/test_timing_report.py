"""The report's and compare's side of the timing pass with several worker processes: a new
timing.csv (process and pass columns) and an old one (neither) are read alike, samples are paired
by pass, process slot and round, and the numbers say how many processes stand behind them."""
from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from conftest import run_cli

from bench.clock import DRIFT
from bench.report import speed
from bench.report.load import load_timing
from bench.timing.core import COLUMNS

OLD_COLUMNS = [c for c in COLUMNS if c not in ("model", "process", "pass", "framework_version")]


def timing_rows(tf_over_torch: float, processes: int, rounds: int, seed: int, passes: int = 1,
                between: float = 0.0) -> list[dict]:
    """Timing rows of torch and TensorFlow, Adam: each round's drift is shared by both (they ran back to
    back); each process of each framework has its own speed (sd ``between`` in the log)."""
    rng = np.random.default_rng(seed)
    rows = []
    for p in range(1, passes + 1):
        for k in range(1, processes + 1):
            own = {fw: np.exp(between * rng.standard_normal()) for fw in ("torch", "tensorflow")}
            for r in range(1, rounds + 1):
                drift = 1 + 0.05 * rng.standard_normal()
                for fw, base in (("torch", 300e-6), ("tensorflow", 300e-6 * tf_over_torch)):
                    t = base * own[fw] * drift * (1 + 0.005 * rng.standard_normal())
                    rows.append({"framework": fw, "optimizer": "adam", "impl": "native", "mode": "eager",
                                 "batch_size": 32, "lr": 0.001, "dataset": "mnist_embedded", "n_train": 4000,
                                 "device": "cpu", "threads": 1, "round": r, "steps": 1000, "time_s": 1000 * t,
                                 "time_per_step_s": t, "cpu_time_s": 1000 * t, "contention": 0.0, "model": "mlp",
                                 "process": k, "pass": p})
    return rows


def write(folder: Path, rows: list[dict], columns: list[str], verdict: str = "supported") -> Path:
    (folder / "timing").mkdir(parents=True)
    # rows name no release: an empty framework_version cell is the pinned one
    pd.DataFrame(rows).reindex(columns=columns).to_csv(folder / "timing" / "timing.csv", index=False)
    (folder / "report").mkdir()
    pd.DataFrame([{"dataset": "mnist_embedded", "method": "adam", "claim": "computationally more complex",
                   "framework": "tensorflow", "verdict": verdict}]).to_csv(folder / "report" / "claims.csv",
                                                                           index=False)
    return folder


def test_an_old_timing_csv_is_one_process_and_keeps_its_one_level_interval(tmp_path: Path) -> None:
    rows = timing_rows(1.2, processes=1, rounds=7, seed=1)
    write(tmp_path, rows, OLD_COLUMNS)
    timing, _ = load_timing(tmp_path)
    rounds = speed.round_times(timing.rows)
    key = next(k for k in rounds if speed.key_framework(k) == "tensorflow")
    assert list(rounds[key].index) == [(1, 1, r) for r in range(1, 8)]
    iv = speed.time_ratio(rounds, key, speed.with_framework(key, "torch"))
    assert iv.groups == 1 and iv.n == 7 and iv.lo <= 1.2 <= iv.hi
    table = speed.timing_table(timing.rows)
    assert set(table["timing_n"]) == {7} and set(table["timing_rounds"]) == {7}


def test_samples_pair_by_pass_process_and_round_and_count_their_processes(tmp_path: Path) -> None:
    rows = timing_rows(1.2, processes=3, rounds=4, seed=2, passes=2, between=0.05)
    rows[5]["contention"] = 0.9  # one TensorFlow sample ran beside another program: left out, counted
    write(tmp_path, rows, list(COLUMNS))
    timing, _ = load_timing(tmp_path)
    rounds = speed.round_times(timing.rows)
    tf = next(k for k in rounds if speed.key_framework(k) == "tensorflow")
    torch = speed.with_framework(tf, "torch")
    assert len(rounds[torch]) == 24 and len(rounds[tf]) == 23  # 2 passes x 3 processes x 4 rounds, one left out
    iv = speed.time_ratio(rounds, tf, torch)
    assert iv.n == 23 and iv.groups == 6  # every (pass, process) is a process of its own
    assert "6 processes" in iv.text()
    table = speed.timing_table(timing.rows).set_index("framework")
    assert (table.loc["tensorflow", "timing_n"], table.loc["tensorflow", "timing_rounds"],
            table.loc["tensorflow", "timing_contended"]) == (23, 24, 1)
    # the two-level interval of a configuration is wider than its rounds alone would make it
    one = speed.median_ci(rounds[torch].to_numpy(float))
    assert (table.loc["torch", "time_per_step_hi"] - table.loc["torch", "time_per_step_lo"]) > (one.hi - one.lo)
    text = speed.protocol_text(timing.rows, {"warmup_rounds": 1, "pin": True, "aslr": {"used": False}})
    assert "3 worker process(es) per configuration in each of 2 passes" in text and "4 round(s)" in text
    assert "pinned to their own cores" in text and "ASLR on" in text and "1 of 48 timed rows" in text


def test_ratios_pair_within_a_process_slot_not_across_slots() -> None:
    """Slot 2 ran on a slower stretch of the machine: both configurations of the slot took 3 times
    longer. Paired within the slot the ratio is 2 throughout; across slots it would not be."""
    index = pd.MultiIndex.from_tuples([(1, k, r) for k in (1, 2) for r in (1, 2, 3)], names=speed.SAMPLE_KEYS)
    slow = np.repeat([1.0, 3.0], 3)
    rounds = {("a",): pd.Series(2e-3 * slow, index=index), ("b",): pd.Series(1e-3 * slow, index=index)}
    iv = speed.time_ratio(rounds, ("a",), ("b",))
    assert (iv.est, iv.lo, iv.hi, iv.n, iv.groups) == pytest.approx((2.0, 2.0, 2.0, 6, 2))
    rounds[("b",)] = rounds[("b",)].drop(index[1])  # a sample missing on one side: only its pair goes
    assert speed.time_ratio(rounds, ("a",), ("b",)).n == 5


@pytest.mark.parametrize("new_b, code", [(True, 0), (False, 0)])
def test_compare_reads_old_and_new_timing_files_alike(tmp_path: Path, new_b: bool, code: int) -> None:
    a = write(tmp_path / "a", timing_rows(1.2, processes=1, rounds=7, seed=1), OLD_COLUMNS)
    rows_b = timing_rows(1.2, processes=3, rounds=5, seed=3) if new_b else timing_rows(1.2, 1, 7, seed=4)
    b = write(tmp_path / "b", rows_b, list(COLUMNS) if new_b else OLD_COLUMNS)
    proc = run_cli(str(a), str(b), module="bench.report.compare", timeout=120)
    assert proc.returncode == code, proc.stdout + proc.stderr
    assert "AGREE" in proc.stdout
    assert ("3 processes" in proc.stdout) == new_b  # the new folder's ratio says what stands behind it


def test_compare_disagrees_when_a_new_folder_s_ratio_moved(tmp_path: Path) -> None:
    a = write(tmp_path / "a", timing_rows(1.2, processes=3, rounds=5, seed=5), list(COLUMNS))
    b = write(tmp_path / "b", timing_rows(1.6, processes=3, rounds=5, seed=6), list(COLUMNS))
    proc = run_cli(str(a), str(b), module="bench.report.compare", timeout=120)
    assert proc.returncode == 1 and "DISAGREE" in proc.stdout


def test_compare_reads_the_between_run_allowance_each_pass_recorded(tmp_path: Path) -> None:
    """A ratio 4 % higher in the second folder, each folder's interval about 1 % wide: DISAGREE when the
    passes recorded no allowance (intervals of their own samples only), AGREE with the default one
    (1.5 % for ratios), which both report and compare read from timing.json."""
    import json

    def folders(drift: dict | None) -> list[Path]:
        out = []
        for name, ratio, seed in (("a", 1.2, 11), ("b", 1.248, 12)):
            folder = write(tmp_path / f"{name}{drift is not None}", timing_rows(ratio, 5, 3, seed), list(COLUMNS))
            if drift is not None:
                (folder / "timing" / "timing.json").write_text(json.dumps({"drift": drift}))
            out.append(folder)
        return out

    a, b = folders(None)
    bare = run_cli(str(a), str(b), module="bench.report.compare", timeout=120)
    assert bare.returncode == 1 and "DISAGREE" in bare.stdout
    a, b = folders(dict(DRIFT))
    allowed = run_cli(str(a), str(b), module="bench.report.compare", timeout=120)
    assert allowed.returncode == 0 and "AGREE" in allowed.stdout, allowed.stdout
    timing, _ = load_timing(a)
    assert timing.drift == DRIFT and timing.rounds().drift_ratio == DRIFT["ratio"]
    key = next(k for k in timing.rounds() if speed.key_framework(k) == "tensorflow")
    wide = speed.time_ratio(timing.rounds(), key, speed.with_framework(key, "torch"))
    narrow = speed.time_ratio(speed.round_times(timing.rows), key, speed.with_framework(key, "torch"))
    assert wide.lo < narrow.lo <= narrow.est == wide.est <= narrow.hi < wide.hi
    assert "between-run allowance, 2.5% for a time per step and 1.5% for a ratio" in speed.protocol_text(
        timing.rows, timing.meta, drift=timing.drift)


@pytest.mark.parametrize("recorded, kept", [(None, 9), (0.5, 15)])
def test_samples_are_left_out_at_the_pass_s_own_contention_threshold(tmp_path: Path, recorded: float | None,
                                                                     kept: int) -> None:
    """A pass run with contention_threshold=0.5 kept samples at 30 % contention; the report and the
    comparison must keep them too (and leave them out under the default 10 % when the pass says none)."""
    rows = timing_rows(1.2, processes=3, rounds=5, seed=8)
    for row in rows:
        if row["round"] in (1, 2) and row["framework"] == "tensorflow":
            row["contention"] = 0.3
    write(tmp_path, rows, list(COLUMNS))
    if recorded is not None:
        (tmp_path / "timing" / "timing.json").write_text(f'{{"contention_threshold": {recorded}}}')
    timing, _ = load_timing(tmp_path)
    rounds = speed.round_times(timing.rows, timing.threshold)
    key = next(k for k in rounds if speed.key_framework(k) == "tensorflow")
    assert len(rounds[key]) == kept
    assert speed.time_ratio(rounds, key, speed.with_framework(key, "torch")).n == kept


def test_a_slot_in_which_the_machine_slowed_is_named_and_left_out(tmp_path: Path) -> None:
    """Every configuration of process slot 4 ran 1.8 times slower (a host busy beyond the VM: no
    contention seen): the pass and the report name the slot and leave its samples out, like contended
    ones, and count them; the ratio from the other four slots finds 1.2, the times their own speed."""
    rows = timing_rows(1.2, processes=5, rounds=3, seed=9)
    for row in rows:
        if row["process"] == 4:
            row["time_per_step_s"] *= 1.8
            row["time_s"] *= 1.8
    write(tmp_path, rows, list(COLUMNS))
    timing, _ = load_timing(tmp_path)
    rounds = timing.rounds()
    (slow,) = rounds.slow
    assert (slow["pass"], slow["process"], slow["configurations"]) == (1, 4, 2)
    assert slow["factor"] == pytest.approx(1.8, rel=0.05)
    assert sum(len(t) for t in rounds.values()) == 24 and all(4 not in {i[1] for i in t.index} for t in rounds.values())
    key = next(k for k in rounds if speed.key_framework(k) == "tensorflow")
    ratio = speed.time_ratio(rounds, key, speed.with_framework(key, "torch"))
    assert ratio.lo <= 1.2 <= ratio.hi and ratio.groups == 4
    torch_time = speed.time_interval(rounds[speed.with_framework(key, "torch")])
    assert torch_time.hi < 1.8 * torch_time.est * 0.9  # the slow slot does not stretch the interval
    table = speed.timing_table(timing.rows)
    assert set(table["timing_contended"]) == {3} and set(table["timing_n"]) == {12}  # 3 samples left out, counted
    text = speed.protocol_text(timing.rows, {}, slow=rounds.slow)
    assert "slow stretch: process slot 4 took 1.8" in text and "left out" in text
    assert speed.round_times(pd.DataFrame(timing_rows(1.2, processes=5, rounds=3, seed=9))).slow == []


def _paced(rows: list[dict], seed: int, slow: dict[int, float] | None = None, dispatch: dict[int, float] | None = None,
           pace_s: float = 2e-3) -> list[dict]:
    """The rows with each worker's pace loop beside every sample (``pace_s``, 1 % noise); in the
    process slots of ``slow`` the interpreter ran that much slower, and in those of ``dispatch`` torch's
    steps (Python dispatch) slowed by that factor while TensorFlow's (here a compiled loop) did not."""
    rng = np.random.default_rng(seed)
    for row in rows:
        row["pace_s"] = pace_s * (slow or {}).get(row["process"], 1.0) * (1 + 0.01 * rng.standard_normal())
        if row["framework"] == "torch":
            f = (dispatch or {}).get(row["process"], 1.0)
            row["time_per_step_s"] *= f
            row["time_s"] *= f
    return rows


def test_a_slot_in_which_only_python_slowed_is_found_by_the_pace_loop_and_left_out(tmp_path: Path) -> None:
    """In slot 3 the machine ran interpreted code 1.4 times slower: torch's dispatch-bound step slowed
    by 1.3, TensorFlow's compiled one not at all. The median over configurations (1.15) is under the
    slow-slot factor, so the times alone miss it; the workers' pace loop finds it, the slot is left
    out and named, and the ratio from the other slots is the machine's usual 1.2."""
    rows = _paced(timing_rows(1.2, processes=5, rounds=3, seed=4), seed=5, slow={3: 1.4}, dispatch={3: 1.3})
    write(tmp_path, rows, list(COLUMNS))
    timing, _ = load_timing(tmp_path)
    rounds = timing.rounds()
    (slow,) = rounds.slow
    assert (slow["process"], slow["by"], slow["configurations"]) == (3, "pace", 2)
    assert slow["factor"] == pytest.approx(1.4, rel=0.03)
    key = next(k for k in rounds if speed.key_framework(k) == "tensorflow")
    ratio = speed.time_ratio(rounds, key, speed.with_framework(key, "torch"))
    assert ratio.groups == 4 and ratio.lo <= 1.2 <= ratio.hi
    assert "process slot 3 ran Python 1.4" in speed.slow_slots_text(rounds.slow)
    assert timing.pace == pytest.approx({"torch": 2e-3, "tensorflow": 2e-3}, rel=0.02)
    text = speed.protocol_text(timing.rows, {}, slow=rounds.slow)
    assert "ran Python 1.4" in text and "The interpreter's pace" in text and "tensorflow 2.00 ms" in text
    # without the pace (a file from before it) the same times keep slot 3: nothing tells it apart
    for row in rows:
        row["pace_s"] = float("nan")
    assert speed.round_times(pd.DataFrame(rows)).slow == []


@pytest.mark.parametrize("slower, said", [(1.0, False), (1.25, True)])
def test_compare_names_the_machine_when_its_pace_moved_between_runs(tmp_path: Path, slower: float,
                                                                      said: bool) -> None:
    """B ran on a machine whose interpreter was a quarter slower in every slot: torch's steps slowed with
    it, the ratio moved, and compare still disagrees, but says the machine moved, by how much; at the
    same pace it says nothing of the kind."""
    a = write(tmp_path / "a", _paced(timing_rows(1.2, processes=5, rounds=3, seed=1), seed=2), list(COLUMNS))
    b_rows = _paced(timing_rows(1.2, processes=5, rounds=3, seed=3), seed=4, slow=dict.fromkeys(range(1, 6), slower),
                    dispatch=dict.fromkeys(range(1, 6), slower))
    b = write(tmp_path / "b", b_rows, list(COLUMNS))
    proc = run_cli(str(a), str(b), module="bench.report.compare", timeout=120)
    assert proc.returncode == (1 if said else 0), proc.stdout + proc.stderr
    assert "the interpreter's pace" in proc.stdout
    assert ("B/A 1.2" if said else "B/A 1.0") in proc.stdout
    assert ("the machine ran Python 25% slower in B than in A" in proc.stdout) is said

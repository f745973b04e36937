"""The batch-size scaling pass: its plan, its verdicts on synthetic samples, and one real tiny pass."""
from __future__ import annotations

import csv
import json
from pathlib import Path

import numpy as np
import pytest
from conftest import run_cli

from bench.clock import drift_of
from bench.frameworks import NAMES
from bench.scaling.analysis import COLUMNS, crossings, pair_ratios, slow_processes, summarise
from bench.scaling.core import resolve_batches


def test_full_is_the_training_set_and_sizes_above_it_are_left_out() -> None:
    assert resolve_batches([1, 8, 32, 128, 512, 2048, "full"], 1000) == [1, 8, 32, 128, 512, 1000]
    assert resolve_batches([2048, "full", 1], 4000) == [1, 2048, 4000]


def _rows(per_step: dict[str, dict[int, float]], processes: int = 3, rounds: int = 4, spread: float = 0.02,
          seed: int = 0, contended: int = 0) -> list[dict]:
    """Samples of a known time per step per (framework, batch), with process-level and round-level noise."""
    rng = np.random.default_rng(seed)
    rows = []
    for fw, curve in per_step.items():
        for p in range(1, processes + 1):
            shift = rng.normal(0, spread)
            for r in range(1, rounds + 1):
                for batch, t in curve.items():
                    tps = t * np.exp(shift + rng.normal(0, spread / 2))
                    rows.append({"framework": fw, "model": "mlp", "mode": "compiled", "batch_size": batch,
                                 "process": p, "round": r, "steps": 10, "time_s": 10 * tps, "time_per_step_s": tps,
                                 "samples_per_s": batch / tps, "contention": 0.9 if contended > 0 else 0.0})
                    contended -= 1
    return rows


def test_each_point_is_the_median_with_an_interval_that_holds_it() -> None:
    rows = _rows({"a": {1: 1e-3, 64: 2e-3}})
    points = summarise(rows, {"contention_threshold": 0.1, "matmul_gflops": [10.0], "flop_per_sample": {"mlp": 1e6}})
    assert [p["batch_size"] for p in points] == [1, 64]
    for p, t in zip(points, (1e-3, 2e-3)):
        assert p["samples_per_s_lo"] < p["samples_per_s"] < p["samples_per_s_hi"]
        assert abs(p["time_per_step_s"] / t - 1) < 0.1
        assert (p["processes"], p["rounds"]) == (3, 12)
        assert p["floor_samples_per_s"] == pytest.approx(1e4)  # 10 GFLOP/s over 1 MFLOP per sample


def test_the_between_run_allowance_the_pass_recorded_widens_every_point_and_ratio() -> None:
    """scaling.json's ``drift`` (as bench.timing's): each point's interval and each paired ratio's grow by
    it; a file without it keeps its own intervals; a 3 % lead is a lead without it and a tie with 5 %."""
    rows = _rows({"a": {1: 1e-3}, "b": {1: 1.03e-3}}, spread=0.002)
    bare = {p["framework"]: p for p in summarise(rows, {})}
    wide = {p["framework"]: p for p in summarise(rows, {"drift": {"time": 0.025, "ratio": 0.015}})}
    for fw in ("a", "b"):
        assert wide[fw]["samples_per_s"] == bare[fw]["samples_per_s"]
        assert wide[fw]["samples_per_s_lo"] < bare[fw]["samples_per_s_lo"] < bare[fw]["samples_per_s_hi"] \
            < wide[fw]["samples_per_s_hi"]
    (narrow,), (broad,) = pair_ratios(rows, "mlp", "a", "b").values(), pair_ratios(rows, "mlp", "a", "b",
                                                                                 drift=0.015).values()
    assert broad.lo < narrow.lo and broad.hi > narrow.hi and broad.est == narrow.est
    assert "a is faster" in crossings(rows, "mlp", ["a", "b"])[0]
    assert "cannot be told apart" in crossings(rows, "mlp", ["a", "b"], drift=0.05)[0]
    assert drift_of({}) == {"time": 0.0, "ratio": 0.0} and drift_of({"drift": {"time": "x"}})["time"] == 0.0


def test_contended_samples_are_left_out_and_counted() -> None:
    rows = _rows({"a": {1: 1e-3}}, contended=2)
    (point,) = summarise(rows, {"contention_threshold": 0.1})
    assert point["left_out"] == 2 and point["rounds"] == 10 and not point["all_contended"]


def test_a_slow_process_slot_is_left_out_of_points_and_ratios_and_counted() -> None:
    """Slot 3 of every curve ran 1.5x slower (the machine, for a stretch): the points and the paired
    ratios keep slots 1, 2 and 4; the same slot slowed by the pace probe alone is found too."""
    curves = {"a": {1: 1e-3, 64: 2e-3}, "b": {1: 2e-3, 64: 2e-3}}
    rows = _rows(curves, processes=4, spread=0.004)
    for r in rows:
        r["pace_s"] = 1e-3
    slowed = [{**r, "time_per_step_s": r["time_per_step_s"] * (1.5 if r["process"] == 3 else 1.0),
               "samples_per_s": r["samples_per_s"] / (1.5 if r["process"] == 3 else 1.0)} for r in rows]
    (found,) = slow_processes(slowed)
    assert found["process"] == 3 and found["factor"] == pytest.approx(1.5, rel=0.03) and "by" not in found
    for clean, slow in zip(summarise(rows, {}), summarise(slowed, {})):
        assert slow["processes"] == 3 and slow["slow_slots"] == 1 and clean["slow_slots"] == 0
        assert slow["samples_per_s"] == pytest.approx(clean["samples_per_s"], rel=0.02)
    assert pair_ratios(slowed, "mlp", "a", "b")[1].n == 12  # 3 slots x 4 rounds, paired
    paced = [{**r, "pace_s": 1.4e-3 if r["process"] == 2 else 1e-3} for r in rows]
    assert [(d["process"], d["by"]) for d in slow_processes(paced)] == [(2, "pace")]
    assert slow_processes(_rows(curves, processes=4, spread=0.004)) == []  # noise alone is not a slow slot


def test_a_point_whose_every_sample_was_contended_is_kept_and_flagged() -> None:
    rows = _rows({"a": {1: 1e-3}}, processes=1, rounds=3, contended=3)
    (point,) = summarise(rows, {"contention_threshold": 0.1})
    assert point["all_contended"] and point["left_out"] == 0 and point["rounds"] == 3


def test_curves_that_cross_are_said_to_cross_in_the_right_order() -> None:
    # a: cheap calls, slow arithmetic; b: expensive calls, fast arithmetic. They cross between 64 and 512.
    a = {b: 1e-4 + 2e-6 * b for b in (1, 8, 64, 512, 4096)}
    b = {b: 4e-4 + 1e-6 * b for b in (1, 8, 64, 512, 4096)}
    (sentence,) = crossings(_rows({"a": a, "b": b}), "mlp", ["a", "b"])
    assert "cross" in sentence and "a at small batches, b at large" in sentence
    assert "a leads at batch sizes 1–64" in sentence and "b leads at batch sizes 512–4096" in sentence


def test_one_framework_ahead_everywhere_is_not_a_crossing() -> None:
    a = {b: 1e-4 * b for b in (1, 8, 64)}
    (sentence,) = crossings(_rows({"a": a, "b": {k: 2 * v for k, v in a.items()}}), "mlp", ["a", "b"])
    assert sentence == "mlp: a is faster than b at batch sizes 1–64."


def test_noise_alone_is_called_a_tie() -> None:
    a = {b: 1e-4 * b for b in (1, 8, 64)}
    (sentence,) = crossings(_rows({"a": a, "b": dict(a)}, spread=0.05, seed=3), "mlp", ["a", "b"])
    assert "cannot be told apart" in sentence


def test_bad_input_is_one_line_and_exit_2(tmp_path: Path) -> None:
    for bad in ("batch_sizes=0,8", "models=nope", "frameworks=caffe", "processes=0", "data=nope"):
        done = run_cli(f"results_dir={tmp_path}", bad, module="bench.scaling", timeout=120)
        assert done.returncode == 2, (bad, done.stderr)
        assert len(done.stderr.strip().splitlines()) == 1 and "Traceback" not in done.stderr, done.stderr
    assert not (tmp_path / "scaling" / "scaling.csv").exists()


@pytest.mark.slow
def test_a_tiny_pass_times_every_batch_size_in_each_process_and_the_report_draws_it(tmp_path: Path) -> None:
    fw = NAMES[-1]
    done = run_cli(str(tmp_path), "models=mlp", f"frameworks={fw}", "batch_sizes=8,full", "limit_train=256",
                   "processes=2", "rounds=2", "budget_s=2", "min_sample_s=0.02",
                   module="bench.scaling", timeout=600)
    assert done.returncode == 0, done.stdout[-2000:] + done.stderr[-2000:]
    rows = list(csv.DictReader(open(tmp_path / "scaling" / "scaling.csv")))
    assert tuple(rows[0]) == COLUMNS
    assert {(r["process"], r["round"], r["batch_size"]) for r in rows} == {
        (p, r, b) for p in ("1", "2") for r in ("1", "2") for b in ("8", "256")}
    meta = json.loads((tmp_path / "scaling" / "scaling.json").read_text())
    assert meta["batch_sizes"] == [8, 256] and meta["mode_probe"][0]["chosen"] in {r["mode"] for r in rows}
    assert all(float(r["samples_per_s"]) > 0 for r in rows)
    from bench.scaling.section import report_section

    section = report_section(tmp_path)
    assert section is not None and section.figures[0].is_file() and len(section.table) == 2


def test_two_passes_agree_point_by_point_within_the_tolerance_and_their_intervals() -> None:
    from bench.scaling.analysis import compare_points

    curve = {1: 1e-3, 64: 2e-3}
    a = summarise(_rows({"a": curve}, seed=1), {"contention_threshold": 0.1})
    same = summarise(_rows({"a": curve}, seed=2), {"contention_threshold": 0.1})
    slower = summarise(_rows({"a": {k: 1.3 * v for k, v in curve.items()}}, seed=2), {"contention_threshold": 0.1})
    assert all(r["agree"] for r in compare_points(a, same, 0.10))
    rows = compare_points(a, slower, 0.10)
    assert not any(r["agree"] for r in rows) and all(r["difference"] > 0.2 for r in rows)
    missing = compare_points(a, same[:1], 0.10)  # a point only one pass has does not agree
    assert [r["agree"] for r in missing] == [True, False]


def _folder(path: Path, rows: list[dict]) -> Path:
    from bench.results import write_csv, write_json

    full = [{**r, "optimizer": "adam", "impl": "native", "n_train": 4000, "cpu_time_s": r["time_s"],
             "dataset": "mnist_embedded", "threads": 1, "device": "cpu"} for r in rows]
    write_csv(path / "scaling" / "scaling.csv", full, COLUMNS)
    write_json(path / "scaling" / "scaling.json", {"contention_threshold": 0.1, "curves": []})
    return path


def test_compare_checks_two_scaling_passes_point_by_point(tmp_path: Path) -> None:
    curve = {1: 1e-3, 64: 2e-3}
    a = _folder(tmp_path / "a", _rows({"a": curve, "b": curve}, seed=1))
    same = _folder(tmp_path / "same", _rows({"a": curve, "b": curve}, seed=2))
    slower = _folder(tmp_path / "slower", _rows({"a": curve, "b": {k: 1.3 * v for k, v in curve.items()}}, seed=2))
    done = run_cli(str(a), str(same), module="bench.report.compare", timeout=120)
    assert done.returncode == 0 and "AGREE" in done.stdout and "over 4 points" in done.stdout, done.stdout
    done = run_cli(str(a), str(slower), module="bench.report.compare", timeout=120)
    assert done.returncode == 1 and "DISAGREE" in done.stdout and "2 outside" in done.stdout, done.stdout
    done = run_cli(str(a), str(tmp_path / "nothing"), module="bench.report.compare", timeout=120)
    assert done.returncode == 2 and "Traceback" not in done.stderr  # no timing pass, no scaling pass: bad input


def test_a_model_file_is_a_curve_named_after_its_model(tmp_path: Path) -> None:
    """models= takes your own model file's path next to conf/model/ names; curves, rows and the
    FLOP floor name it by its model's name, and two entries with one name are refused."""
    from bench.exits import BadInput
    from bench.scaling import core as scaling

    mine = tmp_path / "model" / "mine.yaml"
    mine.parent.mkdir()
    mine.write_text("name: mine\nlayers:\n  - {type: flatten}\n  - {type: dense, units: 10}\n")
    cfg = scaling.parse_args([f"models=mlp,{mine}", f"results_dir={tmp_path}"])
    assert cfg["models"] == ["mlp", "mine"] and scaling.model_file(cfg, "mine") == str(mine)
    assert scaling.make_spec(cfg, "torch", "mine", "eager")["model"]["name"] == "mine"
    twin = tmp_path / "other" / "model" / "mlp.yaml"
    twin.parent.mkdir(parents=True)
    twin.write_text("name: mlp\nlayers:\n  - {type: flatten}\n  - {type: dense, units: 10}\n")
    with pytest.raises(BadInput, match="both called mlp"):
        scaling.parse_args([f"models=mlp,{twin}", f"results_dir={tmp_path}"])

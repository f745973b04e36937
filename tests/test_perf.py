"""Execution modes compute the same thing; bench.perf and bench.perf.gpu_check run and write sane
tables. No speed is asserted here: timings on a shared machine are not test material."""
from __future__ import annotations

import csv
import math
from pathlib import Path

import pytest

from bench.perf.core import COLUMNS, FLOP_PER_SAMPLE, build_rows, report_section
from bench.report.sections import ReportSection
from tests.conftest import SMALL, run_cli


def _last_epoch(results: Path) -> dict[str, str]:
    (metrics,) = (results / "runs").glob("*/metrics.csv")
    with open(metrics, newline="") as fh:
        return list(csv.DictReader(fh))[-1]


@pytest.mark.parametrize("framework", ["torch", "tensorflow"])
def test_compiled_matches_eager_after_an_epoch(tmp_path: Path, framework: str) -> None:
    last = {}
    for mode in ("eager", "compiled"):
        out = tmp_path / mode
        proc = run_cli(f"framework={framework}", f"mode={mode}", "optimizer=adam", "epochs=1",
                       "progress=none", f"results_dir={out}", *SMALL)
        assert proc.returncode == 0, proc.stderr[-2000:]
        last[mode] = _last_epoch(out)
        assert last[mode]["mode"] == mode and last[mode]["status"] == "completed"
        assert 0 <= float(last[mode]["overhead_frac"]) < 1
    for key in ("train_loss", "step_loss_mean", "test_loss"):
        eager, compiled = float(last["eager"][key]), float(last["compiled"][key])
        assert abs(compiled / eager - 1) < 1e-5, (key, eager, compiled)


def test_perf_quick_writes_a_sane_table(tmp_path: Path) -> None:
    proc = run_cli("quick=true", "batches=32", "modes=eager", f"results_dir={tmp_path}", module="bench.perf",
                   timeout=600)
    assert proc.returncode == 0, proc.stderr[-2000:]
    with open(tmp_path / "perf" / "perf.csv", newline="") as fh:
        rows = list(csv.DictReader(fh))
    assert list(rows[0]) == list(COLUMNS)
    cases = {r["case"] for r in rows}
    assert cases == {"naive torch DataLoader", "naive keras fit", "harness torch eager", "harness tensorflow eager"}
    for row in rows:
        assert row["error"] == "", row
        assert float(row["epoch_time_s"]) > 0 and float(row["samples_per_s"]) > 0
        assert math.isfinite(float(row["vs_naive_torch"])) and math.isfinite(float(row["vs_naive_tf"]))
        assert float(row["floor_s"]) > 0 and float(row["x_floor"]) > 0
    section = report_section(tmp_path)
    assert isinstance(section, ReportSection) and section.title == "Speed" and len(section.table) == 4
    assert "Batch 32, best mode" in section.text and "Failed" not in section.text
    assert report_section(tmp_path / "nothing") is None


def test_ratios_are_against_the_naive_loop_of_the_same_batch() -> None:
    base = {"device": "cpu", "threads": 1, "mode": "eager"}
    results = [
        ({**base, "kind": "naive", "framework": "torch", "mode": "naive", "batch": 32},
         {"epoch_time_s": 12.0, "steps": 10, "n_train": 320}),
        ({**base, "kind": "naive", "framework": "tensorflow", "mode": "naive", "batch": 32},
         {"epoch_time_s": 4.0, "steps": 10, "n_train": 320}),
        ({**base, "kind": "harness", "framework": "torch", "batch": 32},
         {"epoch_time_s": 2.0, "steps": 10, "n_train": 320}),
        ({**base, "kind": "harness", "framework": "torch", "batch": "full"}, {"error": "boom"}),
    ]
    rows = build_rows(results, rate=100.0, dataset="x")
    assert rows[2]["vs_naive_torch"] == 6.0 and rows[2]["vs_naive_tf"] == 2.0
    assert rows[2]["floor_s"] == pytest.approx(320 * FLOP_PER_SAMPLE / 100e9)
    assert rows[2]["step_time_us"] == pytest.approx(2e5)
    assert rows[3]["error"] == "boom" and "x_floor" not in rows[3]


@pytest.mark.parametrize("args", [["bogus=1"], ["batches=0"], ["modes=jit"], ["threads=two"]])
def test_perf_bad_input_is_one_line_and_exit_2(args: list[str]) -> None:
    proc = run_cli(*args, module="bench.perf", timeout=60)
    assert proc.returncode == 2
    assert len(proc.stderr.strip().splitlines()) == 1 and proc.stderr.startswith("error:")


def test_gpu_check_runs_its_path_on_cpu(tmp_path: Path) -> None:
    proc = run_cli("device=cpu", f"out={tmp_path}", "methods=sgd,adam", "modes=eager", "limit_train=64",
                   "perf=false", module="bench.perf.gpu_check", timeout=300)
    assert proc.returncode == 0, proc.stderr[-2000:]
    with open(tmp_path / "gpu_check.csv", newline="") as fh:
        summary = list(csv.DictReader(fh))
    assert [(r["optimizer"], r["status"]) for r in summary] == [("sgd", "completed"), ("adam", "completed")]
    assert (tmp_path / "gpu_runs.csv").is_file() and (tmp_path / "gpu_check.json").is_file()

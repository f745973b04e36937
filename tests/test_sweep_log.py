"""A sweep's log a person can read: one line per run's end instead of one per epoch, and a
throttled progress line with elapsed time and an estimate of the time left."""
from __future__ import annotations

import re
from pathlib import Path

import pytest

from bench.run import progress
from bench.run.progress import Counts, SweepReporter, eta_s, progress_line, read_counts, resolve_style
from tests.conftest import HARNESS_FRAMEWORK, SMALL, run_cli


def test_auto_style_is_a_bar_on_a_terminal_lines_for_a_run_and_the_end_line_in_a_sweep() -> None:
    assert resolve_style("auto", tty=True, in_sweep=True) == "bar"
    assert resolve_style("auto", tty=False, in_sweep=False) == "lines"
    assert resolve_style("auto", tty=False, in_sweep=True) == "end"
    assert resolve_style("lines", tty=False, in_sweep=True) == "lines"  # an explicit value wins
    assert resolve_style("none", tty=True, in_sweep=True) == "none"


def test_eta_is_elapsed_per_finished_run_times_the_runs_not_finished() -> None:
    assert eta_s(60.0, Counts(done=0, failed=0, running=2, total=10)) is None  # nothing finished yet
    assert eta_s(60.0, Counts(done=3, failed=1, running=2, total=10)) == pytest.approx(20.0 * 7)
    # skipped runs took no time: they count neither in the rate nor in what is left
    assert eta_s(60.0, Counts(done=5, failed=0, running=1, total=10, skipped=2)) == pytest.approx(20.0 * 5)
    assert eta_s(60.0, Counts(done=3, failed=0, running=1, total=None)) is None  # Optuna: size unknown
    assert "ETA unknown" in progress_line(Counts(0, 0, 2, 10), 5.0)
    line = progress_line(Counts(done=3, failed=1, running=2, total=10), 125.0)
    assert line == "[sweep] 3 done (1 failed), 2 running, 5 left, 2m05s elapsed, ETA 4m52s"
    assert "ETA" not in progress_line(Counts(10, 0, 0, 10), 125.0)  # the end: nothing left to estimate


def _markers(pdir: Path, **states: int) -> None:
    for p in pdir.iterdir():
        if p.name != "total":
            p.unlink()
    job = 0
    for state, n in states.items():
        for _ in range(n):
            (pdir / f"{job}.{state}").touch()
            job += 1


def test_progress_line_at_most_every_interval_and_only_when_something_changed(tmp_path: Path,
                                                                              monkeypatch) -> None:
    monkeypatch.setattr(progress, "REPORT_INTERVAL_S", 30.0)
    (tmp_path / "total").write_text("4")
    now = [1000.0]
    lines: list[str] = []
    reporter = SweepReporter(tmp_path, clock=lambda: now[0], out=lines.append)
    _markers(tmp_path, running=2)
    now[0] += 10
    assert not reporter.tick() and lines == []  # within the first interval
    now[0] += 20
    assert reporter.tick() and lines[-1].startswith("[sweep] 0 done (0 failed), 2 running, 2 left, 30s elapsed")
    assert "ETA unknown" in lines[-1]
    _markers(tmp_path, done=1, running=2)
    now[0] += 29
    assert not reporter.tick()  # changed, but not due
    now[0] += 1
    assert reporter.tick() and "1 done" in lines[-1] and "1m00s elapsed, ETA 3m00s" in lines[-1]
    now[0] += 45
    assert not reporter.tick()  # due, but nothing new to say
    _markers(tmp_path, done=3, failed=1)
    final = reporter.finish()  # the end line is printed whatever the interval
    assert final == read_counts(tmp_path) and final.done == 4 and final.failed == 1
    assert lines[-1] == "[sweep] 4 done (1 failed), 0 running, 0 left, 1m45s elapsed"
    assert len(lines) == 3


@pytest.mark.slow
def test_a_sweep_off_a_terminal_prints_one_line_per_run_and_its_progress(results: Path) -> None:
    proc = run_cli("-m", HARNESS_FRAMEWORK, "optimizer=sgd,adam", "epochs=2", *SMALL, f"results_dir={results}")
    assert proc.returncode == 0, proc.stderr[-3000:]
    out = proc.stdout
    assert " epoch " not in out, out  # no per-epoch lines
    ends = re.findall(r"^\[jax (\w+) bs\d+ s\d+\] (\w+) test_acc (\d\.\d{4}) in (\d+\.\d)s$", out, re.MULTILINE)
    assert sorted(e[0] for e in ends) == ["adam", "sgd"], out
    assert all(status == "completed" and 0 < float(acc) <= 1 for _, status, acc, _ in ends)
    final = [line for line in out.splitlines() if line.startswith("[sweep] 2 done")]
    assert final and re.search(r"0 running, 0 left, \d+(m\d\d)?s elapsed$", final[-1]), out
    assert "[sweep] finished: 2 ran" in out


@pytest.mark.slow
def test_progress_lines_set_explicitly_print_every_epoch_in_a_sweep(results: Path) -> None:
    proc = run_cli("-m", HARNESS_FRAMEWORK, "optimizer=sgd", "epochs=2", *SMALL, f"results_dir={results}",
                   "progress=lines")
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert "epoch 1/2" in proc.stdout and "epoch 2/2" in proc.stdout
    assert proc.stdout.count(" completed test_acc ") == 1


@pytest.mark.slow
def test_a_data_fallback_is_said_once_per_lane_and_kept_in_every_run(results: Path, tmp_path: Path) -> None:
    empty = tmp_path / "no-mnist"
    empty.mkdir()
    proc = run_cli("-m", HARNESS_FRAMEWORK, "optimizer=sgd", "seed=0,1,2", "epochs=1", "jobs=1", "data=mnist",
                   f"data.root={empty}", "data.download=false", "data.limit_train=256", "data.limit_test=128",
                   f"results_dir={results}")
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert proc.stderr.count("FALLING BACK") == 1, proc.stderr  # one lane: one line for three runs
    logs = sorted((results / "runs").glob("*/stderr.log"))
    assert len(logs) == 3 and all("FALLING BACK" in log.read_text() for log in logs)

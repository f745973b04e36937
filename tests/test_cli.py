"""One real run per framework through the real CLI, on a small slice of the embedded digits."""
from __future__ import annotations

import csv
import json
from pathlib import Path

import pytest
from conftest import SMALL, run_cli

from bench.results import METRIC_COLUMNS


def _rows(run_dir: Path) -> list[dict[str, str]]:
    with open(run_dir / "metrics.csv", newline="") as fh:
        return list(csv.DictReader(fh))


def _only_run(results: Path) -> Path:
    runs = list((results / "runs").iterdir())
    assert len(runs) == 1, runs
    return runs[0]


@pytest.mark.slow
@pytest.mark.parametrize("framework", ["torch", "tensorflow"])
def test_one_epoch_through_the_cli(framework: str, results: Path) -> None:
    proc = run_cli(f"framework={framework}", "optimizer=momentum", "epochs=2", *SMALL,
                   f"results_dir={results}", "progress=lines")
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert "epoch 2/2" in proc.stdout
    run = _only_run(results)
    rows = _rows(run)
    assert list(rows[0]) == list(METRIC_COLUMNS)
    assert [r["epoch"] for r in rows] == ["0", "1", "2"]
    assert {r["status"] for r in rows} == {"completed"}
    assert rows[0]["steps"] == "0" and rows[2]["steps"] == str(2 * (256 // 32))
    assert rows[0]["dataset"] == "mnist_embedded" and rows[0]["n_train"] == "256"
    assert float(rows[2]["train_loss"]) < float(rows[0]["train_loss"])
    assert float(rows[1]["epoch_time_s"]) > 0 and float(rows[1]["eval_time_s"]) > 0
    info = json.loads((run / "run.json").read_text())
    assert info["status"] == "completed" and info["framework_version"]
    assert info["config"]["optimizer"]["name"] == "momentum" and info["device_name"]
    assert info["run_id"] == run.name
    steps = list(csv.DictReader(open(run / "steps.csv")))
    assert len(steps) == 2 * 8 and steps[-1]["step"] == "16"


@pytest.mark.slow
def test_same_command_twice_skips_then_force_reruns_identically(results: Path) -> None:
    args = ("framework=torch", "optimizer=adam", "epochs=1", *SMALL, f"results_dir={results}")
    first = run_cli(*args)
    assert first.returncode == 0, first.stderr[-3000:]
    run = _only_run(results)
    before = _rows(run)
    # what a SIGKILL in the middle of an atomic write leaves: a finished run keeps its files and
    # loses the debris; a re-run clears it too
    (run / ".run.json.k1ll3d.tmp").write_text('{"status": "runn')
    again = run_cli(*args)
    assert again.returncode == 0 and "[skip]" in again.stdout
    assert not list(run.glob("*.tmp")) and json.loads((run / "run.json").read_text())["status"] == "completed"
    (run / ".spec.json.k1ll3d.tmp").write_text("{")
    forced = run_cli(*args, "force=true")
    assert forced.returncode == 0 and not list(run.glob("*.tmp"))
    after = _rows(run)
    for key in ("train_loss", "test_loss", "test_acc", "step_loss_mean"):
        assert [r[key] for r in before] == [r[key] for r in after]  # bitwise: torch on CPU
    # a finished run whose metrics.csv was damaged since is not skipped: it is trained again, and the
    # damaged file is kept aside, not lost
    (run / "metrics.csv").write_text("run_id,epoch\ngarbage")
    redone = run_cli(*args)
    assert redone.returncode == 0 and "[redo]" in redone.stdout and "[skip]" not in redone.stdout, redone.stdout
    assert (run / "metrics.csv.damaged").read_text() == "run_id,epoch\ngarbage"
    assert [r["test_acc"] for r in _rows(run)] == [r["test_acc"] for r in before]


@pytest.mark.slow
def test_last_partial_batch_is_a_step(results: Path) -> None:
    proc = run_cli("framework=tensorflow", "optimizer=minibatch", "batch_size=100", "epochs=1",
                   *SMALL, f"results_dir={results}")
    assert proc.returncode == 0, proc.stderr[-3000:]
    rows = _rows(_only_run(results))
    assert rows[-1]["steps"] == "3" and rows[-1]["batch_size"] == "100"  # 256 = 100 + 100 + 56


@pytest.mark.slow
def test_sweep_runs_every_job_in_parallel_lanes(results: Path) -> None:
    proc = run_cli("-m", "framework=torch,tensorflow", "optimizer=bgd,sgd", "epochs=1", *SMALL,
                   "data.limit_train=64", f"results_dir={results}", "jobs=2")
    assert proc.returncode == 0, proc.stderr[-3000:]
    runs = sorted(p.name.split("-")[0] + "-" + p.name.split("-")[1] for p in (results / "runs").iterdir())
    assert runs == ["tensorflow-bgd", "tensorflow-sgd", "torch-bgd", "torch-sgd"]
    assert "[sweep] 4 done (0 failed), 0 running, 0 left" in proc.stdout
    bgd = _rows(next((results / "runs").glob("torch-bgd-*")))
    assert bgd[-1]["batch_size"] == "64" and bgd[-1]["steps"] == "1"

"""A user's own model, written outside the repository, trains in every framework and keeps parity.

The model below is one no other test uses (a stride-2 conv, tanh, a 3x3/2 pool), in a folder of its
own that Hydra's search path adds: ``python -m bench hydra.searchpath=[file://DIR] model=mine``.
"""
from __future__ import annotations

import csv
from pathlib import Path

import pytest
from conftest import run_cli

from bench import frameworks

pytestmark = pytest.mark.slow

MINE = """\
# A model the repository does not ship: 28x28x1 -> conv 4@3x3/2 -> 13x13x4 -> pool 3/2 -> 6x6x4 -> 32 -> 10
name: mine
layers:
  - {type: conv2d, filters: 4, kernel: 3, stride: 2, padding: valid}
  - {type: tanh}
  - {type: maxpool2d, size: 3, stride: 2}
  - {type: flatten}
  - {type: dense, units: 32}
  - {type: tanh}
  - {type: dense, units: 10}
"""


@pytest.fixture(scope="module")
def user_conf(tmp_path_factory: pytest.TempPathFactory) -> Path:
    conf = tmp_path_factory.mktemp("user") / "conf"
    (conf / "model").mkdir(parents=True)
    (conf / "model" / "mine.yaml").write_text(MINE)
    return conf


def test_a_model_from_outside_the_repository_trains_in_every_framework(user_conf: Path, tmp_path: Path) -> None:
    results = tmp_path / "r"
    proc = run_cli("-m", f"hydra.searchpath=[file://{user_conf}]", "model=mine",
                   f"framework={','.join(frameworks.NAMES)}", "optimizer=adam", "data=mnist_embedded",
                   "data.limit_train=512", "data.limit_test=256", "epochs=2", "jobs=1",
                   f"results_dir={results}", timeout=900)
    assert proc.returncode == 0, proc.stderr[-2000:]
    runs = sorted((results / "runs").iterdir())
    assert len(runs) == len(frameworks.NAMES) and all("-mine-" in r.name for r in runs)  # model in the run_id
    accs = {}
    for run in runs:
        with open(run / "metrics.csv", newline="") as fh:
            rows = list(csv.DictReader(fh))
        assert rows[-1]["status"] == "completed" and rows[-1]["model"] == "mine"
        accs[rows[-1]["framework"]] = float(rows[-1]["test_acc"])
    assert min(accs.values()) > 0.25, accs  # it learns (chance is 0.1; 0.36 after 32 steps here)
    assert max(accs.values()) - min(accs.values()) < 0.02, accs  # same start, same batches, same math


def test_a_model_from_outside_the_repository_keeps_parity(user_conf: Path, tmp_path: Path) -> None:
    proc = run_cli(f"hydra.searchpath=[file://{user_conf}]", "model=mine", "optimizer=adam", "impl=reference",
                   "steps=20", f"results_dir={tmp_path}", module="bench.parity", timeout=900)
    assert proc.returncode == 0, proc.stderr[-2000:]
    tables = sorted((tmp_path / "parity").glob("*mine*.csv"))
    assert len(tables) == len(frameworks.NAMES) * (len(frameworks.NAMES) - 1) // 2, tables  # every pair
    for table in tables:
        with open(table, newline="") as fh:
            last = list(csv.DictReader(fh))[-1]
        assert last["model"] == "mine" and int(last["step"]) == 20
        assert float(last["param_max_rel_diff"]) < 1e-4, (table.name, last)
        assert float(last["loss_rel_diff"]) < 1e-5, (table.name, last)


def test_bench_perf_times_a_model_file_given_by_its_path(user_conf: Path, tmp_path: Path) -> None:
    """bench.perf (not a Hydra app) takes the same file by its path: its cases train that model,
    and the FLOP floor is that model's."""
    from bench.spec import model_group
    from models.layers import parse_model

    path = user_conf / "model" / "mine.yaml"
    proc = run_cli(f"model={path}", "quick=true", "frameworks=torch", "naive=false", "modes=eager",
                   f"results_dir={tmp_path}", module="bench.perf", timeout=600)
    assert proc.returncode == 0, proc.stderr[-2000:]
    with open(tmp_path / "perf" / "perf.csv", newline="") as fh:
        rows = [r for r in csv.DictReader(fh) if r["case"].startswith("harness")]
    assert rows and {r["model"] for r in rows} == {"mine"}
    assert {int(r["flop_per_sample"]) for r in rows} == {parse_model(model_group(str(path))).flops_per_sample()}
    assert all(not r["error"] and float(r["step_time_us"]) > 0 for r in rows)

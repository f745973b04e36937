"""A run whose loss blows up is `diverged`, even when the loss stays finite (diverge_factor)."""
from __future__ import annotations

import csv
import json
import math
import re
from pathlib import Path

import numpy as np
import pytest
from conftest import SMALL, run_cli

from bench.loop import divergence, epochs_to_run
from bench.spec import LATER_KEYS, build_spec, run_id

BLOW_UP = ["optimizer=minibatch", "optimizer.lr=1e6", *SMALL, "epochs=2", "progress=none"]


def _only_run(results: Path) -> tuple[dict, list[dict]]:
    (run,) = list((results / "runs").iterdir())
    info = json.loads((run / "run.json").read_text())
    with open(run / "metrics.csv", newline="") as fh:
        return info, list(csv.DictReader(fh))


@pytest.mark.slow  # trains until the loss blows up
def test_a_finite_blow_up_is_diverged_and_stops_the_run(results: Path) -> None:
    proc = run_cli(*BLOW_UP, f"results_dir={results}")
    assert proc.returncode == 0, proc.stderr[-2000:]  # diverging is a result, not a failure
    info, rows = _only_run(results)
    assert info["status"] == "diverged"
    assert {r["status"] for r in rows} == {"diverged"}
    assert len(rows) <= 3  # epoch 0 and at most the two epochs asked for
    last = float(rows[-1]["step_loss_mean"])
    assert math.isnan(last) or last > 10 * float(rows[0]["train_loss"])
    assert "diverged" in proc.stderr
    # run.json says why, and the report's status table shows it
    assert re.match(r"epoch \d+: (mean training loss .* > diverge_factor 10 x initial loss|.*non-finite)",
                    info["diverged_reason"]), info["diverged_reason"]
    from bench.report.load import load_runs
    (row,) = load_runs(results).diverged()
    assert row["status"] == "diverged" and row["reason"] == info["diverged_reason"]


@pytest.mark.slow  # trains two epochs
def test_diverge_factor_zero_turns_the_ratio_test_off(results: Path) -> None:
    proc = run_cli(*BLOW_UP, "diverge_factor=0", f"results_dir={results}")
    assert proc.returncode == 0, proc.stderr[-2000:]
    info, rows = _only_run(results)
    if info["status"] == "diverged":  # only a non-finite loss may still stop it
        assert rows[-1]["train_loss"] == "nan"
    else:
        assert info["status"] == "completed" and len(rows) == 3


@pytest.mark.parametrize("value", ["-1", "nan", "inf", "abc", "true"])
def test_bad_diverge_factor_is_one_line(results: Path, value: str) -> None:
    proc = run_cli(*BLOW_UP, f"diverge_factor={value}", f"results_dir={results}")
    assert proc.returncode == 2
    lines = [ln for ln in proc.stderr.splitlines() if ln.strip()]
    assert len(lines) == 1 and "diverge_factor" in lines[0], proc.stderr
    assert not (results / "runs").exists() or not list((results / "runs").iterdir())


def test_defaults_of_the_new_keys_keep_every_run_id(compose) -> None:
    cfg = compose("optimizer=adam")
    spec = build_spec(cfg)
    assert spec["diverge_factor"] == LATER_KEYS["diverge_factor"] and spec["min_steps"] == 0
    older = {k: v for k, v in spec.items() if k not in LATER_KEYS}  # a spec from before the keys
    assert run_id(older) == spec["run_id"]
    for key, value in (("diverge_factor", 5), ("min_steps", 100)):
        assert build_spec({**cfg, key: value})["run_id"] != spec["run_id"]


def test_divergence_rule() -> None:
    assert divergence(np.array([2.0, 1.5]), 2.3, 10) is None
    assert "non-finite" in divergence(np.array([2.0, np.inf]), 2.3, 10)
    assert "diverge_factor" in divergence(np.array([30.0, 20.0]), 2.3, 10)
    assert divergence(np.array([30.0, 20.0]), 2.3, 0) is None  # off
    assert "non-finite" in divergence(np.array([np.nan]), 2.3, 0)  # never off


def test_min_steps_raises_epochs_only_for_few_steps_per_epoch() -> None:
    assert epochs_to_run(5, 100, 1) == 100  # batch GD: one step per epoch
    assert epochs_to_run(5, 100, 125) == 5  # batch 32 on 4,000 images
    assert epochs_to_run(5, 0, 1) == 5

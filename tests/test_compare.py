"""``python -m bench.report.compare A B``: two runs agree when every time ratio is within the
tolerance with overlapping intervals and no claim verdict changed (or, with claims=flips, none flipped);
otherwise exit 1; bad input exit 2."""
from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from conftest import run_cli

COLUMNS = ["framework", "optimizer", "impl", "mode", "batch_size", "lr", "dataset", "n_train", "device",
           "threads", "round", "steps", "time_s", "time_per_step_s", "cpu_time_s", "contention"]


def _write(folder: Path, tf_over_torch: float, verdict: str, seed: int) -> Path:
    rng = np.random.default_rng(seed)
    rows = []
    for r in range(7):
        drift = 1 + 0.05 * rng.standard_normal()  # the machine's drift: shared by both in a round
        for fw, base in (("torch", 300e-6), ("tensorflow", 300e-6 * tf_over_torch)):
            t = base * drift * (1 + 0.005 * rng.standard_normal())
            rows.append({"framework": fw, "optimizer": "adam", "impl": "native", "mode": "eager", "batch_size": 32,
                         "lr": 0.001, "dataset": "mnist_embedded", "n_train": 4000, "device": "cpu", "threads": 1,
                         "round": r, "steps": 1000, "time_s": 1000 * t, "time_per_step_s": t,
                         "cpu_time_s": 1000 * t, "contention": 0.0})
    (folder / "timing").mkdir(parents=True)
    pd.DataFrame(rows, columns=COLUMNS).to_csv(folder / "timing" / "timing.csv", index=False)
    (folder / "report").mkdir()
    pd.DataFrame([{"dataset": "mnist_embedded", "method": "adam", "claim": "computationally more complex",
                   "framework": "tensorflow", "verdict": verdict}]).to_csv(folder / "report" / "claims.csv",
                                                                           index=False)
    return folder


@pytest.mark.parametrize("ratio_b, verdict_b, claims, code, words", [
    (1.20, "supported", "changes", 0, "AGREE"),
    (1.20, "inconclusive", "changes", 1, "DISAGREE: "),        # a changed verdict disagrees ...
    (1.20, "inconclusive", "flips", 0, "1 claim verdict(s) changed, 0 flipped"),  # ... unless only flips count
    (1.60, "supported", "changes", 1, "DISAGREE"),             # the ratio moved by a third
    (1.20, "not supported", "flips", 1, "1 flipped"),          # a verdict flipped: both ways of counting
])
def test_agreement_and_its_failures(tmp_path: Path, ratio_b: float, verdict_b: str, claims: str, code: int,
                                    words: str) -> None:
    a = _write(tmp_path / "a", 1.20, "supported", seed=1)
    b = _write(tmp_path / "b", ratio_b, verdict_b, seed=2)
    proc = run_cli(str(a), str(b), f"claims={claims}", module="bench.report.compare", timeout=120)
    assert proc.returncode == code, proc.stdout + proc.stderr
    assert words in proc.stdout


def test_a_folder_without_a_timing_pass_is_bad_input(tmp_path: Path) -> None:
    a = _write(tmp_path / "a", 1.2, "supported", seed=1)
    (tmp_path / "b").mkdir()
    proc = run_cli(str(a), str(tmp_path / "b"), module="bench.report.compare", timeout=120)
    assert proc.returncode == 2
    assert proc.stderr.strip().startswith("error: ") and len(proc.stderr.strip().splitlines()) == 1

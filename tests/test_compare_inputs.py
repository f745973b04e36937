"""Bad input of ``bench.report.compare`` and ``bench.tuning``, through the real CLI: one line, exit 2.

compare's 1 means DISAGREE, so a crash there (exit 1 with a traceback) would read as a verdict: an
empty key, a missing folder, a damaged timing.csv, timing.json or claims.csv, or nothing to compare
must each be refused in one line that names the key, folder or file. ``bench.tuning lrs`` skips a
damaged run with a warning that names its file and answers from the others. No training, no
framework imported: the folders are written here.
"""
from __future__ import annotations

import json
import os
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from conftest import ROOT, run_cli
from helpers import assert_one_line_error, no_framework_env

from bench.results import METRIC_COLUMNS, write_csv, write_json
from bench.tuning import report_section

COLUMNS = ["framework", "optimizer", "impl", "mode", "batch_size", "lr", "dataset", "n_train", "device",
           "threads", "round", "steps", "time_s", "time_per_step_s", "cpu_time_s", "contention"]
COMPARE = "bench.report.compare"


def _write(folder: Path, seed: int, frameworks: tuple[str, ...] = ("torch", "tensorflow"),
           methods: tuple[str, ...] = ("adam",), verdicts: tuple[str, ...] = ("supported",)) -> Path:
    """A results folder as the timing pass and the report leave it: timing/timing.csv (tensorflow 1.2x
    torch, 7 rounds) and report/claims.csv, one claim per verdict."""
    rng = np.random.default_rng(seed)
    rows = []
    for r in range(7):
        drift = 1 + 0.05 * rng.standard_normal()
        for method in methods:
            for fw, base in (("torch", 300e-6), ("tensorflow", 360e-6)):
                if fw in frameworks:
                    t = base * drift * (1 + 0.005 * rng.standard_normal())
                    rows.append({"framework": fw, "optimizer": method, "impl": "native", "mode": "eager",
                                 "batch_size": 32, "lr": 0.001, "dataset": "mnist_embedded", "n_train": 4000,
                                 "device": "cpu", "threads": 1, "round": r, "steps": 1000, "time_s": 1000 * t,
                                 "time_per_step_s": t, "cpu_time_s": 1000 * t, "contention": 0.0})
    (folder / "timing").mkdir(parents=True)
    pd.DataFrame(rows, columns=COLUMNS).to_csv(folder / "timing" / "timing.csv", index=False)
    (folder / "report").mkdir()
    pd.DataFrame([{"dataset": "mnist_embedded", "method": "adam", "claim": f"claim {i}", "framework": "tensorflow",
                   "verdict": v} for i, v in enumerate(verdicts)]).to_csv(folder / "report" / "claims.csv",
                                                                          index=False)
    return folder


@pytest.fixture
def pair(tmp_path: Path) -> tuple[Path, Path]:
    return _write(tmp_path / "a", seed=1), _write(tmp_path / "b", seed=2)


def _compare(tmp_path: Path, *args: str):
    shim = tmp_path / "shim"  # frameworks that fail on import, made once per test
    env = {"PYTHONPATH": f"{shim}{os.pathsep}{ROOT}"} if shim.is_dir() else no_framework_env(tmp_path)
    return run_cli(*map(str, args), module=COMPARE, timeout=120, env=env)


def test_the_pair_agrees(tmp_path: Path, pair: tuple[Path, Path]) -> None:
    """The folders the other tests damage agree as written, without a warning."""
    proc = _compare(tmp_path, *pair)
    assert proc.returncode == 0 and "AGREE" in proc.stdout and not proc.stderr.strip(), proc.stdout + proc.stderr


# ------------------------------------------------------------------ the keys and the folders
@pytest.mark.parametrize("args, key", [(["a=", "b="], "a="), (["a=x", "b="], "b="), (["a=null", "b=x"], "a=")])
def test_an_empty_folder_key_is_refused_naming_it(tmp_path: Path, args: list[str], key: str) -> None:
    assert_one_line_error(_compare(tmp_path, *args), key)


def test_a_missing_folder_or_a_file_is_named_as_such(tmp_path: Path, pair: tuple[Path, Path]) -> None:
    a, _ = pair
    line = assert_one_line_error(_compare(tmp_path, tmp_path / "nope", a), f"{tmp_path / 'nope'}: no such folder")
    assert "bench.timing" not in line  # not "run the timing pass": there is nothing to time
    (tmp_path / "file").write_text("x")
    assert_one_line_error(_compare(tmp_path, a, tmp_path / "file"), f"{tmp_path / 'file'}: not a folder")
    (tmp_path / "bare").mkdir()
    assert_one_line_error(_compare(tmp_path, a, tmp_path / "bare"), "no timing pass")


# ------------------------------------------------------------------ damaged files
def _damage(path: Path, how: str) -> None:
    if how == "random bytes":
        path.write_bytes(np.random.default_rng(0).integers(128, 256, 400, dtype=np.uint8).tobytes())
    elif how == "empty":
        path.write_text("")
    elif how == "header only":
        path.write_text(path.read_text().splitlines()[0] + "\n")
    elif how == "wrong columns":
        path.write_text("a,b\n1,2\n")
    elif how == "truncated":
        text = path.read_text()
        path.write_text(text[:len(text) - 12])  # the last row cut short
    else:
        raise AssertionError(how)


@pytest.mark.parametrize("how", ["random bytes", "empty", "header only", "wrong columns", "truncated"])
def test_a_damaged_claims_file_is_refused_naming_it(tmp_path: Path, pair: tuple[Path, Path], how: str) -> None:
    a, b = pair
    _damage(b / "report" / "claims.csv", how)
    assert_one_line_error(_compare(tmp_path, a, b), str(b / "report" / "claims.csv"))


def test_a_claim_with_an_unknown_verdict_is_refused(tmp_path: Path, pair: tuple[Path, Path]) -> None:
    a, b = pair
    file = b / "report" / "claims.csv"
    file.write_text(file.read_text().replace("supported", "maybe"))
    assert_one_line_error(_compare(tmp_path, a, b), str(file), "1 of 1 rows")


@pytest.mark.parametrize("how", ["random bytes", "empty", "header only", "wrong columns", "truncated"])
def test_a_damaged_timing_file_is_refused_naming_it(tmp_path: Path, pair: tuple[Path, Path], how: str) -> None:
    a, b = pair
    _damage(b / "timing" / "timing.csv", how)
    line = assert_one_line_error(_compare(tmp_path, a, b), str(b / "timing" / "timing.csv"))
    assert "no timing pass" not in line  # there is one: it is damaged


@pytest.mark.parametrize("column, value", [("time_per_step_s", "abc"), ("time_per_step_s", "-1"),
                                           ("round", "abc"), ("time_per_step_s", "")])
def test_an_unreadable_sample_refuses_the_pass(tmp_path: Path, pair: tuple[Path, Path], column: str,
                                               value: str) -> None:
    """One sample left out silently was enough to turn AGREE (test_the_pair_agrees) into DISAGREE: a
    timing pass never writes such a sample, so the file is damaged and compare refuses it."""
    a, b = pair
    file = b / "timing" / "timing.csv"
    df = pd.read_csv(file, dtype=str, keep_default_na=False)
    df.loc[3, column] = value
    df.to_csv(file, index=False)
    assert_one_line_error(_compare(tmp_path, a, b), str(file), "1 ")


@pytest.mark.parametrize("meta, words", [
    ({"drift": {"time": -5, "ratio": "abc"}}, "drift.time is -5"),
    ({"drift": {"time": 0.03, "ratio": "abc"}}, "drift.ratio is 'abc'"),
    ({"drift": "wide"}, "drift is 'wide'"),
    ({"contention_threshold": None}, "contention_threshold is None"),
    ("not json", "not a JSON object"),
])
def test_a_damaged_timing_json_is_refused(tmp_path: Path, pair: tuple[Path, Path], meta: object,
                                          words: str) -> None:
    a, b = pair
    file = b / "timing" / "timing.json"
    file.write_text(meta if isinstance(meta, str) else json.dumps(meta))
    assert_one_line_error(_compare(tmp_path, a, b), str(file), words)


def test_a_sound_timing_json_is_read(tmp_path: Path, pair: tuple[Path, Path]) -> None:
    a, b = pair
    (b / "timing" / "timing.json").write_text(json.dumps({"drift": {"time": 0.03, "ratio": 0.015},
                                                          "contention_threshold": 0.5}))
    proc = _compare(tmp_path, a, b)
    assert proc.returncode == 0 and "AGREE" in proc.stdout, proc.stdout + proc.stderr


# ------------------------------------------------------------------ nothing to compare
def test_a_pass_of_the_baseline_alone_has_nothing_to_compare(tmp_path: Path) -> None:
    only = _write(tmp_path / "only", seed=1, frameworks=("torch",))
    line = assert_one_line_error(_compare(tmp_path, only, only), str(only / "timing" / "timing.csv"),
                                 "timed only torch")
    assert "nothing to compare" in line


def test_b_without_a_framework_names_b(tmp_path: Path, pair: tuple[Path, Path]) -> None:
    a, b = pair
    file = b / "timing" / "timing.csv"
    df = pd.read_csv(file)
    df[df["framework"] == "torch"].to_csv(file, index=False)  # what a cut-short pass leaves
    assert_one_line_error(_compare(tmp_path, a, b), str(file), "timed only torch")


def test_a_baseline_not_timed_has_nothing_to_divide_by(tmp_path: Path, pair: tuple[Path, Path]) -> None:
    assert_one_line_error(_compare(tmp_path, *pair, "baseline=jax"), "no jax samples")
    assert_one_line_error(_compare(tmp_path, *pair, "baseline=numpy"), "baseline=numpy")


def test_no_ratio_in_both_folders_is_bad_input(tmp_path: Path) -> None:
    a = _write(tmp_path / "a", seed=1, methods=("adam",))
    b = _write(tmp_path / "b", seed=2, methods=("sgd",))
    assert_one_line_error(_compare(tmp_path, a, b), "no time ratio in both folders", str(a), str(b))


def test_what_only_one_folder_holds_is_named_on_stderr(tmp_path: Path) -> None:
    """A ratio or claim the other folder lacks is not compared, and a warning says how many and which."""
    a = _write(tmp_path / "a", seed=1, methods=("adam", "sgd"), verdicts=("supported", "inconclusive"))
    b = _write(tmp_path / "b", seed=2, methods=("adam",))
    proc = _compare(tmp_path, a, b)
    assert proc.returncode == 0 and "AGREE" in proc.stdout, proc.stdout + proc.stderr
    lines = proc.stderr.strip().splitlines()
    assert len(lines) == 2 and all(line.startswith("warning: 1 ") for line in lines), proc.stderr
    assert "sgd" in lines[0] and f"of {a} not timed in {b}" in lines[0]
    assert "claim 1" in lines[1] and f"of {a} not in {b}" in lines[1]


# ------------------------------------------------------------------ bench.tuning
def _tuning_run(results: Path, run_id: str, lr: float, val_acc: float) -> Path:
    """A finished tuning run of torch adam (a validation split), written without training."""
    base = {"run_id": run_id, "framework": "torch", "optimizer": "adam", "impl": "native", "mode": "eager",
            "lr": lr, "batch_size": 32, "seed": 0, "dataset": "mnist_embedded", "n_train": 256, "n_test": 128,
            "device": "cpu", "status": "completed", "model": "mlp", "precision": "fp32"}
    rows = [{**base, "epoch": e, "steps": 8 * e, "train_loss": 2.3 - e, "test_loss": 2.0, "test_acc": 0.1 + 0.2 * e,
             "val_acc": val_acc * e / 2, "epoch_time_s": 0.3 * e} for e in range(3)]
    folder = results / "runs" / run_id
    write_csv(folder / "metrics.csv", rows, METRIC_COLUMNS)
    write_json(folder / "run.json", {"run_id": run_id, "status": "completed", "dataset": "mnist_embedded"})
    return folder / "metrics.csv"


def _cell(file: Path, column: str, value: str) -> None:
    df = pd.read_csv(file, dtype=str, keep_default_na=False)
    df.loc[len(df) - 1, column] = value
    df.to_csv(file, index=False)


DAMAGES = {
    "a bad accuracy": lambda f: _cell(f, "test_acc", "abc"),
    "a bad lr": lambda f: _cell(f, "lr", "abc"),
    "a bad seed": lambda f: _cell(f, "seed", "x"),
    "a bad val_acc": lambda f: _cell(f, "val_acc", "abc"),
    "truncated": lambda f: f.write_text(f.read_text()[:-120]),
    "no test_acc": lambda f: pd.read_csv(f).drop(columns="test_acc").to_csv(f, index=False),
    "random bytes": lambda f: _damage(f, "random bytes"),
    "a bad run.json": lambda f: (f.parent / "run.json").write_text("{"),
}


@pytest.mark.parametrize("damage", sorted(DAMAGES))
def test_tuning_skips_a_damaged_run_with_one_warning(tmp_path: Path, damage: str) -> None:
    results = tmp_path / "results"
    _tuning_run(results, "good-1", lr=0.003, val_acc=0.8)
    _tuning_run(results, "good-2", lr=0.001, val_acc=0.7)
    bad = _tuning_run(results, "bad", lr=0.01, val_acc=0.9)  # would win, were it readable
    DAMAGES[damage](bad)
    proc = run_cli("lrs", str(results), "torch", "adam", module="bench.tuning", env=no_framework_env(tmp_path))
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.strip() == "0.003,0.001"
    lines = proc.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("warning: skipped ") and str(bad.parent) in lines[0], proc.stderr
    assert "Traceback" not in proc.stderr
    section = report_section(results)  # the report's section: the same run left out, and said so
    assert section is not None and list(section.table["best_lr"]) == [0.003]
    assert "1 damaged run(s) left out" in section.text and str(bad.parent) in section.text


@pytest.mark.parametrize("args", [["lrs", "results_dir=", "torch", "adam"], ["lrs", "", "torch", "adam"],
                                  ["lrs", "results_dir=null", "framework=torch", "optimizer=adam"]])
def test_tuning_refuses_an_empty_results_dir(tmp_path: Path, args: list[str]) -> None:
    (tmp_path / "results").mkdir()  # the default exists: an empty value must still not mean it
    proc = run_cli(*args, module="bench.tuning", env=no_framework_env(tmp_path), cwd=tmp_path)
    assert_one_line_error(proc, "results_dir=")


"""Reliability, through the real CLI: bad input is one line and exit 2, faults stay inside their run,
interruptions end every process and lose nothing, re-runs skip what is complete.

Runs are tiny (256 training images, one epoch, torch). Faults are injected with
``OPTBENCH_FAULT`` (see bench/run/child.py)."""
from __future__ import annotations

import csv
import gzip
import hashlib
import os
import re
import signal
from pathlib import Path

import numpy as np
import pytest
from conftest import HARNESS_FRAMEWORK, ROOT, SMALL, run_cli
from helpers import (
    assert_one_line_error,
    is_hanging,
    no_framework_env,
    processes_mentioning,
    run_dirs,
    run_info,
    run_of,
    start_bench,
    status_of,
    wait_for,
)

from bench import data as D
from bench.results import run_dir, write_csv
from bench.spec import run_id

FAST = [*SMALL, HARNESS_FRAMEWORK, "epochs=1", "optimizer=minibatch", "progress=none"]


# ------------------------------------------------------------------ helpers


def _fingerprint(run: Path) -> dict[str, tuple[str, int]]:
    return {p.name: (hashlib.sha256(p.read_bytes()).hexdigest(), p.stat().st_mtime_ns)
            for p in sorted(run.iterdir()) if p.is_file() and p.name != ".lock"}


# ------------------------------------------------------------------ bad input
@pytest.mark.parametrize("override, needles", [
    ("framework=mxnet", ["framework/mxnet", "jax, tensorflow, torch"]),
    ("optimizer=adamax", ["optimizer/adamax", "adam"]),
    ("data=cifar", ["data/cifar", "mnist_embedded"]),
    ("optimizer.lr=0", ["optimizer.lr must be a finite number > 0"]),
    ("optimizer.lr=-0.1", ["optimizer.lr must be a finite number > 0"]),
    ("optimizer.lr=nan", ["optimizer.lr must be a finite number > 0"]),
    ("optimizer.lr=inf", ["optimizer.lr must be a finite number > 0"]),
    ("batch_size=0", ["batch_size must be >= 1"]),
    ("epochs=0", ["epochs must be >= 1"]),
    ("seed=1.5", ["seed must be an integer"]),
    ("jobs=0", ["jobs must be >= 1"]),
    ("epoch=3", ["epoch"]),  # typo of an existing key
    ("+optimizer.betas=0.5", ["unknown key", "optimizer.betas"]),
    ("optimizer.lr=(", ["optimizer.lr=("]),
    ("--cfg=hydra --resolve", ["--cfg hydra --resolve", "use --cfg all --resolve"]),  # Hydra can't: it says why
    ("~optimizer", ["~optimizer: a run cannot do without its optimizer group"]),
    ("seeds=0", ["seeds=0: give how many seeds to run"]),
    ("hydra.searchpath=[file:///nonexistent/optbench]", ["hydra.searchpath: /nonexistent/optbench is not a folder"]),
    ("seeds=abc", ["seeds=abc: give how many seeds to run"]),
    ("-m batch_size=0,32", ["batch_size=0: batch_size must be >= 1"]),  # the sweep refused whole, none run
    ("-m jobs=abc", ["jobs must be an integer"]),
])
def test_bad_config_is_one_line_exit_2_and_writes_nothing(override: str, needles: list[str], results: Path,
                                                          tmp_path: Path) -> None:
    flags = [a for a in override.split() if a.startswith("-m")]  # Hydra takes -m before the overrides
    proc = run_cli(*flags, *FAST, f"results_dir={results}", *[a for a in override.split() if a not in flags],
                   env=no_framework_env(tmp_path), timeout=120)
    assert_one_line_error(proc, *needles)
    assert not results.exists()  # not even Hydra's own folder


@pytest.mark.parametrize("text", [None, "{"])
def test_the_child_given_a_missing_or_damaged_spec_says_so_in_one_line(text: str | None, tmp_path: Path) -> None:
    spec = tmp_path / "spec.json"
    if text is not None:
        spec.write_text(text)
    proc = run_cli(str(spec), module="bench.run.child", env=no_framework_env(tmp_path))
    assert_one_line_error(proc, "cannot read the run's spec", str(spec))


def test_cuda_without_gpu_says_what_was_found(results: Path, tmp_path: Path) -> None:
    env = {**no_framework_env(tmp_path), "CUDA_VISIBLE_DEVICES": ""}
    line = assert_one_line_error(run_cli(*FAST, f"results_dir={results}", "device=cuda", env=env),
                                  "device=cuda but no GPU is visible")
    assert "CUDA_VISIBLE_DEVICES=''" in line or "nvidia" in line
    assert run_dirs(results) == []


def test_batch_larger_than_training_set_is_found_in_the_child_before_any_framework(
        results: Path, tmp_path: Path) -> None:
    proc = run_cli(*FAST, f"results_dir={results}", "batch_size=257", env=no_framework_env(tmp_path))
    assert_one_line_error(proc, "batch_size=257 is larger than the training set (256 images)")
    assert not results.exists()  # the child's folder is removed, and the folders made for it: nothing ran


@pytest.mark.parametrize("name, text, needles", [
    ("broken", "name: broken\nlayers: [ {type: dense, units: 10\n", ["not valid YAML", "broken.yaml", "line 3"]),
    # the report groups runs by the model's name: a file calling itself lenet5 would merge into LeNet-5's rows
    ("mine", "name: lenet5\nlayers:\n  - {type: flatten}\n  - {type: dense, units: 10}\n",
     ["model=mine:", "calls its model 'lenet5'; write name: mine in it"]),
    ("huge", "name: huge\nlayers:\n  - {type: flatten}\n  - {type: dense, units: 100000000}\n"
             "  - {type: dense, units: 10}\n",
     ["model huge: its 79,500,000,010 parameters need at least", "more than this machine's"]),  # before training
], ids=["not-yaml", "name-not-file-name", "too-big-for-memory"])
def test_a_users_bad_model_file_is_one_line_and_writes_nothing(name: str, text: str, needles: list[str],
                                                              results: Path, tmp_path: Path) -> None:
    (tmp_path / "conf" / "model").mkdir(parents=True)
    (tmp_path / "conf" / "model" / f"{name}.yaml").write_text(text)
    proc = run_cli(*FAST, f"results_dir={results}", f"hydra.searchpath=[file://{tmp_path / 'conf'}]", f"model={name}",
                   env=no_framework_env(tmp_path), timeout=120)
    assert_one_line_error(proc, *needles)
    assert run_dirs(results) == []


def test_unwritable_results_dir(tmp_path: Path) -> None:
    blocker = tmp_path / "a_file"
    blocker.write_text("not a folder")
    proc = run_cli(*FAST, f"results_dir={blocker}/results", env=no_framework_env(tmp_path))
    assert_one_line_error(proc, str(blocker), "results_dir")
    assert blocker.read_text() == "not a folder"


# ------------------------------------------------------------------ bad data
def _fake(n_train: int = 40, n_test: int = 20) -> dict[str, np.ndarray]:
    rng = np.random.default_rng(0)
    return {"train_images": rng.integers(0, 256, (n_train, 28, 28), dtype=np.uint8),
            "train_labels": rng.integers(0, 10, n_train).astype(np.uint8),
            "test_images": rng.integers(0, 256, (n_test, 28, 28), dtype=np.uint8),
            "test_labels": rng.integers(0, 10, n_test).astype(np.uint8)}


def _write(root: Path, arrays: dict[str, np.ndarray]) -> None:
    root.mkdir(parents=True, exist_ok=True)
    for key, stem in D._PARTS.items():
        D.write_idx(root / f"{stem}.gz", arrays[key])


def _truncate(root: Path) -> None:
    path = root / "train-images-idx3-ubyte.gz"
    path.write_bytes(path.read_bytes()[:200])


def _wrong_magic(root: Path) -> None:
    path = root / "train-labels-idx1-ubyte.gz"
    raw = bytearray(gzip.decompress(path.read_bytes()))
    raw[:4] = (1234).to_bytes(4, "big")
    path.write_bytes(gzip.compress(bytes(raw)))


def _count_mismatch(root: Path) -> None:
    D.write_idx(root / "train-labels-idx1-ubyte.gz", _fake()["train_labels"][:-1])


def _wrong_size(root: Path) -> None:
    raw = (2051).to_bytes(4, "big") + b"".join(d.to_bytes(4, "big") for d in (40, 20, 20)) + bytes(40 * 400)
    (root / "train-images-idx3-ubyte.gz").write_bytes(gzip.compress(raw))


def _npz_missing_keys(root: Path) -> None:
    for p in root.iterdir():
        p.unlink()
    np.savez(root / "mnist.npz", x_train=_fake()["train_images"])


def _npz_pickled(root: Path) -> None:
    for p in root.iterdir():
        p.unlink()
    a = _fake()
    objects = np.empty(2, dtype=object)
    objects[:] = [{"evil": 1}, None]
    np.savez(root / "mnist.npz", x_train=objects, y_train=a["train_labels"], x_test=a["test_images"],
             y_test=a["test_labels"])


@pytest.mark.parametrize("damage, needles", [
    (lambda root: [p.unlink() for p in root.iterdir()],
     ["train-images-idx3-ubyte.gz", "To get them", "data.root", "data.download=true"]),
    (_truncate, ["train-images-idx3-ubyte.gz", "corrupt or truncated"]),
    (_wrong_magic, ["wrong IDX magic 1234"]),
    (_count_mismatch, ["40 images but 39 labels"]),
    (_wrong_size, ["20x20, expected 28x28"]),
    (_npz_missing_keys, ["mnist.npz", "missing keys"]),
    (_npz_pickled, ["mnist.npz", "refused"]),
], ids=["missing", "truncated-gz", "magic", "count", "size", "npz-keys", "npz-pickle"])
def test_bad_data_is_one_line_exit_2(damage, needles: list[str], results: Path, tmp_path: Path) -> None:
    root = tmp_path / "mnist"
    _write(root, _fake())
    damage(root)
    proc = run_cli("data=mnist", f"data.root={root}", "data.download=false", "data.fallback=null", "epochs=1",
                   f"results_dir={results}", env=no_framework_env(tmp_path))
    assert_one_line_error(proc, *needles)
    assert not results.exists()  # bad data writes nothing, not even an empty runs/


def test_md5_mismatch_on_download_deletes_the_file(http_server, results: Path, tmp_path: Path) -> None:
    srv, url = http_server
    _write(srv, _fake())  # valid IDX files, but not the real MNIST ones: every MD5 differs
    dest = tmp_path / "download"
    proc = run_cli("data=mnist", f"data.root={dest}", "data.fallback=null", f"data.mirrors=[{url}]", "epochs=1",
                   f"results_dir={results}", env=no_framework_env(tmp_path))
    assert_one_line_error(proc, "MD5", "discarded")
    assert list(dest.iterdir()) == []
    assert run_dirs(results) == []


def test_downloads_refuse_plain_http(results: Path, tmp_path: Path) -> None:
    dest = tmp_path / "download"
    proc = run_cli("data=mnist", f"data.root={dest}", "data.fallback=null", "data.mirrors=[http://example.com/]",
                   "epochs=1", f"results_dir={results}", env=no_framework_env(tmp_path))
    assert_one_line_error(proc, "http://example.com/", "HTTPS")
    assert not dest.exists() or list(dest.iterdir()) == []


# ------------------------------------------------------------------ faults during a sweep
@pytest.mark.slow
def test_divergence_is_a_result_and_the_sweep_goes_on(results: Path) -> None:
    proc = run_cli("-m", *SMALL, "data.limit_train=64", "epochs=2", "optimizer=sgd", "optimizer.lr=0.01,1e20",
                   f"results_dir={results}", "progress=none")
    assert proc.returncode == 0, proc.stderr[-3000:]
    status = {run_info(r)["config"]["optimizer"]["lr"]: run_info(r)["status"] for r in run_dirs(results)}
    assert status == {0.01: "completed", 1e20: "diverged"}
    diverged = next(r for r in run_dirs(results) if run_info(r)["status"] == "diverged")
    rows = list(csv.DictReader(open(diverged / "metrics.csv")))
    assert {r["status"] for r in rows} == {"diverged"} and rows[-1]["train_loss"] == "nan"
    assert "diverged" in proc.stderr


@pytest.mark.slow
def test_crashed_child_is_failed_with_signal_and_stderr_tail_and_the_sweep_goes_on(results: Path) -> None:
    proc = run_cli("-m", *FAST, "seed=0,1", f"results_dir={results}", env={"OPTBENCH_FAULT": "segv@1@-s1-"})
    assert proc.returncode == 1
    assert "1 run(s) failed" in proc.stderr and "killed by SIGSEGV" in proc.stderr
    crashed = run_info(run_of(results, 1))
    assert crashed["status"] == "failed" and crashed["exit_signal"] == "SIGSEGV"
    assert any("injecting segv" in line for line in crashed["stderr_tail"])
    assert run_info(run_of(results, 0))["status"] == "completed"


@pytest.mark.slow
def test_killed_child_like_out_of_memory(results: Path) -> None:
    proc = run_cli(*FAST, f"results_dir={results}", env={"OPTBENCH_FAULT": "kill@1"})
    assert proc.returncode == 1 and "killed by SIGKILL" in proc.stderr
    info = run_info(run_of(results, 0))
    assert info["status"] == "failed" and info["exit_signal"] == "SIGKILL" and info["stderr_tail"]


@pytest.mark.slow
def test_sigterm_mid_sweep_then_rerun_redoes_only_the_unfinished(results: Path, tmp_path: Path) -> None:
    args = ["-m", *FAST, "seed=0,1,2", f"results_dir={results}", "jobs=2"]
    proc, log = start_bench(args, tmp_path, "first", fault="hang@1@-s1-")
    wait_for(lambda: status_of(results, 0) == "completed" and is_hanging(results, 1))
    proc.send_signal(signal.SIGTERM)
    assert proc.wait(timeout=60) == 130, log.read_text()[-3000:]
    assert "interrupted" in log.read_text()
    wait_for(lambda: not processes_mentioning(str(results)), timeout=30)  # workers and children ended
    assert status_of(results, 1) == "interrupted"
    done = {p.name: _fingerprint(p) for p in run_dirs(results) if run_info(p)["status"] == "completed"}
    assert done

    again = run_cli(*args)
    assert again.returncode == 0, again.stderr[-3000:]
    assert {run_info(p)["status"] for p in run_dirs(results)} == {"completed"} and len(run_dirs(results)) == 3
    for name, fingerprint in done.items():
        assert _fingerprint(results / "runs" / name) == fingerprint  # not re-run: files untouched
    assert again.stdout.count("[skip]") == len(done)
    assert f"{len(done)} skipped" in again.stdout


@pytest.mark.slow
def test_kill_9_of_the_parent_leaves_finished_runs_intact(results: Path, tmp_path: Path) -> None:
    proc, log = start_bench(["-m", *FAST, "seed=0,1", f"results_dir={results}", "jobs=2"], tmp_path, "k9",
                       fault="hang@1@-s1-")
    wait_for(lambda: status_of(results, 0) == "completed" and is_hanging(results, 1))
    before = _fingerprint(run_of(results, 0))
    proc.kill()
    proc.wait(timeout=30)
    wait_for(lambda: not processes_mentioning(str(results)), timeout=60)  # no orphan trains on
    assert _fingerprint(run_of(results, 0)) == before
    rows = list(csv.DictReader(open(run_of(results, 0) / "metrics.csv")))
    assert [r["epoch"] for r in rows] == ["0", "1"] and rows[-1]["status"] == "completed"
    # The child gets SIGTERM when its worker dies and records itself interrupted, unless the
    # worker's pool SIGKILLs it first: then it stays `running` until the next sweep starts.
    assert status_of(results, 1) in ("interrupted", "running")
    assert not list(results.rglob("*.tmp"))
    again = run_cli("-m", *FAST, "seed=0,1", f"results_dir={results}", "jobs=2", timeout=400)
    assert again.returncode == 0 and "1 ran, 1 skipped" in again.stdout, again.stdout[-3000:]
    assert _fingerprint(run_of(results, 0)) == before and status_of(results, 1) == "completed"


@pytest.mark.slow
def test_ctrl_c_ends_a_single_run_cleanly(results: Path, tmp_path: Path) -> None:
    proc, log = start_bench([*FAST, f"results_dir={results}"], tmp_path, "ctrlc", fault="hang@1", new_session=True)
    wait_for(lambda: is_hanging(results, 0))
    os.killpg(proc.pid, signal.SIGINT)  # what a terminal does: the whole foreground group
    assert proc.wait(timeout=60) == 130, log.read_text()[-3000:]
    assert "Traceback" not in log.read_text()
    assert status_of(results, 0) == "interrupted"
    wait_for(lambda: not processes_mentioning(str(results)), timeout=30)


@pytest.mark.slow
def test_two_sweeps_into_one_results_dir_do_not_collide(results: Path, tmp_path: Path) -> None:
    args = ["-m", *FAST, "seed=0,1", f"results_dir={results}", "jobs=1"]
    (a, log_a), (b, log_b) = start_bench(args, tmp_path, "a"), start_bench(args, tmp_path, "b")
    assert a.wait(timeout=400) == 0 and b.wait(timeout=400) == 0, log_a.read_text() + log_b.read_text()
    out = log_a.read_text() + log_b.read_text()
    assert out.count("[skip]") == 2  # each run trained by exactly one of the two sweeps
    for run in run_dirs(results):
        assert run_info(run)["status"] == "completed"
        rows = list(csv.DictReader(open(run / "metrics.csv")))
        assert [r["epoch"] for r in rows] == ["0", "1"]
    assert len(run_dirs(results)) == 2 and not list(results.rglob("*.tmp"))


def test_a_failed_write_leaves_the_previous_file_and_no_temp(tmp_path: Path, monkeypatch) -> None:
    target = tmp_path / "metrics.csv"
    write_csv(target, [{"epoch": 0}], ("epoch",))
    before = target.read_text()

    def crash(*args: object) -> None:
        raise OSError("disk full")

    monkeypatch.setattr(os, "replace", crash)
    with pytest.raises(OSError):
        write_csv(target, [{"epoch": 0}, {"epoch": 1}], ("epoch",))
    assert target.read_text() == before and [p.name for p in tmp_path.iterdir()] == ["metrics.csv"]


def test_bad_key_in_a_sweep_stops_it_before_any_run(results: Path) -> None:
    proc = run_cli("-m", *FAST, "seed=0,1", "+optimizer.betas=0.5", f"results_dir={results}")
    assert_one_line_error(proc, "unknown key", "optimizer.betas")
    assert run_dirs(results) == []


# ------------------------------------------------------------------ security
def test_run_ids_cannot_leave_results_dir(tmp_path: Path) -> None:
    for bad in ("..", ".", "", "../x", "a/b", "a\\b", "/etc", "x\0y"):
        with pytest.raises(ValueError):
            run_dir(tmp_path, bad)
    hostile = {"framework": {"name": "../../torch"}, "optimizer": {"name": "../adam", "impl": "/etc",
               "lr": 0.1}, "batch_size": "../32", "seed": 0, "data": {"name": "../../../etc"}, "device": "cpu/.."}
    rid = run_id(hostile)
    assert re.fullmatch(r"[A-Za-z0-9._-]+", rid) and ".." not in rid.split("-")
    assert run_dir(tmp_path, rid).parent == (tmp_path / "runs").resolve()


def test_no_pickle_anywhere_in_the_source() -> None:
    pattern = re.compile(r"allow_pickle\s*=\s*True|^\s*(import|from)\s+(c?pickle|dill|shelve|marshal)\b"
                         r"|pickle\.loads?\(|torch\.load\(", re.M)
    offenders = [f"{p.relative_to(ROOT)}: {m.group(0).strip()}"
                 for folder in ("bench", "models")
                 for p in sorted((ROOT / folder).rglob("*.py"))
                 for m in pattern.finditer(p.read_text())]
    assert offenders == []

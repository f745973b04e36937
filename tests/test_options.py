"""One way to pass options: ``bench.options`` (key=value over a table, --help, positional
arguments), every command's real ``--help`` and its refusal of an unknown key, the Hydra apps'
help generated from their conf comments, and the one list of bookkeeping keys."""
from __future__ import annotations

import importlib
import re

import pytest
from conftest import ROOT, run_cli
from helpers import assert_one_line_error, no_framework_env

from bench import spec as spec_mod
from bench.exits import BadInput
from bench.options import (
    Option,
    Options,
    boolean,
    choice,
    conf_help,
    integer,
    names,
    nullable,
    number,
    text,
)

TABLE = Options(
    "python -m demo",
    """A demo command: it does nothing, in one paragraph.""",
    {
        "results_dir": Option("results", "the folder"),
        "rounds": Option(7, "how many", integer(5)),
        "budget_s": Option(120.0, "seconds", number()),
        "fast": Option(False, "go fast", boolean),
        "modes": Option(["eager"], "modes", names(("eager", "compiled"))),
        "device": Option("cpu", "where", choice("cpu", "cuda")),
        "limit": Option(None, "at most", nullable(integer(1))),
        "out": Option(None, "where to write"),
    },
    positional=("results_dir",),
)


# ------------------------------------------------------------------ the parser
def test_defaults_and_types() -> None:
    assert TABLE.parse([]) == TABLE.defaults()
    got = TABLE.parse(["rounds=9", "budget_s=1e2", "fast=true", "modes=eager,compiled", "device=cuda",
                       "limit=3", "out=1e3"])
    assert got["rounds"] == 9 and got["budget_s"] == 100.0 and got["fast"] is True
    assert got["modes"] == ["eager", "compiled"] and got["device"] == "cuda" and got["limit"] == 3
    assert got["out"] == "1e3"  # text stays as written, never a number
    assert TABLE.parse(["limit=null", "out="])["limit"] is None
    assert TABLE.given(["rounds=9"]) == {"rounds": 9}


@pytest.mark.parametrize("argv, words", [
    (["nosuchkey=1"], "unknown key 'nosuchkey'; keys: results_dir, rounds"),
    (["rounds=3"], "rounds must be >= 5"),
    (["rounds=two"], "rounds must be an integer"),
    (["rounds=true"], "rounds must be an integer"),
    (["budget_s=-1"], "budget_s must be in (0"),
    (["budget_s=nan"], "budget_s must be a finite number"),
    (["fast=maybe"], "fast must be true or false"),
    (["modes=jit"], "modes=jit"),
    (["device=tpu"], "choose one of cpu, cuda"),
    (["a", "b"], "unexpected argument 'b'"),
    (["a", "results_dir=b"], "results_dir given twice"),
    (["--rounds", "9"], "write rounds=..."),
    (["--no-fast"], "write fast=false"),
    (["--bogus"], "unknown option '--bogus'"),
])
def test_bad_input_is_one_line(argv: list[str], words: str) -> None:
    with pytest.raises(BadInput) as info:
        TABLE.parse(argv)
    assert words in str(info.value) and "\n" not in str(info.value)


def test_positional_and_key_give_the_same() -> None:
    assert TABLE.parse(["somewhere", "rounds=5"]) == TABLE.parse(["results_dir=somewhere", "rounds=5"])
    assert TABLE.parse(["rounds=5", "somewhere"])["results_dir"] == "somewhere"


def test_required_keys_are_asked_for() -> None:
    table = Options("python -m demo", "demo", {"a": Option(None, "a", required=True), "b": Option(1, "b", integer())},
                    positional=("a", "b"))
    with pytest.raises(BadInput, match="give a="):
        table.parse(["b=2"])
    assert table.parse(["x", "3"]) == {"a": "x", "b": 3}


@pytest.mark.parametrize("flag", ["--help", "-h"])
def test_help_prints_paragraph_keys_and_defaults(flag: str, capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as info:
        TABLE.parse(["rounds=1", flag])  # --help wins over bad input
    assert info.value.code == 0
    out = capsys.readouterr().out
    assert out.startswith("usage: python -m demo [results_dir] [key=value ...]")
    assert "A demo command: it does nothing, in one paragraph." in out
    for line in ("rounds=7", "budget_s=120", "fast=false", "modes=eager", "limit=null", "results_dir=results"):
        assert re.search(rf"^  {re.escape(line)}\s+\S", out, re.M), line
    assert "results_dir may also be given first" in out


# ------------------------------------------------------------------ the real commands
# Each command's keys, from its own table where it has one at module level.
COMMANDS = {
    "bench.timing": ("bench.timing.core", ()),
    "bench.perf": ("bench.perf.cases", ()),
    "bench.perf.gpu_check": ("bench.perf.gpu_check", ()),
    "bench.report": ("bench.report.__main__", ()),
    "bench.tuning": ("bench.tuning", ()),
    "bench.toy": (None, ("out", "frameworks")),
}


def _conf_keys(name: str) -> list[str]:
    """The top-level keys of conf/<name>.yaml (not the defaults list, not the hydra block)."""
    text_ = (ROOT / "conf" / f"{name}.yaml").read_text(encoding="utf-8")
    return [m.group(1) for m in re.finditer(r"^([a-z_]+):[ \t]*[^\s#]", text_, re.M)]


def _keys_of(module: str) -> list[str]:
    table, keys = COMMANDS.get(module, (None, ()))
    if table:
        return list(importlib.import_module(table).OPTIONS.keys)
    if keys:
        return list(keys)
    return _conf_keys("config" if module == "bench" else "parity")


ALL = [*COMMANDS, "bench.parity", "bench"]


@pytest.mark.parametrize("module", ALL)
def test_cli_help_lists_every_key_with_its_default(module: str, tmp_path) -> None:
    proc = run_cli("--help", module=module, env=no_framework_env(tmp_path), timeout=120)
    assert proc.returncode == 0, proc.stderr[-2000:]
    assert "powered by Hydra" not in proc.stdout and proc.stdout.startswith("usage: python -m " + module)
    for key in _keys_of(module):
        assert re.search(rf"^  {key}=\S*", proc.stdout, re.M), (key, proc.stdout)


@pytest.mark.parametrize("module", ALL)
def test_cli_refuses_an_unknown_key_in_one_line(module: str, tmp_path) -> None:
    proc = run_cli("nosuchkey=1", module=module, env=no_framework_env(tmp_path), timeout=120)
    line = assert_one_line_error(proc, "nosuchkey")
    assert "--help" in line


# Each command's folder keys: an empty value would mean the current folder (and, for the Hydra apps,
# Hydra's own folders at the filesystem's root), so it is refused, never read as the default.
FOLDER_KEYS = [("bench", "results_dir"), ("bench.parity", "results_dir"), ("bench.timing", "results_dir"),
               ("bench.scaling", "results_dir"), ("bench.perf", "results_dir"), ("bench.report", "results_dir"),
               ("bench.report", "out"), ("bench.toy", "out"), ("bench.perf.gpu_check", "out"),
               ("bench.tuning", "results_dir"), ("bench.report.compare", "a")]


@pytest.mark.parametrize("module, key", FOLDER_KEYS)
def test_cli_refuses_an_empty_folder_in_one_line(module: str, key: str, tmp_path) -> None:
    here = tmp_path / "here"
    here.mkdir()
    proc = run_cli(f"{key}=", module=module, env=no_framework_env(tmp_path), timeout=120, cwd=here)
    assert_one_line_error(proc, f"{key}=")
    assert list(here.iterdir()) == []  # nothing written where it was run


@pytest.mark.parametrize("module, args, needle", [
    ("bench.timing", ["contention_threshold=2"], "contention_threshold must be in (0, 1]"),
    ("bench.scaling", ["contention_threshold=1.5"], "contention_threshold must be in (0, 1]"),
    ("bench.report", ["baseline=nope"], "baseline=nope: choose one of torch"),
    ("bench.perf.gpu_check", ["device=cpu", "perf_args=bogus=1"], "perf_args: unknown key 'bogus'"),
    ("bench.perf.gpu_check", ["device=cpu", "perf_args=model=lenet5"], "perf_args: model is set by gpu-check"),
    ("bench.scaling", ["models=mlp,,lenet5"], "an empty name between commas"),
    ("bench.perf.gpu_check", ["device=cpu", "model=lenet6"], "model='lenet6': no conf/model/lenet6.yaml"),
    ("bench.perf", ["model=/nonexistent/model/mine.yaml"], "model=/nonexistent/model/mine.yaml: cannot read it"),
    ("bench.scaling", ["models=mlp,/nonexistent/mine.yaml"], "model=/nonexistent/mine.yaml: cannot read it"),
])
def test_cli_refuses_a_bad_value_before_any_work(module: str, args: list[str], needle: str, tmp_path) -> None:
    proc = run_cli(*args, module=module, env=no_framework_env(tmp_path), timeout=120)
    assert_one_line_error(proc, needle)


def test_a_drift_allowance_of_0_is_accepted_as_documented(tmp_path) -> None:
    """0 means 'the pass's own spread only' (--help says so): refused before, accepted now. A bad key
    given last stops each command before any work, after the drift keys were read."""
    env = no_framework_env(tmp_path)
    for module in ("bench.timing", "bench.scaling"):
        proc = run_cli("drift_time=0", "drift_ratio=0", "nosuchkey=1", module=module, env=env, timeout=120)
        assert_one_line_error(proc, "unknown key 'nosuchkey'")


def test_old_flags_are_refused_with_the_key_to_write_instead(tmp_path) -> None:
    proc = run_cli("--out", str(tmp_path), module="bench.toy", env=no_framework_env(tmp_path))
    assert_one_line_error(proc, "write out=")


# ------------------------------------------------------------------ the Hydra apps' help
def test_conf_help_lists_every_group_and_key_with_its_comment() -> None:
    shown = conf_help("config", spec_mod.BOOKKEEPING, "[bookkeeping]")
    for group in ("framework", "optimizer", "data", "model", "profile"):
        assert re.search(rf"^  {group}=\S+ ", shown, re.M), group
    assert "lenet5, mlp, mlp_deep" in shown
    for key in _conf_keys("config"):
        assert re.search(rf"^  {key}=", shown, re.M), key
    assert re.search(r"^  seed=0\s+draws the shared initial weights", shown, re.M)
    marked = set(re.findall(r"^  ([a-z_]+)=.*(?:\n {4,}.*)*\[bookkeeping\]", shown, re.M))
    assert marked == set(spec_mod.BOOKKEEPING) & set(_conf_keys("config"))
    assert "hydra" not in re.findall(r"^  ([a-z_/]+)=", shown, re.M)


def test_conf_help_lists_each_default_choice_s_own_keys_and_what_other_choices_add() -> None:
    shown = conf_help("config", spec_mod.BOOKKEEPING, "[bookkeeping]")
    own = shown.split("as the default choice sets them ==")[1]
    for group, default in (("optimizer", "adam"), ("data", "mnist"), ("framework", "torch")):
        for key in spec_mod.conf_group(group, default):
            if key != "name":
                assert re.search(rf"^  {group}\.{key}=", own, re.M), (group, key)
    assert re.search(r"^  optimizer\.lr=0\.001\s+η, the learning rate", own, re.M)
    added = " ".join(own.split("Other choices add:")[1].split())
    assert "optimizer.weight_decay (optimizer=adamw)" in added
    assert "optimizer.beta (optimizer=momentum|nesterov|rmsprop)" in added
    assert "framework.jit_compile (framework=tensorflow)" in added
    # mnist_embedded's keys that say "unused" stay out of parity's help, and mnist's are named
    parity = conf_help("parity").split("as the default choice sets them ==")[1]
    assert not re.search(r"^  data\.root=", parity, re.M) and "data.root" in parity.split("Other choices add:")[1]


# ------------------------------------------------------------------ bookkeeping: one list
def test_the_docs_bookkeeping_keys_are_spec_bookkeeping() -> None:
    doc = (ROOT / "docs" / "ARCHITECTURE.md").read_text(encoding="utf-8")
    sentence = re.search(r"bookkeeping keys, which change nothing.*?`run_id`:(.*?)\.\s", doc, re.S)
    assert sentence, "docs/ARCHITECTURE.md no longer names the bookkeeping keys"
    named = {k.removeprefix("framework.") for k in re.findall(r"`([a-z_.]+)`", sentence.group(1))}
    assert named == set(spec_mod.BOOKKEEPING)


def test_config_header_points_to_the_one_list_instead_of_repeating_it() -> None:
    header = (ROOT / "conf" / "config.yaml").read_text(encoding="utf-8").split("\ndefaults:")[0]
    assert "bench.spec.BOOKKEEPING" in header
    assert not [k for k in spec_mod.BOOKKEEPING if k != "python" and re.search(rf"\b{k}\b", header)]


def test_every_bookkeeping_key_is_declared() -> None:
    declared = set(_conf_keys("config")) | set(_conf_keys("framework/torch"))
    assert set(spec_mod.BOOKKEEPING) <= declared


def test_the_one_list_changes_no_run_id(monkeypatch: pytest.MonkeyPatch) -> None:
    """runs_per_gpu and objective became bookkeeping by name; no spec carries them, so no id moves."""
    spec = spec_mod.build_spec(spec_mod.compose("torch", "adam", "mnist_embedded", runs_per_gpu=4, objective="val_acc"))
    now = spec_mod.run_id(spec)
    monkeypatch.setattr(spec_mod, "BOOKKEEPING", ("results_dir", "jobs", "force", "progress", "python"))
    assert spec_mod.run_id(spec) == now
    assert spec_mod.run_id(spec_mod.build_spec(spec_mod.compose("torch", "adam", "mnist_embedded"))) == now


# ------------------------------------------------------------------ Hydra's errors, told by module
def _value_error_from(module_name: str, filename: str) -> ValueError:
    code = compile("def fail():\n    raise ValueError('boom')\n", filename, "exec")
    namespace: dict = {"__name__": module_name}
    exec(code, namespace)  # a function whose frame claims this module and file
    try:
        namespace["fail"]()
    except ValueError as exc:
        return exc
    raise AssertionError("did not raise")


def test_raised_by_hydra_is_told_by_module_not_by_path(tmp_path) -> None:
    main = importlib.import_module("bench.__main__")
    # A checkout inside a folder named hydra: our own ValueError stays ours (a bug, with its traceback).
    ours = _value_error_from("bench.spec", str(tmp_path / "hydra" / "bench" / "spec.py"))
    assert not main._raised_by_hydra(ours)
    assert main._raised_by_hydra(_value_error_from("hydra._internal.config_loader_impl", "/elsewhere/x.py"))
    assert not main._raised_by_hydra(_value_error_from("hydra_plugins.x", "/site/hydra/x.py"))


def test_text_kind_keeps_words_and_drops_null() -> None:
    assert text("k", "data/x") == "data/x" and text("k", "null") is None and text("k", "") is None


def test_the_timing_pass_names_a_run_json_it_cannot_read(tmp_path) -> None:
    (tmp_path / "runs" / "abc").mkdir(parents=True)
    (tmp_path / "runs" / "abc" / "run.json").write_text("{")
    proc = run_cli(str(tmp_path), module="bench.timing", env=no_framework_env(tmp_path), timeout=120)
    assert_one_line_error(proc, "1 run.json unreadable", str(tmp_path / "runs" / "abc" / "run.json"))

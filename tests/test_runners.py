"""The runner contract, checked the same way against every registered framework × model × method.

Each framework runs in a process of its own (frameworks never enter the pytest process) that
builds, for every model in conf/model/ and every method in bench.optimizers (native and reference),
the runner exactly as a run's child does. ``warm_up`` compiles or traces every step shape;
afterwards the weights AND the optimizer state must be exactly as before, or the first epoch of
every run would start from a different point than its twin without warm-up. ``train_epoch`` gives
one finite float64 loss per step, ``evaluate`` a finite loss and an accuracy in [0, 1], and
``weights`` the model's parameters in the canonical layout. A framework, model or method added to
the registries is checked here the day it is added.
"""
from __future__ import annotations

import json

import pytest
from conftest import ROOT, SMALL, compose_config, run_python

from bench import frameworks
from bench.optimizers import METHODS
from bench.spec import build_spec, compose
from models.layers import parse_model

MODELS = sorted(p.stem for p in (ROOT / "conf" / "model").glob("*.yaml"))

CHILD = r"""
import json, sys
import numpy as np
from bench.data import epoch_order, load_dataset
from bench.loop import steps_per_epoch
from bench.run.child import make_runner, resolve_batch_size

out = []
for spec in json.loads(SPECS):
    data = load_dataset(spec["data"], log=lambda *a: None)
    bs = resolve_batch_size(spec, data.n_train)
    warmed, cold = make_runner(spec, data), make_runner(spec, data)
    before = warmed.weights()
    seconds = warmed.warm_up(epoch_order(spec["seed"], 1, data.n_train), bs)
    after = warmed.weights()
    losses = [r.train_epoch(epoch_order(spec["seed"], e, data.n_train), bs) for e in (1, 2) for r in (warmed, cold)]
    w_warm, w_cold = warmed.weights(), cold.weights()
    loss, acc = warmed.evaluate("test")
    out.append({
        "case": spec["run_id"],
        "seconds": seconds,
        "restored": sorted(k for k in before if np.array_equal(before[k], after[k])),
        "shapes": {k: list(v.shape) for k, v in before.items()},
        "same_losses": bool(np.array_equal(losses[0], losses[1]) and np.array_equal(losses[2], losses[3])),
        "losses_ok": bool(all(l.dtype == np.float64 and len(l) == steps_per_epoch(data.n_train, bs)
                              and np.all(np.isfinite(l)) for l in losses)),
        "same_weights": sorted(k for k in w_warm if np.array_equal(w_warm[k], w_cold[k])),
        "moved": sorted(k for k in w_warm if not np.array_equal(w_warm[k], before[k])),
        "evaluate": [loss, acc],
        "describe": sorted(warmed.describe()),
        "step_time_s": getattr(warmed, "step_time_s", None),
    })
print(json.dumps(out))
"""

def _run(specs: list[dict]) -> list[dict]:
    proc = run_python(CHILD.replace("SPECS", repr(json.dumps(specs))), timeout=1200)
    assert proc.returncode == 0, proc.stderr[-3000:]
    return json.loads(proc.stdout.strip().splitlines()[-1])


def _check(spec: dict, out: dict) -> None:
    model = parse_model(spec["model"])
    names = sorted(model.param_names)
    assert out["seconds"] >= 0, out["case"]
    assert out["restored"] == names, out["case"]
    assert out["shapes"] == {p.name: list(p.shape) for p in model.params}, out["case"]
    # Adam's moments and step count, momentum's velocity: any state left behind by the
    # warm-up would make these two runs part ways at their first step.
    assert out["same_losses"] and out["losses_ok"], out["case"]
    assert out["same_weights"] == names, out["case"]
    assert out["moved"], out["case"]  # training changed something
    loss, acc = out["evaluate"]
    assert loss > 0 and 0.0 <= acc <= 1.0, out["case"]
    assert out["step_time_s"] is None or out["step_time_s"] > 0, out["case"]
    assert {"framework_version", "device_name"} <= set(out["describe"]), out["case"]


@pytest.mark.slow
@pytest.mark.parametrize("framework", frameworks.NAMES)
def test_every_model_and_method_keeps_the_runner_contract(framework: str) -> None:
    # Small enough that one process builds every case in a minute or two: 64 images, two steps an
    # epoch (batch GD one, SGD 64).
    specs = [build_spec(compose(framework, method, "mnist_embedded", model, optimizer={"impl": impl},
                                data={"limit_train": 64, "limit_test": 32}, epochs=2, progress="none"))
             for model in MODELS for method in METHODS for impl in ("native", "reference")]
    for spec, out in zip(specs, _run(specs)):
        _check(spec, out)


@pytest.mark.slow
@pytest.mark.parametrize("framework", frameworks.NAMES)
@pytest.mark.parametrize("optimizer,extra", [
    ("adam", ()),
    # a partial last batch is one more step shape to compile; the reference rule its own state
    ("rmsprop", ("optimizer.impl=reference", "data.limit_train=250")),
])
def test_compiled_warm_up_restores_weights_and_optimizer_state_exactly(framework: str, optimizer: str,
                                                                       extra: tuple[str, ...]) -> None:
    spec = build_spec(compose_config(f"framework={framework}", f"optimizer={optimizer}", "mode=compiled",
                                     "epochs=2", *SMALL, *extra))
    (out,) = _run([spec])
    _check(spec, out)

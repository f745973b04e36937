"""The runner contract, checked the same way against every framework's runner.

Each case builds the runner directly, as a run's child does, in a process of its own
(frameworks never enter the pytest process). ``warm_up`` compiles or traces every step
shape; afterwards the weights AND the optimizer state must be exactly as before, or the
first epoch of every run would start from a different point than its twin without warm-up.
"""
from __future__ import annotations

import json

import pytest
from conftest import SMALL, compose_config, run_python

from bench.spec import FRAMEWORKS, build_spec

CHILD = r"""
import json, sys
import numpy as np
from bench.data import epoch_order, load_dataset
from bench.run.child import make_runner, resolve_batch_size
from models.init import initial_weights

spec = json.loads(sys.argv[1])
data = load_dataset(spec["data"], log=lambda *a: None)
bs = resolve_batch_size(spec, data.n_train)
fresh = lambda: make_runner(spec, data, initial_weights(spec["seed"]))
warmed = fresh()
before = warmed.weights()
seconds = warmed.warm_up(epoch_order(spec["seed"], 1, data.n_train), bs)
after = warmed.weights()
cold = fresh()
losses = [r.train_epoch(epoch_order(spec["seed"], e, data.n_train), bs) for e in (1, 2) for r in (warmed, cold)]
w_warm, w_cold = warmed.weights(), cold.weights()
print(json.dumps({
    "seconds": seconds,
    "restored": sorted(k for k in before if np.array_equal(before[k], after[k])),
    "keys": sorted(before),
    "same_losses": bool(np.array_equal(losses[0], losses[1]) and np.array_equal(losses[2], losses[3])),
    "same_weights": sorted(k for k in w_warm if np.array_equal(w_warm[k], w_cold[k])),
    "describe": sorted(warmed.describe()),
    "step_time_s": getattr(warmed, "step_time_s", None),
}))
"""


@pytest.mark.slow
@pytest.mark.parametrize("framework", FRAMEWORKS)
@pytest.mark.parametrize("optimizer,mode,extra", [
    ("adam", "eager", ()),
    # a partial last batch is one more step shape to compile; the reference rule its own state
    ("rmsprop", "compiled", ("optimizer.impl=reference", "data.limit_train=250")),
])
def test_warm_up_restores_weights_and_optimizer_state_exactly(framework: str, optimizer: str, mode: str,
                                                              extra: tuple[str, ...]) -> None:
    spec = build_spec(compose_config(f"framework={framework}", f"optimizer={optimizer}", f"mode={mode}",
                                     "epochs=2", *SMALL, *extra))
    proc = run_python(CHILD.replace("sys.argv[1]", repr(json.dumps(spec))), timeout=600)
    assert proc.returncode == 0, proc.stderr[-2000:]
    out = json.loads(proc.stdout.strip().splitlines()[-1])
    assert out["seconds"] >= 0
    assert out["restored"] == out["keys"] == ["b1", "b2", "w1", "w2"]
    # Adam's moments and step count, momentum's velocity: any state left behind by the
    # warm-up would make these two runs part ways at their first step.
    assert out["same_losses"]
    assert out["same_weights"] == out["keys"]
    assert out["step_time_s"] is None or out["step_time_s"] > 0
    assert {"framework_version", "device_name"} <= set(out["describe"])

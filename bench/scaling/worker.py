"""Child side of the scaling pass: one framework, model and mode, built once, timed at any batch size.

``python -m bench.scaling.worker <spec json> [<options json>]`` first pins itself to the CPUs the
options name (as the timing pass's workers do, before any framework starts a thread), then builds
the runner as a run's child does (same data, model, initial weights and batch order) and answers
each ``{"steps": k, "batch_size": b}`` line on stdin with the wall time, CPU time and contention
of ``k`` steps of batch ``b``. The first
request at a batch size warms that size up first (every step shape runs once: in compiled modes
that is the compilation), outside the clocks. Replies are stdout lines starting with
:data:`bench.timing.worker.TAG`, the timing pass's protocol; the framework is imported here only.
"""
from __future__ import annotations

import json
import sys

from bench import frameworks
from bench.data import epoch_order, load_dataset
from bench.run.child import make_runner
from bench.timing.worker import Stepper, pin, reply


def serve(spec_json: str, options_json: str = "{}") -> int:
    spec, options = json.loads(spec_json), json.loads(options_json)
    try:
        cpus = pin([int(c) for c in options.get("cpus") or []])
        data = load_dataset(spec["data"])
        frameworks.get(spec["framework"]["name"]).prepare_process()  # before make_runner imports it
        runner = make_runner(spec, data)
    except Exception as exc:  # reported by the parent as this worker's failure
        reply({"error": f"{type(exc).__name__}: {exc}"})
        return 1
    reply({"ready": True, "n_train": data.n_train, "cpus": cpus})
    steppers: dict[int, Stepper] = {}
    warm_up = getattr(runner, "warm_up", None)
    for line in sys.stdin:
        ask = json.loads(line)
        batch = int(ask["batch_size"])
        if not 1 <= batch <= data.n_train:
            reply({"error": f"batch_size {batch} outside 1..{data.n_train}"})
            continue
        if batch not in steppers:
            warmup_s = warm_up(epoch_order(spec["seed"], 1, data.n_train), batch) if warm_up else 0.0
            steppers[batch] = Stepper(runner, spec["seed"], data.n_train, batch)
            steppers[batch].warmup_s = warmup_s
        reply({**steppers[batch].run(int(ask["steps"])), "batch_size": batch})
    return 0


if __name__ == "__main__":
    if len(sys.argv) not in (2, 3):
        print("usage: python -m bench.scaling.worker <spec json> [<options json>]", file=sys.stderr)
        sys.exit(2)
    sys.exit(serve(*sys.argv[1:]))

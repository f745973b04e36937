"""``python -m bench.parity.worker <workdir> <framework>``: the child side of ``bench.parity``.

Runs every job of ``<workdir>/jobs.json`` in one framework (its runner for the spec's model
through ``bench.run.child.make_runner``, one step per call) and leaves, per job, the step losses
and the parameters at the saved steps in ``<key>-<framework>.npz``, with the runner's description
in ``<key>-<framework>.json``.
"""
from __future__ import annotations

import json
import sys
from pathlib import Path
from typing import Any

import numpy as np

from bench import frameworks
from bench.data import DataError, load_dataset
from bench.exits import EXIT_BAD_INPUT
from bench.parity.run import batch_plan
from bench.results import write_json


def child_main(workdir: Path, framework: str) -> int:
    """Run every job of ``workdir/jobs.json`` in this framework; one npz + json per job."""
    from bench.run.child import make_runner

    jobs = json.loads((workdir / "jobs.json").read_text())
    frameworks.get(framework).prepare_process()  # before the first make_runner imports it
    datasets: dict[str, Any] = {}
    for job in jobs:
        spec = job["specs"][framework]
        data_key = json.dumps(spec["data"], sort_keys=True)
        try:
            if data_key not in datasets:
                datasets[data_key] = load_dataset(spec["data"], log=lambda msg: print(msg, file=sys.stderr))
        except DataError as exc:
            print(f"error: {exc}", file=sys.stderr)
            return EXIT_BAD_INPUT
        data = datasets[data_key]
        runner = make_runner(spec, data)  # the start: initial_weights(seed, the spec's model), or init=native
        save = set(job["param_steps"])
        snaps = {name: [w] for name, w in runner.weights().items()}
        losses = np.empty(job["steps"])
        for k, idx in enumerate(batch_plan(spec["seed"], data.n_train, job["batch_size"], job["steps"]), 1):
            losses[k - 1] = runner.train_epoch(idx, len(idx))[0]  # one call = one step
            if k in save:
                for name, w in runner.weights().items():
                    snaps[name].append(w)
        np.savez(workdir / f"{job['key']}-{framework}.npz", loss=losses, param_steps=np.array(sorted(save)),
                 **{name: np.stack(ws) for name, ws in snaps.items()})
        write_json(workdir / f"{job['key']}-{framework}.json", runner.describe())
    return 0


if __name__ == "__main__":
    if len(sys.argv) != 3:
        print("usage: python -m bench.parity.worker <workdir> <framework>", file=sys.stderr)
        sys.exit(EXIT_BAD_INPUT)
    sys.exit(child_main(Path(sys.argv[1]), sys.argv[2]))

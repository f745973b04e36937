"""``python -m bench.parity.worker <workdir> <member>``: the child side of ``bench.parity``.

Runs every job of ``<workdir>/jobs.json`` as one member of the checks (a framework, ``jax``, or a
version of one, ``jax@0.9.2``, started from that version's venv): its runner for the spec's model
through ``bench.run.child.make_runner``, one step per call. Leaves, per job, the step losses and the
parameters at the saved steps in ``<key>-<member>.npz``, with the runner's description (and the
framework's version from package metadata) in ``<key>-<member>.json``.
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


def child_main(workdir: Path, member: str) -> int:
    """Run every job of ``workdir/jobs.json`` as ``member`` (a framework, or ``<framework>@<version>``
    in its version's venv); one npz + json per job."""
    from bench.run.child import make_runner

    jobs = json.loads((workdir / "jobs.json").read_text())
    framework = frameworks.get(jobs[0]["specs"][member]["framework"]["name"])
    framework.prepare_process()  # before the first make_runner imports it
    installed = framework.installed_version()  # what this process imports, as run.json records it
    datasets: dict[str, Any] = {}
    for job in jobs:
        spec = job["specs"][member]
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
        np.savez(workdir / f"{job['key']}-{member}.npz", loss=losses, param_steps=np.array(sorted(save)),
                 **{name: np.stack(ws) for name, ws in snaps.items()})
        write_json(workdir / f"{job['key']}-{member}.json",
                   {**runner.describe(), **({"framework_version": installed} if installed else {})})
    return 0


if __name__ == "__main__":
    if len(sys.argv) != 3:
        print("usage: python -m bench.parity.worker <workdir> <member>", file=sys.stderr)
        sys.exit(EXIT_BAD_INPUT)
    sys.exit(child_main(Path(sys.argv[1]), sys.argv[2]))

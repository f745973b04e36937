"""Child-process entry: ``python -m bench.child <run dir>/spec.json``.

Exactly one framework is imported here, after the data is loaded and checked and after
the thread count and visible devices are fixed (the parent sets them in the environment).

Exit codes: 0 completed, 3 diverged, 2 bad input (one line on stderr), 1 anything else.
"""
from __future__ import annotations

import json
import platform
import sys
import time
import traceback
from pathlib import Path

import numpy as np

from bench.data import DataError, load_dataset
from bench.loop import train
from bench.results import update_run_json
from models.init import initial_weights

EXIT_DIVERGED = 3


def resolve_batch_size(spec: dict, n_train: int) -> int:
    batch = spec["batch_size"]
    if batch == "full":
        return n_train
    if batch > n_train:
        raise DataError(f"batch_size={batch} is larger than the training set ({n_train} images)")
    return int(batch)


def make_runner(spec: dict, data, weights):
    if spec["framework"]["name"] == "torch":
        from bench.runner_torch import TorchRunner

        return TorchRunner(spec, data, weights)
    from bench.runner_tf import TFRunner

    return TFRunner(spec, data, weights)


def main(spec_path: str) -> int:
    spec = json.loads(Path(spec_path).read_text())
    out_dir = Path(spec_path).parent
    try:
        data = load_dataset(spec["data"])
        batch_size = resolve_batch_size(spec, data.n_train)
    except DataError as exc:
        update_run_json(out_dir, status="failed", error=str(exc), end_time=time.time())
        print(f"error: {exc}", file=sys.stderr)
        return 2
    weights = initial_weights(spec["seed"])
    update_run_json(
        out_dir, status="running", dataset=data.name, data_source=data.source, data_notes=data.notes,
        n_train=data.n_train, n_test=data.n_test, batch_size_resolved=batch_size,
        python=platform.python_version(), numpy=np.__version__,
    )
    try:
        runner = make_runner(spec, data, weights)
        update_run_json(out_dir, **runner.describe())
        status = train(spec, runner, data, out_dir, batch_size)
    except Exception as exc:  # recorded in run.json, then the child fails
        tail = traceback.format_exc().splitlines()[-30:]
        update_run_json(out_dir, status="failed", error=f"{type(exc).__name__}: {exc}",
                        traceback=tail, end_time=time.time())
        raise
    update_run_json(out_dir, status=status, end_time=time.time())
    return 0 if status == "completed" else EXIT_DIVERGED


if __name__ == "__main__":
    if len(sys.argv) != 2:
        print("usage: python -m bench.child <run dir>/spec.json", file=sys.stderr)
        sys.exit(2)
    sys.exit(main(sys.argv[1]))

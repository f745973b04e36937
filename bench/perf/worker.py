"""``python -m bench.perf.worker <job json>``: one case of ``bench.perf``, inside its own child.

Imports one framework at most (through ``bench.frameworks``). The last stdout line is
``PERF_RESULT`` + one JSON object: the case's per-epoch wall and CPU times, or its error.
"""
from __future__ import annotations

import csv
import importlib
import json
import statistics
import sys
import tempfile
import time
import traceback
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from bench import frameworks
from bench.data import Dataset, load_dataset
from bench.perf.cases import NAIVE
from models.layers import parse_model

RESULT_TAG = "PERF_RESULT "  # the worker's last stdout line: this tag + one JSON object


class _Clocked:
    """Wraps a runner to add process CPU time per epoch (less sensitive to a busy machine
    than wall time when threads=1)."""

    def __init__(self, runner) -> None:
        self._runner, self.cpu_times = runner, []

    def __getattr__(self, name: str):
        return getattr(self._runner, name)

    def train_epoch(self, order, batch_size):
        t0 = time.process_time()
        out = self._runner.train_epoch(order, batch_size)
        self.cpu_times.append(time.process_time() - t0)
        return out


def run_case(job: Mapping[str, Any]) -> dict[str, Any]:
    """The case's timings: ``epoch_times`` and ``cpu_times`` (one per timed epoch) and its size."""
    if job["kind"] == "matmul":
        from bench.frameworks.torch.device import matmul_rate

        return matmul_rate(job["device"], job["threads"], job["reps"])
    if job["kind"] == "gemms":
        from bench.frameworks.torch.device import gemm_times

        return gemm_times(job["device"], job["threads"], job["shapes"], job["rounds"], job["sample_s"])
    framework = frameworks.get(job["framework"])
    framework.prepare_process()  # before any kind of case imports it
    if job["kind"] == "layers":
        from bench.perf.layers import profile

        return profile(job, framework.load("profile", "prefix_pass"))
    data = load_dataset(job["data"], log=lambda *_: None)
    return _naive(job, data) if job["kind"] == "naive" else _harness(job, data)


def _naive(job: Mapping[str, Any], data: Dataset) -> dict[str, Any]:
    batch = data.n_train if job["batch"] == "full" else job["batch"]
    extra = {"device": job["device"]} if job["framework"] == "torch" else {}  # TF places ops by itself
    times = importlib.import_module(NAIVE[job["framework"]].module).epoch_times(
        data.x_train, data.y_train, batch, job["reps"], model=parse_model(job["model"]), **extra)
    return {"epoch_times": [w for w, _ in times], "cpu_times": [c for _, c in times],
            "steps": -(-data.n_train // batch), "n_train": data.n_train, "dataset": data.name}


def _harness(job: Mapping[str, Any], data: Dataset) -> dict[str, Any]:
    """``job["spec"]`` trained through the real loop (``bench.loop.train``), one epoch per rep."""
    from bench.loop import train
    from bench.results import read_json
    from bench.run.child import make_runner, resolve_batch_size
    spec = job["spec"]
    batch = resolve_batch_size(spec, data.n_train)
    runner = _Clocked(make_runner(spec, data))
    with tempfile.TemporaryDirectory() as tmp:
        status = train(spec, runner, data, Path(tmp), batch)
        with open(Path(tmp) / "metrics.csv", newline="") as fh:
            rows = [r for r in csv.DictReader(fh) if int(r["epoch"]) > 0]
        warmup = (read_json(Path(tmp) / "run.json") or {}).get("warmup_time_s")
    if status != "completed":
        return {"error": f"run {status}"}
    return {"epoch_times": [float(r["epoch_time_s"]) for r in rows], "cpu_times": runner.cpu_times,
            "overhead_frac": statistics.median(float(r["overhead_frac"]) for r in rows),
            "steps": -(-data.n_train // batch), "n_train": data.n_train, "warmup_s": warmup, "dataset": data.name}


def main(payload: str) -> int:
    try:
        result = run_case(json.loads(payload))
    except Exception as exc:  # reported as the case's error; the parent carries on
        traceback.print_exc()
        result = {"error": f"{type(exc).__name__}: {exc}"[:300]}
    print(RESULT_TAG + json.dumps(result), flush=True)
    return 0


if __name__ == "__main__":
    if len(sys.argv) != 2:
        print("usage: python -m bench.perf.worker <job json>", file=sys.stderr)
        sys.exit(2)
    sys.exit(main(sys.argv[1]))

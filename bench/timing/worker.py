"""Child side of the timing pass: one configuration, built once, timed on command.

``python -m bench.timing --worker <spec json>`` builds the runner exactly as a run's child
does (the same data, the same model, the shared initial weights, the same batch order function), warms it
up, then answers each ``{"steps": k}`` line on stdin with the wall time, process CPU time
and contention of running ``k`` steps. Between commands it blocks on stdin, so an idle
worker uses no CPU while another one is timed. Replies are stdout lines starting with
:data:`TAG`; the framework is imported here only, through ``bench.run.child.make_runner``.
"""
from __future__ import annotations

import json
import sys
from typing import Any

import numpy as np

from bench import frameworks
from bench.clock import Snapshot
from bench.data import epoch_order, load_dataset
from bench.run.child import make_runner, resolve_batch_size

TAG = "TIMING "


def reply(obj: dict[str, Any]) -> None:
    print(TAG + json.dumps(obj), flush=True)


class Stepper:
    """Runs ``k`` steps as a run's epochs do: successive epoch orders, whole batches only
    (the partial last batch of an epoch is a step of another shape and another cost)."""

    def __init__(self, runner: Any, seed: int, n_train: int, batch_size: int) -> None:
        self.runner, self.seed, self.n, self.batch = runner, seed, n_train, batch_size
        self.epoch = 0

    def _chunks(self, steps: int) -> list[np.ndarray]:
        chunks, left = [], steps
        while left > 0:
            self.epoch += 1
            order = epoch_order(self.seed, self.epoch, self.n)
            if self.batch >= self.n:  # full batch: an epoch is one step
                chunks.append(order)
                left -= 1
            else:
                take = min(left, self.n // self.batch)
                chunks.append(order[: take * self.batch])
                left -= take
        return chunks

    def run(self, steps: int) -> dict[str, float]:
        chunks = self._chunks(steps)  # built before the clocks start
        before = Snapshot.take()
        for order in chunks:
            self.runner.train_epoch(order, self.batch)  # returns after the device is synchronised
        used = Snapshot.take().since(before)
        return {"steps": steps, "time_s": used.wall_s, "cpu_time_s": used.cpu_s, "contention": used.contention}


def serve(spec_json: str) -> int:
    spec = json.loads(spec_json)
    try:
        data = load_dataset(spec["data"])
        batch = resolve_batch_size(spec, data.n_train)
        frameworks.get(spec["framework"]["name"]).prepare_process()  # before make_runner imports it
        runner = make_runner(spec, data)
        warm_up = getattr(runner, "warm_up", None)
        warmup_s = warm_up(epoch_order(spec["seed"], 1, data.n_train), batch) if warm_up else 0.0
    except Exception as exc:  # reported by the parent as this configuration's failure
        reply({"error": f"{type(exc).__name__}: {exc}"})
        return 1
    reply({"ready": True, "warmup_s": warmup_s, "batch_size": batch, "n_train": data.n_train})
    stepper = Stepper(runner, spec["seed"], data.n_train, batch)
    for line in sys.stdin:
        reply(stepper.run(int(json.loads(line)["steps"])))
    return 0

"""The framework-neutral training loop: one contract, two thin runners.

A runner (``bench/frameworks/torch/runner.py``, ``bench/frameworks/tf/runner.py``) only says how to put the data
and the model on its device, run one epoch of steps in a given order, and evaluate.
Everything else — batch order, clocks, divergence, logging, progress — is here, once.
This module imports neither framework.
"""
from __future__ import annotations

import math
import sys
import time
from typing import Any, Protocol

import numpy as np

from bench.clock import Snapshot
from bench.data import Dataset, epoch_order
from bench.results import METRIC_COLUMNS, STEP_COLUMNS, update_run_json, write_csv


class Runner(Protocol):
    def describe(self) -> dict[str, Any]:
        """Framework and library versions, device name, threads, mode details."""

    def train_epoch(self, order: np.ndarray, batch_size: int) -> np.ndarray:
        """Run every step of one epoch over ``order`` (last batch may be partial).

        Returns the per-step training losses as float64, after the device is synchronised,
        so the caller's clock read after this call is honest.
        """

    def evaluate(self, split: str) -> tuple[float, float]:
        """Mean cross-entropy and accuracy on ``train``, ``test`` or ``val``."""

    def weights(self) -> dict[str, np.ndarray]:
        """Current parameters in the canonical layout of ``models.init``."""

    # Optional, read with getattr so a minimal runner still works:
    #   warm_up(order, batch_size) -> float: compile/trace every step shape, restore the state,
    #       return the seconds; recorded as run.json's warmup_time_s, so epoch 1 is not inflated.
    #   step_time_s: float: seconds the last train_epoch spent inside the framework's step
    #       calls; the rest of the epoch is harness overhead (overhead_s in metrics.csv).


def steps_per_epoch(n: int, batch_size: int) -> int:
    return -(-n // batch_size)  # the partial last batch is a step, in both frameworks


def epochs_to_run(epochs: int, min_steps: int, n_steps: int) -> int:
    """``epochs``, raised so that at least ``min_steps`` steps are taken: a method with one
    step per epoch (batch GD) needs many more epochs than the others to show its curve."""
    return max(epochs, -(-min_steps // n_steps))


def divergence(losses: np.ndarray, first_loss: float, factor: float) -> str | None:
    """Why an epoch with these step losses diverged, or None.

    Diverged: a loss is non-finite, or (``factor`` > 0) the epoch's mean loss exceeds
    ``factor`` x the loss before training: a run that blows up to 1e5 without overflowing
    is not a result to rank by its final accuracy.
    """
    if not np.all(np.isfinite(losses)):
        return f"loss became non-finite at step {int(np.argmax(~np.isfinite(losses))) + 1} of the epoch"
    mean = float(np.mean(losses))
    if factor > 0 and mean > factor * first_loss:
        return f"mean training loss {mean:.4g} > diverge_factor {factor:g} x initial loss {first_loss:.4g}"
    return None


class Progress:
    """One line per epoch, or an in-place bar on a terminal."""

    def __init__(self, label: str, epochs: int, style: str) -> None:
        self.label, self.epochs = label, epochs
        self.style = ("bar" if sys.stdout.isatty() else "lines") if style == "auto" else style

    def epoch(self, row: dict[str, Any]) -> None:
        if self.style == "none":
            return
        e = row["epoch"]
        text = (f"{self.label} epoch {e}/{self.epochs} train_loss {row['train_loss']:.4f} "
                f"test_acc {row['test_acc']:.4f} {row['epoch_time_s']:.2f}s")
        if self.style == "bar":
            done = int(20 * e / self.epochs)
            end = "\n" if e == self.epochs else ""
            print(f"\r[{'#' * done}{'.' * (20 - done)}] {text}", end=end, flush=True)
        else:
            print(text, flush=True)

    def close(self, status: str) -> None:
        if self.style == "bar":
            print(flush=True)
        if self.style != "none" or status != "completed":
            print(f"{self.label} {status}", flush=True)


def train(spec: dict[str, Any], runner: Runner, data: Dataset, out_dir, batch_size: int) -> str:
    """Train for ``spec['epochs']`` epochs, logging as we go; returns the final status."""
    opt = spec["optimizer"]
    base = {
        "run_id": spec["run_id"], "framework": spec["framework"]["name"], "optimizer": opt["name"],
        "impl": opt["impl"], "mode": spec["mode"], "lr": opt["lr"], "batch_size": batch_size,
        "seed": spec["seed"], "dataset": data.name, "n_train": data.n_train, "n_test": data.n_test,
        "device": spec["device"],
    }
    n_steps = steps_per_epoch(data.n_train, batch_size)
    epochs = epochs_to_run(spec["epochs"], spec.get("min_steps", 0), n_steps)
    if epochs != spec["epochs"]:
        update_run_json(out_dir, epochs_run=epochs)
    factor = float(spec.get("diverge_factor", 0.0))
    every = max(1, n_steps // spec["step_log_points"])
    progress = Progress(f"[{base['framework']} {base['optimizer']} bs{batch_size} s{base['seed']}]",
                        epochs, spec["progress"])
    rows: list[dict[str, Any]] = []
    step_rows: list[dict[str, Any]] = []
    wall = 0.0

    def evaluate() -> tuple[dict[str, float], float]:
        t0 = time.perf_counter()
        out: dict[str, float] = {}
        splits = ("train", "test") + (("val",) if data.y_val is not None else ())
        for split in splits:
            out[f"{split}_loss"], out[f"{split}_acc"] = runner.evaluate(split)
        return out, time.perf_counter() - t0

    def flush(status: str) -> None:
        for row in rows:
            row["status"] = status
        write_csv(out_dir / "metrics.csv", rows, METRIC_COLUMNS)
        write_csv(out_dir / "steps.csv", step_rows, STEP_COLUMNS)

    warm_up = getattr(runner, "warm_up", None)
    if warm_up is not None:
        warmup_time = warm_up(epoch_order(spec["seed"], 1, data.n_train), batch_size)
        update_run_json(out_dir, warmup_time_s=warmup_time)

    def timing(train_time: float, log_time: float = 0.0) -> dict[str, float]:
        """Harness overhead = the epoch outside the framework's step calls + its logging."""
        inside = float(getattr(runner, "step_time_s", math.nan))
        overhead = train_time - inside + log_time
        total = train_time + log_time
        return {"epoch_time_s": train_time, "step_time_s": inside, "overhead_s": overhead,
                "overhead_frac": overhead / total if total > 0 else math.nan}

    scores, eval_time = evaluate()
    first_loss = scores["train_loss"]
    rows.append({**base, "epoch": 0, "steps": 0, **scores, "step_loss_mean": math.nan,
                 "epoch_time_s": 0.0, "eval_time_s": eval_time, "wall_time_s": 0.0,
                 "samples_per_s": math.nan, "cpu_time_s": 0.0, "contention": math.nan})
    flush("running")
    status = "completed"
    for epoch in range(1, epochs + 1):
        order = epoch_order(spec["seed"], epoch, data.n_train)
        before = Snapshot.take()
        losses = runner.train_epoch(order, batch_size)
        used = Snapshot.take().since(before)
        train_time = used.wall_s
        wall += train_time
        clocks = {"cpu_time_s": used.cpu_s, "contention": used.contention}
        t_log = time.perf_counter()
        first = (epoch - 1) * n_steps
        step_rows.extend(
            {**base, "epoch": epoch, "step": first + k + 1, "loss": float(losses[k])}
            for k in range(every - 1, n_steps, every)
        )
        why = divergence(losses, first_loss, factor)
        if why is not None and not np.all(np.isfinite(losses)):
            # Nothing after a non-finite loss is worth evaluating: the weights are NaN.
            bad = int(np.argmax(~np.isfinite(losses)))
            rows.append({**base, "epoch": epoch, "steps": first + bad + 1, "train_loss": math.nan,
                         "train_acc": math.nan, "step_loss_mean": math.nan, "test_loss": math.nan,
                         "test_acc": math.nan, **timing(train_time), **clocks, "eval_time_s": 0.0,
                         "wall_time_s": wall, "samples_per_s": math.nan})
        else:
            log_time = time.perf_counter() - t_log
            scores, eval_time = evaluate()
            t_log = time.perf_counter()
            row = {**base, "epoch": epoch, "steps": first + n_steps, **scores,
                   "step_loss_mean": float(np.mean(losses)), **timing(train_time), **clocks,
                   "eval_time_s": eval_time, "wall_time_s": wall,
                   "samples_per_s": data.n_train / train_time if train_time > 0 else math.nan}
            rows.append(row)
        if why is not None:
            status = "diverged"
            print(f"{progress.label} epoch {epoch}: {why}: diverged", file=sys.stderr, flush=True)
            break
        flush("running")
        update_run_json(out_dir, epochs_done=epoch)
        progress.epoch(row)
        # This epoch's logging time is known only now; the next flush writes it.
        row.update(timing(train_time, log_time + time.perf_counter() - t_log))
    flush(status)
    progress.close(status)
    return status

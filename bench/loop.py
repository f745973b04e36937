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

from bench import frameworks
from bench.clock import Snapshot, Usage
from bench.data import Dataset, epoch_order
from bench.results import METRIC_COLUMNS, STEP_COLUMNS, update_run_json, write_csv
from bench.run.progress import resolve_style


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
    #   device_peak_bytes() -> int | None: the framework's own peak of device memory, None off a
    #       GPU; the child reads it after training into run.json's device_peak_mib.


def steps_per_epoch(n: int, batch_size: int) -> int:
    return -(-n // batch_size)  # the partial last batch is a step, in every framework


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
    """One line per epoch, or an in-place bar on a terminal; in a sweep off a terminal only the
    run's end line (``bench.run.progress.resolve_style``). Every style but ``none`` ends with
    that line: status, final test accuracy and seconds; ``none`` prints it only for a run that
    did not complete."""

    def __init__(self, label: str, epochs: int, style: str) -> None:
        self.label, self.epochs = label, epochs
        self.style = resolve_style(style)
        self.t0 = time.perf_counter()  # the end line's seconds: warm-up and evaluation included

    def epoch(self, row: dict[str, Any]) -> None:
        if self.style in ("none", "end"):
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

    def close(self, status: str, test_acc: float = math.nan) -> None:
        """The end line; ``test_acc`` is the last row's (NaN, shown n/a, when the loss went non-finite)."""
        if self.style == "bar":
            print(flush=True)
        if self.style != "none" or status != "completed":
            acc = "n/a" if math.isnan(test_acc) else f"{test_acc:.4f}"
            print(f"{self.label} {status} test_acc {acc} in {time.perf_counter() - self.t0:.1f}s", flush=True)


def train(spec: dict[str, Any], runner: Runner, data: Dataset, out_dir, batch_size: int) -> str:
    """Train for ``spec['epochs']`` epochs, logging as we go; returns the final status."""
    run = _Training(spec, runner, data, out_dir, batch_size)
    if run.epochs != spec["epochs"]:
        update_run_json(out_dir, epochs_run=run.epochs)
    run.warm_up()
    run.start()
    status = "completed"
    for epoch in range(1, run.epochs + 1):
        if not run.epoch(epoch):
            status = "diverged"
            break
    run.flush(status)
    run.progress.close(status, run.rows[-1]["test_acc"])
    return status


def _base_row(spec: dict[str, Any], data: Dataset, batch_size: int) -> dict[str, Any]:
    """The columns every row of metrics.csv and steps.csv repeats: which run, on what."""
    opt = spec["optimizer"]
    return {
        "run_id": spec["run_id"], "framework": spec["framework"]["name"], "optimizer": opt["name"],
        "impl": opt["impl"], "mode": spec["mode"], "lr": opt["lr"], "batch_size": batch_size,
        "seed": spec["seed"], "dataset": data.name, "n_train": data.n_train, "n_test": data.n_test,
        "device": spec["device"], "model": spec.get("model", {}).get("name", "mlp"),
        "framework_version": frameworks.get(spec["framework"]["name"]).installed_version(),
        "precision": spec.get("precision", "fp32"),
    }


def _clocks(used: Usage) -> dict[str, float]:
    """An epoch's CPU time and the share of the machine others used, as metrics.csv names them."""
    return {"cpu_time_s": used.cpu_s, "contention": used.contention}


class _Training:
    """One run between its epochs: the rows logged so far, and the steps that add to them."""

    def __init__(self, spec: dict[str, Any], runner: Runner, data: Dataset, out_dir, batch_size: int) -> None:
        self.spec, self.runner, self.data, self.out_dir, self.batch_size = spec, runner, data, out_dir, batch_size
        self.base = _base_row(spec, data, batch_size)
        self.n_steps = steps_per_epoch(data.n_train, batch_size)
        self.epochs = epochs_to_run(spec["epochs"], spec.get("min_steps", 0), self.n_steps)
        self.factor = float(spec.get("diverge_factor", 0.0))
        self.every = max(1, self.n_steps // spec["step_log_points"])
        self.progress = Progress(f"[{self.base['framework']} {self.base['optimizer']} bs{batch_size} "
                                 f"s{self.base['seed']}]", self.epochs, spec["progress"])
        self.rows: list[dict[str, Any]] = []
        self.step_rows: list[dict[str, Any]] = []
        self.wall = 0.0  # training seconds so far; evaluation and logging are not in it
        self.first_loss = math.nan  # the training loss before the first step, set by start()

    def warm_up(self) -> None:
        """Let a runner that can compile/trace every step shape first; run.json gets the seconds."""
        warm_up = getattr(self.runner, "warm_up", None)
        if warm_up is not None:
            warmup_time = warm_up(epoch_order(self.spec["seed"], 1, self.data.n_train), self.batch_size)
            update_run_json(self.out_dir, warmup_time_s=warmup_time)

    def start(self) -> None:
        """Epoch 0: score the initial weights (divergence is judged against their loss) and write the row."""
        scores, eval_time = self.evaluate()
        self.first_loss = scores["train_loss"]
        self.rows.append({**self.base, "epoch": 0, "steps": 0, **scores, "step_loss_mean": math.nan,
                          "epoch_time_s": 0.0, "eval_time_s": eval_time, "wall_time_s": 0.0,
                          "samples_per_s": math.nan, "cpu_time_s": 0.0, "contention": math.nan})
        self.flush("running")

    def epoch(self, epoch: int) -> bool:
        """Train, log and score one epoch; False when it diverged (its row is kept for the last flush)."""
        losses, used = self.step(epoch)
        self.wall += used.wall_s
        t_log = time.perf_counter()
        self.log_steps(epoch, losses)
        why = divergence(losses, self.first_loss, self.factor)
        if why is not None:
            self.diverged(epoch, losses, used, why)
            return False
        log_time = time.perf_counter() - t_log
        scores, eval_time = self.evaluate()
        t_log = time.perf_counter()
        row = self.row(epoch, losses, used, scores, eval_time)
        self.rows.append(row)
        self.flush("running")
        update_run_json(self.out_dir, epochs_done=epoch)
        self.progress.epoch(row)
        # This epoch's logging time is known only now; the next flush writes it.
        row.update(self.timing(used.wall_s, log_time + time.perf_counter() - t_log))
        return True

    def step(self, epoch: int) -> tuple[np.ndarray, Usage]:
        """One epoch of steps in the shared batch order: their losses and the clocks it used."""
        order = epoch_order(self.spec["seed"], epoch, self.data.n_train)
        before = Snapshot.take()
        losses = self.runner.train_epoch(order, self.batch_size)
        return losses, Snapshot.take().since(before)

    def log_steps(self, epoch: int, losses: np.ndarray) -> None:
        """Every ``every``-th step's loss of the epoch, as rows of steps.csv."""
        first = (epoch - 1) * self.n_steps
        self.step_rows.extend(
            {**self.base, "epoch": epoch, "step": first + k + 1, "loss": float(losses[k])}
            for k in range(self.every - 1, self.n_steps, self.every)
        )

    def diverged(self, epoch: int, losses: np.ndarray, used: Usage, why: str) -> None:
        """Keep the diverged epoch's row and say why the run stops."""
        if np.all(np.isfinite(losses)):
            scores, eval_time = self.evaluate()
            self.rows.append(self.row(epoch, losses, used, scores, eval_time))
        else:
            self.rows.append(self.non_finite_row(epoch, losses, used))
        print(f"{self.progress.label} epoch {epoch}: {why}: diverged", file=sys.stderr, flush=True)
        update_run_json(self.out_dir, diverged_reason=f"epoch {epoch}: {why}")  # the report's status table says it

    def row(self, epoch: int, losses: np.ndarray, used: Usage, scores: dict[str, float],
            eval_time: float) -> dict[str, Any]:
        """metrics.csv's row of a scored epoch (without its logging time, which comes later)."""
        train_time = used.wall_s
        return {**self.base, "epoch": epoch, "steps": epoch * self.n_steps, **scores,
                "step_loss_mean": float(np.mean(losses)), **self.timing(train_time), **_clocks(used),
                "eval_time_s": eval_time, "wall_time_s": self.wall,
                "samples_per_s": self.data.n_train / train_time if train_time > 0 else math.nan}

    def non_finite_row(self, epoch: int, losses: np.ndarray, used: Usage) -> dict[str, Any]:
        """metrics.csv's row of an epoch whose loss went non-finite: its steps up to that loss, no
        scores (nothing after a non-finite loss is worth evaluating: the weights are NaN)."""
        bad = int(np.argmax(~np.isfinite(losses)))
        return {**self.base, "epoch": epoch, "steps": (epoch - 1) * self.n_steps + bad + 1, "train_loss": math.nan,
                "train_acc": math.nan, "step_loss_mean": math.nan, "test_loss": math.nan,
                "test_acc": math.nan, **self.timing(used.wall_s), **_clocks(used), "eval_time_s": 0.0,
                "wall_time_s": self.wall, "samples_per_s": math.nan}

    def evaluate(self) -> tuple[dict[str, float], float]:
        """Loss and accuracy on every split the data has, and the seconds that took."""
        t0 = time.perf_counter()
        out: dict[str, float] = {}
        splits = ("train", "test") + (("val",) if self.data.y_val is not None else ())
        for split in splits:
            out[f"{split}_loss"], out[f"{split}_acc"] = self.runner.evaluate(split)
        return out, time.perf_counter() - t0

    def timing(self, train_time: float, log_time: float = 0.0) -> dict[str, float]:
        """Harness overhead = the epoch outside the framework's step calls + its logging."""
        inside = float(getattr(self.runner, "step_time_s", math.nan))
        overhead = train_time - inside + log_time
        total = train_time + log_time
        return {"epoch_time_s": train_time, "step_time_s": inside, "overhead_s": overhead,
                "overhead_frac": overhead / total if total > 0 else math.nan}

    def flush(self, status: str) -> None:
        """Rewrite metrics.csv and steps.csv with every row so far, each marked ``status``."""
        for row in self.rows:
            row["status"] = status
        write_csv(self.out_dir / "metrics.csv", self.rows, METRIC_COLUMNS)
        write_csv(self.out_dir / "steps.csv", self.step_rows, STEP_COLUMNS)

"""The JAX runner: data resident as device arrays, ``jax.value_and_grad`` + optax inside ``jax.jit``.

mode=eager calls one jitted step per batch from Python; mode=compiled runs the epoch's whole
batches in one jitted ``lax.scan`` (static shapes: one program per batch size and epoch length),
then the partial last batch as one more step call.
"""
from __future__ import annotations

import time
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np
import optax

from bench.data import FLOATS, Dataset, as_float
from bench.loop import steps_per_epoch
from bench.machine import cpu_name
from bench.optimizers import METHODS, get_rule, native_kwargs
from models import jax_model
from models.layers import parse_model

EVAL_CHUNK = 10_000


def make_optimizer(spec: dict[str, Any]) -> optax.GradientTransformation:
    opt = spec["optimizer"]
    rule = METHODS[opt["name"]].rule
    if opt["impl"] == "reference":
        from bench.frameworks.jax.reference import reference

        return reference(get_rule(rule), opt)
    fn, kwargs = native_kwargs(rule, "jax", opt)
    return getattr(optax, fn)(**kwargs)


class JaxRunner:
    def __init__(self, spec: dict[str, Any], data: Dataset, weights: dict[str, np.ndarray]) -> None:
        self.spec = spec
        # XLA_FLAGS (threads, GPU determinism) were set by the parent before this import.
        self.device = jax.devices("gpu" if spec["device"] == "cuda" else "cpu")[0]
        # JAX's GPU default for float32 matmuls is TF32; "highest" is true float32, as in the others.
        jax.config.update("jax_default_matmul_precision",
                          "tensorfloat32" if spec["precision"] == "tf32" else "highest")
        # float64 needs x64 on, a process-wide switch: a process runs one precision (bench.parity groups so).
        jax.config.update("jax_enable_x64", spec["precision"] == "fp64")
        self.dtype = FLOATS[spec["precision"]]
        put = lambda a: jax.device_put(a, self.device)  # noqa: E731
        pixels = lambda x: put(as_float(x, spec["precision"]))  # noqa: E731
        self.splits = {"train": (pixels(data.x_train), put(data.y_train.astype(np.int32))),
                       "test": (pixels(data.x_test), put(data.y_test.astype(np.int32)))}
        if data.y_val is not None:
            self.splits["val"] = (pixels(data.x_val), put(data.y_val.astype(np.int32)))
        model = parse_model(spec["model"])
        self._forward, self._loss = jax_model.make_forward(model), jax_model.make_loss(model)
        params = (jax_model.load_shared(weights, self.device, self.dtype) if spec["init"] == "shared"
                  else jax_model.native_init(model, spec["seed"], self.device, self.dtype))
        self.tx = make_optimizer(spec)
        self.state = (params, jax.device_put(self.tx.init(params), self.device))
        # The data are arguments, not closed-over constants (those would be baked into the program).
        self._step = jax.jit(self._step_fn, donate_argnums=0)
        self._row = jax.jit(self._row_fn, donate_argnums=0)
        self._epoch = jax.jit(self._epoch_fn, donate_argnums=0)
        self._eval = jax.jit(self._eval_fn)
        self.step_time_s = 0.0  # seconds inside step/epoch calls (and the final sync) in the last epoch

    def _step_fn(self, carry, x: jax.Array, y: jax.Array, idx: jax.Array | None):
        """One update from a batch of row indices (None = the whole resident training set).

        The carry is (params, optimizer state, the epoch's loss buffer, step number): each step
        writes its loss in place, so an epoch ends with one array to read, not one per step.
        """
        params, opt_state, losses, k = carry
        # Gathering the batch here, per step, reads only its rows.
        xb, yb = (x, y) if idx is None else (x[idx], y[idx])
        loss, grads = jax.value_and_grad(self._loss)(params, xb, yb)
        updates, opt_state = self.tx.update(grads, opt_state, params)
        return optax.apply_updates(params, updates), opt_state, losses.at[k].set(loss), k + 1

    def _row_fn(self, carry, x: jax.Array, y: jax.Array, batches: jax.Array):
        """The step whose batch is row k (the carry's step number) of ``batches`` [steps, batch_size]:
        the epoch's indices go to the device once, not as one small transfer per step."""
        return self._step_fn(carry, x, y, batches[carry[3]])

    def _epoch_fn(self, carry, x: jax.Array, y: jax.Array, batches: jax.Array):
        """Every row of ``batches`` as one step, in one program."""
        return jax.lax.scan(lambda c, idx: (self._step_fn(c, x, y, idx), None), carry, batches)[0]

    def _calls(self, order: np.ndarray, batch_size: int) -> list:
        """The framework calls of one epoch, in order; each maps the carry to the next carry."""
        x, y = self.splits["train"]
        if batch_size >= len(order) == int(y.shape[0]):
            # The full-batch gradient does not depend on the order: skip the gather.
            return [lambda c: self._step(c, x, y, None)]
        steps, whole = len(order) // batch_size, len(order) - len(order) % batch_size
        head = [order[:whole].astype(np.int32).reshape(steps, batch_size)] if steps else []
        rest = [order[whole:].astype(np.int32)] if whole < len(order) else []
        dev = jax.device_put(head + rest, self.device)  # one transfer for the epoch's indices
        calls = []
        if head and self.spec["mode"] == "compiled":
            calls.append(lambda c: self._epoch(c, x, y, dev[0]))
        elif head:
            calls += [lambda c: self._row(c, x, y, dev[0])] * steps
        if rest:  # the partial last batch: its own shape, its own program
            calls.append(lambda c: self._step(c, x, y, dev[-1]))
        return calls

    def _carry(self, n_steps: int) -> tuple:
        # Host arrays moved over, not jnp.zeros: no program to compile per epoch length.
        fresh = jax.device_put((np.zeros(n_steps, self.dtype), np.int32(0)), self.device)
        return (*self.state, *fresh)

    def warm_up(self, order: np.ndarray, batch_size: int) -> float:
        """Compile every call shape of an epoch by running it once, then put the weights and
        optimizer state back exactly; returns the seconds it took."""
        saved = jax.device_get(self.state)  # host copies: the steps donate (free) the state they get
        calls = self._calls(order, batch_size)
        carry = self._carry(steps_per_epoch(len(order), batch_size))
        t0 = time.perf_counter()
        # The first and the last call cover every shape (the rest repeat the first).
        for call in calls[:1] + calls[1:][-1:]:
            carry = jax.block_until_ready(call(carry))
        elapsed = time.perf_counter() - t0
        self.state = jax.device_put(saved, self.device)
        return elapsed

    def _eval_fn(self, params, xb: jax.Array, yb: jax.Array) -> tuple[jax.Array, jax.Array]:
        logits = self._forward(params, xb)
        # Per-sample losses: the caller sums them in float64, as the other runners do.
        return optax.softmax_cross_entropy_with_integer_labels(logits, yb), (jnp.argmax(logits, 1) == yb).sum()

    def describe(self) -> dict[str, Any]:
        import jaxlib

        return {
            "framework_version": jax.__version__,
            "jaxlib_version": jaxlib.__version__,
            "optax_version": optax.__version__,
            "backend": jax.default_backend(),
            "device_name": self.device.device_kind if self.device.platform == "gpu" else cpu_name(),
            "threads": int(self.spec["threads"]),
            "mode_detail": ("jax.jit of lax.scan over a whole epoch" if self.spec["mode"] == "compiled"
                            else "jax.jit per step, Python loop"),
        }

    def device_peak_bytes(self) -> int | None:
        """XLA's peak of bytes in use on the GPU; None off a GPU or where the backend keeps no stats."""
        if self.device.platform != "gpu":
            return None
        stats = self.device.memory_stats() or {}
        return int(stats["peak_bytes_in_use"]) if "peak_bytes_in_use" in stats else None

    def train_epoch(self, order: np.ndarray, batch_size: int) -> np.ndarray:
        clock = time.perf_counter
        inside = 0.0  # time in the framework's calls; the rest of the epoch is harness overhead
        carry = self._carry(steps_per_epoch(len(order), batch_size))
        for call in self._calls(order, batch_size):
            t0 = clock()
            carry = call(carry)  # dispatched, not waited for
            inside += clock() - t0
        t0 = clock()
        losses = np.asarray(jax.block_until_ready(carry[2]), np.float64)
        self.step_time_s = inside + clock() - t0
        self.state = carry[:2]
        return losses

    def evaluate(self, split: str) -> tuple[float, float]:
        x, y = self.splits[split]
        n = int(y.shape[0])
        total, correct = 0.0, 0
        for start in range(0, n, EVAL_CHUNK):
            loss, hits = self._eval(self.state[0], x[start:start + EVAL_CHUNK], y[start:start + EVAL_CHUNK])
            total += float(np.asarray(loss, np.float64).sum())
            correct += int(hits)
        return total / n, correct / n

    def weights(self) -> dict[str, np.ndarray]:
        return jax_model.export_shared(self.state[0])

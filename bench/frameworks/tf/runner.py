"""The TensorFlow runner: data resident as tensors, GradientTape inside tf.function.

mode=eager calls one compiled step per batch from Python (TensorFlow's own idiom, what
Keras ``fit`` does); mode=compiled runs a whole epoch of steps in one ``tf.function`` call
(``framework.jit_compile=true`` compiles the steps and the epoch loop with XLA).
"""
from __future__ import annotations

import time
from typing import Any

import numpy as np
import tensorflow as tf

from bench.data import FLOATS, Dataset, as_float
from bench.machine import cpu_name
from bench.optimizers import METHODS, get_rule, native_kwargs
from models import tf_model
from models.layers import parse_model

EVAL_CHUNK = 10_000


_configured: tuple | None = None  # what configure() applied; TF allows it once per process


def configure(spec: dict[str, Any]) -> None:
    """Threads, devices, determinism and precision; must run before any TF op.

    A second runner in the same process (bench.parity runs several) may reuse the settings,
    but cannot change them: TensorFlow fixes them when its context starts.
    """
    global _configured
    wanted = (int(spec["threads"]), spec["device"], spec["precision"], bool(spec["deterministic"]))
    if _configured is not None:
        if wanted != _configured:
            raise RuntimeError(f"TensorFlow already configured as {_configured}; cannot switch to {wanted}")
        return
    tf.config.threading.set_intra_op_parallelism_threads(int(spec["threads"]))
    tf.config.threading.set_inter_op_parallelism_threads(1)
    gpus = tf.config.list_physical_devices("GPU")
    if spec["device"] == "cuda":
        if not gpus:
            raise RuntimeError("device=cuda but TensorFlow sees no GPU (is tensorflow-cpu installed?)")
        for gpu in gpus:
            tf.config.experimental.set_memory_growth(gpu, True)  # TF grabs all memory otherwise
    elif gpus:
        tf.config.set_visible_devices([], "GPU")
    # TF turns TF32 on by default, torch does not: apply the same precision to both.
    tf.config.experimental.enable_tensor_float_32_execution(spec["precision"] == "tf32")
    if spec["deterministic"]:
        tf.config.experimental.enable_op_determinism()
    import keras

    keras.config.set_floatx(np.dtype(FLOATS[spec["precision"]]).name)  # layers built from here on
    _configured = wanted


def make_optimizer(spec: dict[str, Any]):
    import keras

    opt = spec["optimizer"]
    rule = METHODS[opt["name"]].rule
    if opt["impl"] == "reference":
        from bench.frameworks.tf.reference import ReferenceOptimizer

        return ReferenceOptimizer(rule=get_rule(rule), hp=opt)
    cls, kwargs = native_kwargs(rule, "tensorflow", opt)
    return getattr(keras.optimizers, cls)(**kwargs)


class TFRunner:
    def __init__(self, spec: dict[str, Any], data: Dataset, weights: dict[str, np.ndarray]) -> None:
        configure(spec)
        import keras

        self.spec = spec
        self.device = "/GPU:0" if spec["device"] == "cuda" else "/CPU:0"
        with tf.device(self.device):
            self.splits = {
                "train": self._tensors(data.x_train, data.y_train),
                "test": self._tensors(data.x_test, data.y_test),
            }
            if data.y_val is not None:
                self.splits["val"] = self._tensors(data.x_val, data.y_val)
            keras.utils.set_random_seed(spec["seed"])  # only init=native draws from it
            self.model = tf_model.build(parse_model(spec["model"]))
            if spec["init"] == "shared":
                tf_model.load_shared(self.model, weights)
            self.optimizer = make_optimizer(spec)
            self.optimizer.build(self.model.trainable_variables)
        self.jit = bool(spec["framework"].get("jit_compile", False))
        # Traced once per batch shape (XLA needs static shapes); idx=None traces the full-batch step.
        self._step = tf.function(self._step_fn, jit_compile=self.jit)
        self._epochs: dict[int, Any] = {}  # batch size -> whole-epoch tf.function
        n_in = int(self.splits["train"][0].shape[1])  # flat rows; an image model reshapes them itself
        sig_batch = (tf.TensorSpec([None, n_in], self.splits["train"][0].dtype), tf.TensorSpec([None], tf.int64))
        self._eval = tf.function(self._eval_fn, input_signature=sig_batch)
        self.step_time_s = 0.0  # seconds inside step/epoch calls (and the final sync) in the last epoch

    def _tensors(self, x: np.ndarray, y: np.ndarray) -> tuple[tf.Tensor, tf.Tensor]:
        return tf.constant(as_float(x, self.spec["precision"])), tf.constant(y.astype(np.int64))

    def _step_fn(self, idx: tf.Tensor | None) -> tf.Tensor:
        """One update from a batch of row indices (None = the whole resident training set)."""
        x, y = self.splits["train"]
        # Gathering the batch here, per step, reads only its rows; a whole-epoch gather
        # would copy the full set (188 MB for 60k images) every epoch.
        xb, yb = (x, y) if idx is None else (tf.gather(x, idx), tf.gather(y, idx))
        variables = self.model.trainable_variables
        with tf.GradientTape() as tape:
            logits = self.model(xb, training=True)
            loss = tf.reduce_mean(tf.nn.sparse_softmax_cross_entropy_with_logits(yb, logits))
        grads = tape.gradient(loss, variables)
        self.optimizer.apply_gradients(zip(grads, variables))
        return loss

    def _epoch_fn(self, order: tf.Tensor, batch_size: int) -> tf.Tensor:
        """All whole batches of ``order`` in one graph; ``batch_size`` is a Python int, so
        every batch has a static shape (XLA needs that)."""
        n_steps = tf.shape(order)[0] // batch_size
        losses = tf.TensorArray(self.splits["train"][0].dtype, size=n_steps)
        for k in tf.range(n_steps):
            losses = losses.write(k, self._step_fn(tf.slice(order, [k * batch_size], [batch_size])))
        return losses.stack()

    def _epoch_for(self, batch_size: int):
        if batch_size not in self._epochs:
            self._epochs[batch_size] = tf.function(
                lambda order: self._epoch_fn(order, batch_size),
                input_signature=(tf.TensorSpec([None], tf.int64),), jit_compile=self.jit)
        return self._epochs[batch_size]

    def _calls(self, order: np.ndarray, batch_size: int) -> list:
        """The framework calls of one epoch, in order; each returns the loss of one step
        (a scalar) or of a whole-epoch graph's steps (a vector)."""
        if batch_size >= len(order) == int(self.splits["train"][1].shape[0]):
            # The full-batch gradient does not depend on the order: skip the gather.
            return [lambda: self._step(None)]
        whole = len(order) - len(order) % batch_size
        idx = tf.constant(order)
        calls = []
        if self.spec["mode"] == "compiled":
            if whole:
                calls.append(lambda: self._epoch_for(batch_size)(idx[:whole]))
        elif whole:
            calls += [lambda b=b: self._step(b) for b in tf.split(idx[:whole], whole // batch_size)]
        if whole < len(order):  # the partial last batch: its own shape, its own trace
            calls.append(lambda: self._step(idx[whole:]))
        return calls

    def warm_up(self, order: np.ndarray, batch_size: int) -> float:
        """Trace (and with XLA compile) every call shape of an epoch, then put the weights and
        optimizer state back; returns the seconds it took."""
        saved = [v.numpy() for v in self.model.variables + self.optimizer.variables]
        calls = self._calls(order, batch_size)
        if self.spec["mode"] == "compiled" and not self.jit and batch_size < len(order):
            # The whole-epoch graph takes any length: trace it on two batches, not a whole epoch.
            # (With XLA the program is compiled per input length, so the full order is needed.)
            calls = self._calls(order[: 2 * batch_size + len(order) % batch_size], batch_size)
        t0 = time.perf_counter()
        with tf.device(self.device):
            for call in calls[:2] + calls[-1:]:
                call().numpy()
        elapsed = time.perf_counter() - t0
        for var, value in zip(self.model.variables + self.optimizer.variables, saved):
            var.assign(value)
        return elapsed

    def _eval_fn(self, xb: tf.Tensor, yb: tf.Tensor) -> tuple[tf.Tensor, tf.Tensor]:
        logits = self.model(xb, training=False)
        loss = tf.reduce_sum(tf.cast(tf.nn.sparse_softmax_cross_entropy_with_logits(yb, logits), tf.float64))
        correct = tf.reduce_sum(tf.cast(tf.equal(tf.argmax(logits, 1), yb), tf.int64))
        return loss, correct

    def describe(self) -> dict[str, Any]:
        gpus = tf.config.list_logical_devices("GPU")
        name = cpu_name()
        if self.spec["device"] == "cuda" and gpus:
            details = tf.config.experimental.get_device_details(tf.config.list_physical_devices("GPU")[0])
            name = details.get("device_name", gpus[0].name)
        import keras

        return {
            "framework_version": tf.__version__,
            "keras_version": keras.__version__,
            "device_name": name,
            "threads": tf.config.threading.get_intra_op_parallelism_threads(),
            "mode_detail": ("tf.function over a whole epoch" if self.spec["mode"] == "compiled"
                            else "tf.function per step, Python loop") + (", XLA" if self.jit else ""),
        }

    def device_peak_bytes(self) -> int | None:
        """TensorFlow's peak of GPU memory in use; None off a GPU."""
        if self.spec["device"] != "cuda" or not tf.config.list_logical_devices("GPU"):
            return None
        return int(tf.config.experimental.get_memory_info("GPU:0")["peak"])

    def train_epoch(self, order: np.ndarray, batch_size: int) -> np.ndarray:
        clock = time.perf_counter
        inside = 0.0  # time in the framework's calls; the rest of the epoch is harness overhead
        with tf.device(self.device):
            out = []
            for call in self._calls(order, batch_size):
                t0 = clock()
                out.append(call())
                inside += clock() - t0
            # Calls come as [epoch vector] + [last-batch scalar] or as one scalar per step.
            scalars = [o for o in out if o.shape.rank == 0]
            parts = [o for o in out if o.shape.rank == 1] + ([tf.stack(scalars)] if scalars else [])
            joined = tf.concat(parts, 0)
            t0 = clock()
            losses = joined.numpy().astype(np.float64)  # .numpy() waits for the device
            self.step_time_s = inside + clock() - t0
        return losses

    def evaluate(self, split: str) -> tuple[float, float]:
        x, y = self.splits[split]
        n = int(y.shape[0])
        total, correct = 0.0, 0
        with tf.device(self.device):
            for start in range(0, n, EVAL_CHUNK):
                loss, hits = self._eval(x[start:start + EVAL_CHUNK], y[start:start + EVAL_CHUNK])
                total += float(loss)
                correct += int(hits)
        return total / n, correct / n

    def weights(self) -> dict[str, np.ndarray]:
        return tf_model.export_shared(self.model)

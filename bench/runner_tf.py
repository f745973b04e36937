"""The TensorFlow runner: data resident as tensors, GradientTape inside tf.function.

mode=eager calls one compiled step per batch from Python (TensorFlow's own idiom, what
Keras ``fit`` does); mode=compiled runs a whole epoch of steps in one ``tf.function`` call
(``framework.jit_compile=true`` adds XLA).
"""
from __future__ import annotations

from typing import Any

import numpy as np
import tensorflow as tf

from bench.data import Dataset, as_float
from bench.machine import cpu_name
from bench.optimizers import METHODS, native_kwargs

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
    _configured = wanted


def make_optimizer(spec: dict[str, Any]):
    import keras

    opt = spec["optimizer"]
    rule = METHODS[opt["name"]].rule
    if opt["impl"] == "reference":
        from bench.reference_tf import ReferenceOptimizer

        return ReferenceOptimizer(rule=rule, hp=opt)
    cls, kwargs = native_kwargs(rule, "tensorflow", opt)
    return getattr(keras.optimizers, cls)(**kwargs)


class TFRunner:
    def __init__(self, spec: dict[str, Any], data: Dataset, weights: dict[str, np.ndarray]) -> None:
        configure(spec)
        import keras

        from models.tf_mlp import build_mlp, load_shared

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
            self.model = build_mlp()
            if spec["init"] == "shared":
                load_shared(self.model, weights)
            self.optimizer = make_optimizer(spec)
            self.optimizer.build(self.model.trainable_variables)
        jit = bool(spec["framework"].get("jit_compile", False))
        sig_batch = (tf.TensorSpec([None, 784], tf.float32), tf.TensorSpec([None], tf.int64))
        self._step = tf.function(self._step_fn, input_signature=sig_batch, jit_compile=jit)
        self._epoch = tf.function(
            self._epoch_fn,
            input_signature=sig_batch + (tf.TensorSpec([], tf.int32),),
            jit_compile=False,
        )
        self._eval = tf.function(self._eval_fn, input_signature=sig_batch)

    def _tensors(self, x: np.ndarray, y: np.ndarray) -> tuple[tf.Tensor, tf.Tensor]:
        return tf.constant(as_float(x)), tf.constant(y.astype(np.int64))

    def _step_fn(self, xb: tf.Tensor, yb: tf.Tensor) -> tf.Tensor:
        variables = self.model.trainable_variables
        with tf.GradientTape() as tape:
            logits = self.model(xb, training=True)
            loss = tf.reduce_mean(tf.nn.sparse_softmax_cross_entropy_with_logits(yb, logits))
        grads = tape.gradient(loss, variables)
        self.optimizer.apply_gradients(zip(grads, variables))
        return loss

    def _epoch_fn(self, xs: tf.Tensor, ys: tf.Tensor, batch_size: tf.Tensor) -> tf.Tensor:
        n = tf.shape(ys)[0]
        n_steps = (n + batch_size - 1) // batch_size
        losses = tf.TensorArray(tf.float32, size=n_steps)
        for k in tf.range(n_steps):
            start = k * batch_size
            end = tf.minimum(n, start + batch_size)
            losses = losses.write(k, self._step_fn(xs[start:end], ys[start:end]))
        return losses.stack()

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
            "mode_detail": "tf.function over a whole epoch" + (" + XLA step" if self.spec["framework"].get("jit_compile") else "")
            if self.spec["mode"] == "compiled" else "tf.function per step, Python loop",
        }

    def train_epoch(self, order: np.ndarray, batch_size: int) -> np.ndarray:
        x, y = self.splits["train"]
        with tf.device(self.device):
            idx = tf.constant(order)
            xs, ys = tf.gather(x, idx), tf.gather(y, idx)
            if self.spec["mode"] == "compiled":
                losses = self._epoch(xs, ys, tf.constant(batch_size, tf.int32))
            else:
                n = len(order)
                out = [self._step(xs[s:s + batch_size], ys[s:s + batch_size]) for s in range(0, n, batch_size)]
                losses = tf.stack(out)
            return losses.numpy().astype(np.float64)  # .numpy() waits for the device

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
        from models.tf_mlp import export_shared

        return export_shared(self.model)

"""The tutorial's Keras loop, kept as the baseline that ``bench.perf`` measures against:
``model.compile`` + ``model.fit`` with Keras' defaults (which include its own tf.function
and, where it can, XLA). Imported only inside a TensorFlow child process.
"""
from __future__ import annotations

import time

import keras
import numpy as np

from models.layers import Model
from models.tf_model import keras_layers


class EpochClock(keras.callbacks.Callback):
    """(wall, process CPU) seconds of each epoch as ``fit`` runs it (fit's set-up before
    epoch 1 left out)."""

    def __init__(self) -> None:
        super().__init__()
        self.times: list[tuple[float, float]] = []

    def on_epoch_begin(self, epoch: int, logs=None) -> None:
        self._t0, self._c0 = time.perf_counter(), time.process_time()

    def on_epoch_end(self, epoch: int, logs=None) -> None:
        # fit has already turned the epoch's logs into Python floats, so the device is done.
        self.times.append((time.perf_counter() - self._t0, time.process_time() - self._c0))


def tutorial_model(model: Model) -> keras.Model:
    """The tutorial's ``Sequential([Flatten(), ...])`` on 28x28 images for any layer list (for the
    MLP: Flatten, Dense(128, relu), Dense(10)), compiled as the tutorial compiles it."""
    net = keras.Sequential([keras.Input(shape=(28, 28)), keras.layers.Flatten(), *keras_layers(model)])
    net.compile(optimizer=keras.optimizers.Adam(learning_rate=1e-3),
                loss=keras.losses.SparseCategoricalCrossentropy(from_logits=True),
                metrics=["accuracy"])
    return net


def epoch_times(images: np.ndarray, labels: np.ndarray, batch_size: int, epochs: int,
                model: Model) -> list[tuple[float, float]]:
    """(wall, process CPU) seconds per epoch of ``model.fit`` (Adam 1e-3); the first epoch (tracing, XLA) is
    run and dropped as the warm-up."""
    keras.utils.set_random_seed(0)
    net = tutorial_model(model)
    clock = EpochClock()
    net.fit(images.astype(np.float32) / 255.0, labels, batch_size=batch_size, epochs=epochs + 1,
              verbose=0, callbacks=[clock])
    return clock.times[1:]

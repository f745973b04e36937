"""The MLP in TensorFlow/Keras. Imported only inside a TensorFlow child process."""
from __future__ import annotations

import keras
import numpy as np

from models.init import LAYERS


def build_mlp() -> keras.Model:
    (d_in, d_hidden), (_, d_out) = LAYERS
    model = keras.Sequential(
        [
            keras.Input(shape=(d_in,)),
            keras.layers.Dense(d_hidden, activation="relu"),
            keras.layers.Dense(d_out),  # logits; the loss applies softmax
        ]
    )
    return model


def load_shared(model: keras.Model, weights: dict[str, np.ndarray]) -> None:
    model.set_weights([weights["w1"], weights["b1"], weights["w2"], weights["b2"]])


def export_shared(model: keras.Model) -> dict[str, np.ndarray]:
    w1, b1, w2, b2 = (np.asarray(w) for w in model.get_weights())
    return {"w1": w1, "b1": b1, "w2": w2, "b2": b2}

"""Any layer list as a Keras ``Sequential``. Imported only inside a TensorFlow child process.

Keras' own layout is the canonical one (NHWC, HWIO conv kernels, [in, out] dense kernels, H, W, C
flattening), so the shared weights load as they are. An activation right after a dense or conv
layer is that layer's ``activation``, as the tutorial writes ``Dense(128, activation="relu")``.
"""
from __future__ import annotations

import keras
import numpy as np

from models.layers import INPUT_SHAPE, Model


def keras_layers(model: Model) -> list[keras.layers.Layer]:
    """The model's layers on flat 784-value rows (an image model reshapes each row first)."""
    out: list[keras.layers.Layer] = [keras.layers.Reshape(INPUT_SHAPE)] if model.image_input else []
    layers = list(model.layers)
    skip = set()
    for i, layer in enumerate(layers):
        if i in skip or (layer.type == "flatten" and not layer.spatial_in):
            continue
        activation = None
        if layer.has_params and i + 1 < len(layers) and layers[i + 1].type in ("relu", "tanh"):
            activation = layers[i + 1].type
            skip.add(i + 1)
        if layer.type == "dense":
            out.append(keras.layers.Dense(layer["units"], activation=activation))
        elif layer.type == "conv2d":
            out.append(keras.layers.Conv2D(layer["filters"], layer["kernel"], strides=layer["stride"],
                                           padding=layer["padding"], activation=activation))
        elif layer.type == "maxpool2d":
            out.append(keras.layers.MaxPooling2D(layer["size"], strides=layer["stride"], padding="valid"))
        elif layer.type == "flatten":
            out.append(keras.layers.Flatten())
        else:
            out.append(keras.layers.Activation(layer.type))
    return out


def build(model: Model) -> keras.Model:
    return keras.Sequential([keras.Input(shape=(int(np.prod(INPUT_SHAPE)),)), *keras_layers(model)])


def _names(count: int) -> list[str]:
    """w1, b1, w2, b2, ...: Keras lists each layer's kernel, then its bias."""
    return [f"{kind}{k}" for k in range(1, count // 2 + 1) for kind in ("w", "b")]


def load_shared(net: keras.Model, weights: dict[str, np.ndarray]) -> None:
    net.set_weights([weights[name] for name in _names(len(weights))])


def export_shared(net: keras.Model) -> dict[str, np.ndarray]:
    values = [np.asarray(w) for w in net.get_weights()]
    return dict(zip(_names(len(values)), values))

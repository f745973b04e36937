"""A model is a list of layers (``conf/model/*.yaml``); this module reads one, framework-neutral.

It checks the list against the input (28×28×1 images, given to every framework as flat rows of
784 floats), works out every layer's output shape, the parameters in their canonical layout and
the FLOPs of one training step per sample. Each framework's builder (``models/torch_model.py``,
``models/tf_model.py``, ``models/jax_model.py``) turns the same :class:`Model` into its own layers;
no model is written per framework.

Canonical layout (what ``models.init`` draws and every runner's ``weights()`` returns):
activations NHWC, dense kernels ``[in, out]``, conv kernels ``HWIO`` (Keras' and JAX's own), and
a ``flatten`` after a conv flattens in H, W, C order. torch computes in NCHW with ``OIHW`` kernels
and flattens in C, H, W order; its builder converts, rows of the first dense layer included.

Imports numpy only (no framework, no YAML library): ``make gpu-check`` reads models on a bare box.
"""
from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, NamedTuple

INPUT_SHAPE = (28, 28, 1)  # H, W, C of every dataset optbench reads
N_CLASSES = 10
DEFAULT_MODEL = "mlp"  # the tutorial's; the only model left out of run_ids

# Layer type -> its keys (required ones without a default) and their defaults.
LAYER_KEYS: dict[str, dict[str, Any]] = {
    "flatten": {},
    "dense": {"units": None},
    "relu": {},
    "tanh": {},
    "conv2d": {"filters": None, "kernel": None, "stride": 1, "padding": "valid"},
    "maxpool2d": {"size": 2, "stride": None},  # stride null = size, as in every framework
}
PADDINGS = ("same", "valid")
ACTIVATIONS = ("relu", "tanh")


class Product(NamedTuple):
    """One matrix product of a training step, ``C[m, n] = A[m, k] @ B[k, n]``, with the layout its
    operands have in memory: ``a_t`` means A is held as a row-major ``[k, m]`` array and read
    transposed, ``b_t`` the same for B. A weight gradient reduces over the batch, the leading
    dimension of both its operands as the forward pass stored them, so its A is always read
    transposed; an input gradient reads the ``[in, out]`` kernel transposed."""

    m: int
    k: int
    n: int
    a_t: bool = False
    b_t: bool = False

    @property
    def flops(self) -> int:
        return 2 * self.m * self.k * self.n


class ModelError(ValueError):
    """A layer list that no framework could build: its message is the one line the user sees."""


@dataclass(frozen=True)
class Layer:
    type: str
    args: Mapping[str, Any] = field(default_factory=dict)
    in_shape: tuple[int, ...] = ()
    out_shape: tuple[int, ...] = ()

    def __getitem__(self, key: str) -> Any:
        return self.args[key]

    @property
    def has_params(self) -> bool:
        return self.type in ("dense", "conv2d")

    @property
    def spatial_in(self) -> bool:
        """Its input is an image (H, W, C), not a flat vector."""
        return len(self.in_shape) == 3


@dataclass(frozen=True)
class Param:
    name: str  # w1, b1, w2, ...: numbered over the layers that have parameters
    shape: tuple[int, ...]  # canonical layout
    fan_in: int
    layer: int  # index of its layer in Model.layers


@dataclass(frozen=True)
class Model:
    name: str
    layers: tuple[Layer, ...]

    @property
    def params(self) -> tuple[Param, ...]:
        out: list[Param] = []
        k = 0
        for i, layer in enumerate(self.layers):
            if not layer.has_params:
                continue
            k += 1
            if layer.type == "dense":
                fan_in, units = layer.in_shape[0], layer["units"]
                kernel = (fan_in, units)
            else:
                size, cin = layer["kernel"], layer.in_shape[2]
                fan_in, units = size * size * cin, layer["filters"]
                kernel = (size, size, cin, units)
            out += [Param(f"w{k}", kernel, fan_in, i), Param(f"b{k}", (units,), fan_in, i)]
        return tuple(out)

    @property
    def param_names(self) -> tuple[str, ...]:
        return tuple(p.name for p in self.params)

    @property
    def n_params(self) -> int:
        return sum(math.prod(p.shape) for p in self.params)

    @property
    def image_input(self) -> bool:
        """The first layer that does something needs the 28×28×1 image, not the flat row."""
        return any(layer.type in ("conv2d", "maxpool2d") for layer in self._before_first_flatten())

    def _before_first_flatten(self) -> list[Layer]:
        out = []
        for layer in self.layers:
            if layer.type == "flatten":
                break
            out.append(layer)
        return out

    def flatten_after_image(self) -> set[int]:
        """Indices of the dense layers right after a flatten of an image whose C > 1: their
        kernel rows are in H, W, C order, which torch's NCHW flatten does not share."""
        out: set[int] = set()
        for i, layer in enumerate(self.layers):
            if layer.type == "flatten" and layer.spatial_in and layer.in_shape[2] > 1:
                nxt = next((j for j in range(i + 1, len(self.layers)) if self.layers[j].has_params), None)
                if nxt is not None:
                    out.add(nxt)
        return out

    def flops_per_sample(self) -> int:
        """FLOPs of one training step per sample: 2 × the multiply-adds of the forward pass, of the
        weight gradients, and of the input gradients of every layer with parameters but the first
        (nothing needs the gradient of the input). Biases, activations and pooling are left out:
        they are a few per cent of the multiply-adds and no matmul unit runs them.
        """
        return sum(self.step_flops())

    def step_flops(self) -> list[int]:
        """:meth:`flops_per_sample` layer by layer: one entry per layer (0 for a layer without
        parameters), 2 FLOPs per multiply-add of its products (:meth:`gemms`)."""
        return [sum(p.flops for p in products) for products in self.gemms(1)]

    def gemms(self, batch: int) -> list[list[Product]]:
        """Each layer's step as matrix products, one list per layer (empty without parameters):
        the forward, the weight gradient and, but for the first layer with parameters, the input
        gradient, a convolution written as its im2col product, each in the layout the canonical
        weights give it (:class:`Product`). ``bench.perf`` times each product with the machine's
        own GEMM for a floor that knows the shapes."""
        first = self._first_with_params()
        out: list[list[tuple[int, int, int]]] = []
        for i, layer in enumerate(self.layers):
            if not layer.has_params:
                out.append([])
                continue
            if layer.type == "dense":
                rows, inner, cols = batch, layer.in_shape[0], layer["units"]
            else:
                h, w, c = layer.out_shape
                rows, inner, cols = batch * h * w, layer["kernel"] ** 2 * layer.in_shape[2], c
            mine = [Product(rows, inner, cols), Product(inner, rows, cols, a_t=True)]  # forward; weight gradient
            out.append(mine + ([Product(rows, cols, inner, b_t=True)] if i > first else []))  # input gradient
        return out

    def _first_with_params(self) -> int:
        """The index of the first layer with parameters (the list's length if none has any)."""
        return next((i for i, layer in enumerate(self.layers) if layer.has_params), len(self.layers))

    def blocks(self) -> list[tuple[int, int]]:
        """The layer list cut into blocks, ``(start, end)`` slices of :attr:`layers`: one layer each,
        but the first block runs up to the first layer with parameters (before it nothing has a
        gradient to take). ``bench.perf layers=true`` times a step block by block."""
        first = min(self._first_with_params(), len(self.layers) - 1)
        return [(0, first + 1)] + [(i, i + 1) for i in range(first + 1, len(self.layers))]

    def prefix(self, end: int) -> Model:
        """The model cut after its first ``end`` layers (its output need not be the logits)."""
        return Model(self.name, self.layers[:end])

    def activation_floats(self) -> int:
        """Floats one sample's forward pass holds: its input and every layer's output (what the
        backward pass may keep), the floor behind ``bench.memory.floor_bytes``."""
        if not self.layers:
            return 0
        return math.prod(self.layers[0].in_shape) + sum(math.prod(layer.out_shape) for layer in self.layers)

    def describe(self) -> str:
        """One line: ``conv2d 6@5x5 same → relu → … → dense 10``."""
        return " → ".join(_label(layer) for layer in self.layers)

    def as_config(self) -> dict[str, Any]:
        """The JSON-able form that goes into a run's spec (and back through :func:`parse_model`)."""
        return {"name": self.name, "layers": [{"type": lay.type, **lay.args} for lay in self.layers]}


def _label(layer: Layer) -> str:
    if layer.type == "dense":
        return f"dense {layer['units']}"
    if layer.type == "conv2d":
        stride = f"/{layer['stride']}" if layer["stride"] != 1 else ""
        return f"conv2d {layer['filters']}@{layer['kernel']}x{layer['kernel']}{stride} {layer['padding']}"
    if layer.type == "maxpool2d":
        return f"maxpool2d {layer['size']}" + (f"/{layer['stride']}" if layer["stride"] != layer["size"] else "")
    return layer.type


def _int_key(where: str, key: str, value: Any) -> int:
    if isinstance(value, bool) or not isinstance(value, int) or value < 1:
        raise ModelError(f"{where}: {key} must be an integer >= 1, got {value!r}")
    return value


def _layer_args(where: str, kind: str, given: Mapping[str, Any]) -> dict[str, Any]:
    keys = LAYER_KEYS[kind]
    unknown = sorted(set(given) - set(keys))
    if unknown:
        allowed = ", ".join(keys) or "no keys"
        raise ModelError(f"{where}: {kind} takes {allowed}; unknown key {unknown[0]!r}")
    args = {key: given.get(key, default) for key, default in keys.items()}
    missing = [key for key, default in keys.items() if default is None and given.get(key) is None
               and not (kind == "maxpool2d" and key == "stride")]
    if missing:
        raise ModelError(f"{where}: {kind} needs {missing[0]}")
    for key in ("units", "filters", "kernel", "stride", "size"):
        if key in args and args[key] is not None:
            args[key] = _int_key(where, key, args[key])
    if kind == "maxpool2d" and args["stride"] is None:
        args["stride"] = args["size"]
    if kind == "conv2d" and args["padding"] not in PADDINGS:
        raise ModelError(f"{where}: padding must be one of {', '.join(PADDINGS)}, got {args['padding']!r}")
    return args


def _out_shape(where: str, kind: str, args: Mapping[str, Any], shape: tuple[int, ...]) -> tuple[int, ...]:
    if kind in ACTIVATIONS:
        return shape
    if kind == "flatten":
        return (math.prod(shape),)
    if kind == "dense":
        if len(shape) != 1:
            raise ModelError(f"{where}: dense needs a flat input, got {'x'.join(map(str, shape))}; "
                             "put a flatten before it")
        return (args["units"],)
    if len(shape) != 3:
        raise ModelError(f"{where}: {kind} needs an image input (H x W x C), got a flat vector of {shape[0]}")
    h, w, c = shape
    if kind == "conv2d":
        k, s = args["kernel"], args["stride"]
        if args["padding"] == "same":
            if s != 1:  # frameworks pad stride-2 'same' convolutions differently (torch refuses them)
                raise ModelError(f"{where}: padding same needs stride 1, got stride {s}")
            return (h, w, args["filters"])
        if k > h or k > w:
            raise ModelError(f"{where}: a {k}x{k} kernel does not fit a {h}x{w} input")
        return ((h - k) // s + 1, (w - k) // s + 1, args["filters"])
    size, s = args["size"], args["stride"]
    if size > h or size > w:
        raise ModelError(f"{where}: a {size}x{size} pool does not fit a {h}x{w} input")
    return ((h - size) // s + 1, (w - size) // s + 1, c)


def parse_model(config: Mapping[str, Any], input_shape: tuple[int, int, int] = INPUT_SHAPE) -> Model:
    """The :class:`Model` of a ``conf/model`` entry (``{"name", "layers": [{"type": ...}, ...]}``).

    Raises :class:`ModelError` with one line for a layer type no builder has, a missing or unknown
    key, or a shape that does not fit; the last layer must be a dense layer of 10 units (the logits).
    """
    name = str(config.get("name") or "model")
    layers = config.get("layers")
    if not isinstance(layers, Sequence) or isinstance(layers, str) or not layers:
        raise ModelError(f"model {name}: layers must be a non-empty list of {{type: ...}} entries")
    shape: tuple[int, ...] = tuple(input_shape)
    built: list[Layer] = []
    for i, entry in enumerate(layers, start=1):
        where = f"model {name}, layer {i}"
        if not isinstance(entry, Mapping) or "type" not in entry:
            raise ModelError(f"{where}: expected a mapping with a type, got {entry!r}")
        kind = entry["type"]
        if kind not in LAYER_KEYS:
            raise ModelError(f"{where}: layer type {kind!r} is not supported; use one of {', '.join(LAYER_KEYS)}")
        args = _layer_args(where, kind, {k: v for k, v in entry.items() if k != "type"})
        out = _out_shape(where, kind, args, shape)
        built.append(Layer(kind, args, shape, out))
        shape = out
    last = built[-1]
    if last.type != "dense" or last.out_shape != (N_CLASSES,):
        raise ModelError(f"model {name}: the last layer must be dense with units {N_CLASSES} (the logits), "
                         f"got {_label(last)}")
    return Model(name, tuple(built))


def parse_flow_list(lines: Sequence[str]) -> list[dict[str, Any]]:
    """``- {type: dense, units: 128}`` lines (the conf files' layer lists) as dicts, without a YAML
    library; ``parse_scalar`` reads each value."""
    from bench.spec import parse_scalar

    out = []
    for line in lines:
        text = line.split(" #", 1)[0].strip()
        if not text:
            continue
        if not (text.startswith("- {") and text.endswith("}")):
            raise ModelError(f"cannot read layer line {line.strip()!r}: "
                             "write each layer as - {type: ..., key: value}")
        entry = {}
        for part in text[3:-1].split(","):
            key, colon, value = part.partition(":")
            if not colon:
                raise ModelError(f"cannot read {part.strip()!r} in layer line {line.strip()!r}")
            entry[key.strip()] = parse_scalar(value)
        out.append(entry)
    return out

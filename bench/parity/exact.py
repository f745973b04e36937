"""Exact arithmetic for ``bench.parity``: any model of ``conf/model`` trained in float64 numpy, step for step.

The yardstick for float32 rounding: the same start, the same batches and the update rule a
framework is meant to compute (``bench.optimizers.computed_rule``), without rounding.

Every layer type of ``models.layers`` has its forward and backward pass written here by hand, in
numpy only, in the canonical layout (activations NHWC, dense kernels ``[in, out]``, conv kernels
HWIO, ``flatten`` in H, W, C order); the loss is the mean softmax cross-entropy of the logits.
No framework is imported, so the reference depends on none of the frameworks it judges, and the
update is the rule written once in ``bench.optimizers``, called in float64.

Conventions the frameworks share, followed here:

* ReLU passes no gradient at 0 (the mask is ``h > 0``).
* ``same`` padding (stride 1 only) pads ``(k − 1) // 2`` before and the rest after, as
  TensorFlow's and XLA's ``SAME`` do for odd and even kernels.
* Max pooling sends the gradient to the window's maximum; among equal maxima, to the first in
  row-major (row, then column) order, as torch does on the CPU. XLA's and TensorFlow's kernels
  may pick another of the tied elements. On MNIST ties do happen (the background is exact zeros,
  so a conv over it gives its bias in every position), but the tied elements then have identical
  inputs, and moving the gradient between them changes no parameter's gradient beyond float64
  rounding (``tests/test_exact.py`` checks it on LeNet-5 with the last maximum instead).

Conv layers are computed im2col-style (``sliding_window_view``, one matmul per layer); batches
that would need more than ``CHUNK_BYTES`` of work arrays are run in chunks whose gradients are
summed (a dense-only model's batch is never split, so its arithmetic is that of one matmul).
"""
from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np
from numpy.lib.stride_tricks import sliding_window_view

from bench.optimizers import NumpyStep, get_rule
from models.layers import Layer, Model

# Work arrays of one forward + backward pass of a model with conv or pooling layers, at most: batches
# beyond are cut in chunks. Chunks that stay in the CPU's caches run faster (lenet5, batch 4,000, one
# thread, a busy 2-core machine: about 2 s a step at 16 to 64 MiB, 2.4 s or more at 256 MiB, 4 s or
# more at 2 MiB, where the per-chunk overhead dominates).
CHUNK_BYTES = 32 * 2**20
TIES = ("first", "last")  # max pooling among equal maxima: torch's choice, or the other end (tests)


# ---------------------------------------------------------------- layers, forward and backward
def pads(layer: Layer) -> tuple[int, int]:
    """(before, after) zero rows/columns of a conv layer's input."""
    if layer["padding"] == "valid":
        return 0, 0
    k = layer["kernel"]
    return (k - 1) // 2, k - 1 - (k - 1) // 2


def _windows(x: np.ndarray, size: int, stride: int) -> np.ndarray:
    """[N, Ho, Wo, C, size, size] views of ``x`` [N, H, W, C] (no copy)."""
    return sliding_window_view(x, (size, size), axis=(1, 2))[:, ::stride, ::stride]


def conv2d_forward(x: np.ndarray, w: np.ndarray, b: np.ndarray, stride: int = 1,
                   pad: tuple[int, int] = (0, 0)) -> tuple[np.ndarray, np.ndarray]:
    """Cross-correlation of ``x`` [N, H, W, C] with the HWIO kernel ``w``, plus ``b``: (out NHWC, columns).

    The columns ([N·Ho·Wo, kh·kw·C], in the kernel's H, W, I order) are what the backward pass needs.
    """
    lo, hi = pad
    if lo or hi:
        x = np.pad(x, ((0, 0), (lo, hi), (lo, hi), (0, 0)))
    kh, kw, cin, cout = w.shape
    win = _windows(x, kh, stride)
    n, ho, wo = win.shape[:3]
    cols = win.transpose(0, 1, 2, 4, 5, 3).reshape(n * ho * wo, kh * kw * cin)
    out = cols @ w.reshape(kh * kw * cin, cout)
    out += b
    return out.reshape(n, ho, wo, cout), cols


def conv2d_backward(d: np.ndarray, cols: np.ndarray, w: np.ndarray, in_shape: tuple[int, ...], stride: int,
                    pad: tuple[int, int], need_dx: bool) -> tuple[np.ndarray, np.ndarray, np.ndarray | None]:
    """(dw, db, dx) of :func:`conv2d_forward` for the output gradient ``d``; dx None unless ``need_dx``."""
    kh, kw, cin, cout = w.shape
    n, ho, wo, _ = d.shape
    flat = d.reshape(-1, cout)
    dw = (cols.T @ flat).reshape(w.shape)
    db = np.ones(len(flat)) @ flat  # the sum over positions, as a matmul: several times faster than .sum(0)
    if not need_dx:
        return dw, db, None
    lo, hi = pad
    h, wd, _ = in_shape
    # Each kernel offset's share of the input gradient, [kh·kw, N·Ho·Wo, C], contiguous per offset...
    dcols = np.matmul(flat, w.reshape(kh * kw, cin, cout).transpose(0, 2, 1))
    dxp = np.zeros((n, h + lo + hi, wd + lo + hi, cin))
    for i in range(kh):  # ...added back where that offset read the input (col2im)
        for j in range(kw):
            part = dcols[i * kw + j].reshape(n, ho, wo, cin)
            if stride == 1:  # rows of W·C contiguous numbers: a few long runs instead of many of C
                dxp.reshape(n, h + lo + hi, -1)[:, i:i + ho, j * cin:(j + wo) * cin] += part.reshape(n, ho, -1)
            else:
                dxp[:, i:i + stride * (ho - 1) + 1:stride, j:j + stride * (wo - 1) + 1:stride] += part
    return dw, db, dxp[:, lo:lo + h, lo:lo + wd]


def maxpool2d_forward(x: np.ndarray, size: int, stride: int, ties: str = "first") -> tuple[np.ndarray, np.ndarray]:
    """(out, argmax) of max pooling ``x`` [N, H, W, C] ('valid', no padding); argmax indexes the
    window row-major, the first of equal maxima (``ties="last"``: the last)."""
    win = _windows(x, size, stride)
    flat = win.reshape(*win.shape[:4], size * size)
    if ties == "first":
        arg = flat.argmax(axis=-1)
    else:
        arg = size * size - 1 - flat[..., ::-1].argmax(axis=-1)
    return np.take_along_axis(flat, arg[..., None], axis=-1)[..., 0], arg


def maxpool2d_backward(d: np.ndarray, arg: np.ndarray, in_shape: tuple[int, ...], size: int,
                       stride: int) -> np.ndarray:
    """The input gradient of max pooling: each window's gradient to its chosen maximum (summed
    where windows overlap)."""
    n, ho, wo, _ = d.shape
    dx = np.zeros((n, *in_shape))
    for k in range(size * size):
        i, j = divmod(k, size)
        dx[:, i:i + stride * (ho - 1) + 1:stride, j:j + stride * (wo - 1) + 1:stride] += np.where(arg == k, d, 0.0)
    return dx


def _work_bytes(model: Model) -> int:
    """float64 bytes of one sample's work arrays in a forward and backward pass (an upper bound)."""
    total = 0
    for layer in model.layers:
        total += 2 * int(np.prod(layer.out_shape))
        if layer.type == "conv2d":
            ho, wo, _ = layer.out_shape
            total += 2 * ho * wo * layer["kernel"] ** 2 * layer.in_shape[2]  # columns and their gradient
        elif layer.type == "maxpool2d":
            total += int(np.prod(layer.out_shape)) * layer["size"] ** 2 + int(np.prod(layer.in_shape))
    return 8 * total


def _param_names(model: Model) -> dict[int, tuple[str, str]]:
    """Layer index -> (kernel name, bias name) for the layers that have parameters."""
    names: dict[int, list[str]] = {}
    for p in model.params:
        names.setdefault(p.layer, []).append(p.name)
    return {i: (ws[0], ws[1]) for i, ws in names.items()}


def _forward(model: Model, params: Mapping[str, np.ndarray], x: np.ndarray, ties: str,
             kinks: list[tuple[int, np.ndarray, np.ndarray]] | None = None) -> tuple[np.ndarray, list[Any]]:
    """The logits of ``x`` [n, H, W, C] and what each layer's backward step needs. With ``kinks`` a
    list, each decision the pass takes is appended to it as ``(layer index, choice, margin)``: a
    ReLU's ``input > 0`` and the input itself, a max pool's choice in each window and its lead over
    the runner-up."""
    names = _param_names(model)
    a = x
    caches: list[Any] = []
    for i, layer in enumerate(model.layers):  # forward, keeping what each backward step needs
        kind = layer.type
        if kind == "dense":
            w, b = (params[k] for k in names[i])
            caches.append(a)
            a = a @ w + b
        elif kind == "relu":
            caches.append(a > 0)  # no gradient at 0
            if kinks is not None:
                kinks.append((i, caches[-1], a))
            a = np.maximum(a, 0.0)
        elif kind == "tanh":
            a = np.tanh(a)
            caches.append(a)
        elif kind == "flatten":
            caches.append(None)
            a = a.reshape(len(a), -1)  # NHWC: H, W, C order
        elif kind == "conv2d":
            w, b = (params[k] for k in names[i])
            a, cols = conv2d_forward(a, w, b, layer["stride"], pads(layer))
            caches.append(cols)
        elif kind == "maxpool2d":
            if kinks is not None:
                win = _windows(a, layer["size"], layer["stride"])
                top = np.sort(win.reshape(*win.shape[:4], -1), axis=-1)
            a, arg = maxpool2d_forward(a, layer["size"], layer["stride"], ties)
            caches.append(arg)
            if kinks is not None:
                kinks.append((i, arg, top[..., -1] - top[..., -2]))
        else:
            raise ValueError(f"layer type {kind!r} has no float64 reference")
    return a, caches


def _pass(model: Model, params: Mapping[str, np.ndarray], x: np.ndarray, y: np.ndarray, n_total: int,
          ties: str) -> tuple[float, dict[str, np.ndarray]]:
    """Summed loss / n_total and the gradients of that, for one chunk ``x`` [n, H, W, C] of the batch."""
    names = _param_names(model)
    a, caches = _forward(model, params, x, ties)
    # Mean softmax cross-entropy of the logits, and its gradient, over the whole batch (n_total).
    z = a
    zmax = z.max(axis=1, keepdims=True)
    e = np.exp(z - zmax)
    total = e.sum(axis=1, keepdims=True)
    rows = np.arange(len(y))
    loss = float(np.sum(np.log(total[:, 0]) + zmax[:, 0] - z[rows, y])) / n_total
    d = e / total
    d[rows, y] -= 1.0
    d /= n_total
    grads: dict[str, np.ndarray] = {}
    first = next(i for i, layer in enumerate(model.layers) if layer.has_params)
    for i in range(len(model.layers) - 1, first - 1, -1):  # nothing needs the input's gradient
        layer, cache = model.layers[i], caches[i]
        kind = layer.type
        if kind == "dense":
            wname, bname = names[i]
            grads[wname], grads[bname] = cache.T @ d, d.sum(axis=0)
            if i > first:
                d = d @ params[wname].T
        elif kind == "relu":
            d = d * cache
        elif kind == "tanh":
            d = d * (1.0 - cache * cache)
        elif kind == "flatten":
            d = d.reshape(len(d), *layer.in_shape)
        elif kind == "conv2d":
            wname, bname = names[i]
            grads[wname], grads[bname], d = conv2d_backward(
                d, cache, params[wname], layer.in_shape, layer["stride"], pads(layer), need_dx=i > first)
        else:
            d = maxpool2d_backward(d, cache, layer.in_shape, layer["size"], layer["stride"])
    return loss, grads


def _chunk(model: Model, n: int, chunk_bytes: int = CHUNK_BYTES) -> int:
    """Samples per pass of a batch of ``n``: as many as keep a conv or pooling model's work arrays
    within ``chunk_bytes``; a dense-only batch is never cut (its arithmetic stays one matmul's)."""
    image = any(layer.type in ("conv2d", "maxpool2d") for layer in model.layers)
    return max(1, chunk_bytes // _work_bytes(model)) if image else n


def loss_and_grads(model: Model, params: Mapping[str, np.ndarray], x: np.ndarray, y: np.ndarray,
                   ties: str = "first", chunk_bytes: int = CHUNK_BYTES) -> tuple[float, dict[str, np.ndarray]]:
    """Mean softmax cross-entropy of ``model`` on ``x`` (flat rows of the input, or images) and
    labels ``y``, and its gradient for every parameter, by hand (float64 if the inputs are).

    A batch of a model with conv or pooling layers whose work arrays exceed ``chunk_bytes`` is run
    in chunks and their gradients summed; a dense-only model's batch is one pass.
    """
    if ties not in TIES:
        raise ValueError(f"ties must be one of {', '.join(TIES)}, got {ties!r}")
    x = x.reshape(len(x), *model.layers[0].in_shape)
    y = np.asarray(y)
    n = len(x)
    chunk = _chunk(model, n, chunk_bytes)
    if n <= chunk:
        return _pass(model, params, x, y, n, ties)
    loss, grads = 0.0, {}
    for s in range(0, n, chunk):
        part_loss, part = _pass(model, params, x[s:s + chunk], y[s:s + chunk], n, ties)
        loss += part_loss
        grads = part if not grads else {k: grads[k] + part[k] for k in grads}
    return loss, grads


def float64_trajectory(start: Mapping[str, np.ndarray], x: np.ndarray, y: np.ndarray,
                       batches: Sequence[np.ndarray], rule: str, hp: Mapping[str, Any], save: Sequence[int],
                       model: Model) -> dict[str, np.ndarray]:
    """Train ``model`` in float64 numpy on ``batches``; parameters at the steps in ``save`` (0 = start).

    ``rule`` is the update rule the framework under test computes (``computed_rule(method's rule,
    framework, impl)``); each step calls it, as written once in ``bench.optimizers``, in float64.
    ``x`` are the float32 pixels the frameworks see ([N, 784] rows), ``hp`` holds at least the rule's
    hyperparameters. Returns name -> [1 + number of saved steps >= 1, *shape]: the start, then the
    parameters after each saved step in order, stacked as the parity workers save them.
    """
    update = get_rule(rule)
    hp = {k: float(hp[k]) for k in update.hparams}
    names = model.param_names
    theta = {name: np.array(start[name], np.float64) for name in names}
    state = {name: {slot: np.zeros_like(theta[name]) for slot in update.slots} for name in names}
    snaps = {name: [theta[name]] for name in names}
    wanted = set(save)
    for t, idx in enumerate(batches, 1):
        _, grads = loss_and_grads(model, theta, x[idx].astype(np.float64), y[idx])
        step = NumpyStep(t)
        for name in names:
            delta, state[name] = update.update(theta[name], grads[name], state[name], step, hp)
            theta[name] = theta[name] - delta
        if t in wanted:
            for name in names:
                snaps[name].append(theta[name])
    return {name: np.stack(ws) for name, ws in snaps.items()}


def first_kink(model: Model, run: Mapping[str, np.ndarray], ref: Mapping[str, np.ndarray], saved: Sequence[int],
               x: np.ndarray, batches: Sequence[np.ndarray]) -> dict[str, Any] | None:
    """The first step whose forward pass the parameters of ``run`` and of ``ref`` (each stacked as the
    parity workers save them, at the steps in ``saved``) decide differently, both evaluated in float64
    on that step's batch: a ReLU input on the other side of 0, or a max pool choosing another element.
    Rounding can tip such a decision when the two runs are within rounding of each other, and the
    steps after it then part for a reason no arithmetic can remove. ``None`` if none differs.

    Returns the step, the layer's index, how many decisions differ, for the one closest to its kink
    in ``ref`` its margin from each side's parameters (the ReLU input; the max's lead over the
    runner-up), and the layer's scale (the largest margin there from ``ref``'s parameters)."""
    index = {step: i for i, step in enumerate(saved)}
    names = model.param_names
    for t, idx in enumerate(batches, 1):
        if t - 1 not in index:
            continue
        xb = x[idx].astype(np.float64).reshape(len(idx), *model.layers[0].in_shape)
        chunk = _chunk(model, len(xb))
        sides = []
        for params in (run, ref):
            at = {name: np.asarray(params[name][index[t - 1]], np.float64) for name in names}
            parts: list[list[tuple[int, np.ndarray, np.ndarray]]] = []
            for s in range(0, len(xb), chunk):
                parts.append([])
                _forward(model, at, xb[s:s + chunk], "first", parts[-1])
            sides.append([(i, np.concatenate([p[k][1] for p in parts]), np.concatenate([p[k][2] for p in parts]))
                          for k, (i, _, _) in enumerate(parts[0])])
        for (layer, mine, mine_margin), (_, theirs, their_margin) in zip(*sides):
            differ = mine != theirs
            if differ.any():
                closest = np.unravel_index(np.argmin(np.where(differ, np.abs(their_margin), np.inf)), differ.shape)
                return {"step": t, "layer": layer, "count": int(differ.sum()),
                        "margin_ref": float(their_margin[closest]), "margin_run": float(mine_margin[closest]),
                        "scale": float(np.max(np.abs(their_margin)))}
    return None

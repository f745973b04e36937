"""Any layer list as a ``torch.nn.Sequential``. Imported only inside a torch child process.

torch computes in NCHW with OIHW conv kernels and flattens in C, H, W order; the canonical layout
(``models.layers``) is NHWC with HWIO kernels and H, W, C flattening. So on load and export the conv
kernels are transposed, dense kernels transposed ([out, in] here), and the rows of a dense layer
that follows the flatten of a many-channel image permuted: without that permutation the frameworks
would compute different functions from the "same" weights.
"""
from __future__ import annotations

import numpy as np
import torch
from torch import nn

from models.layers import INPUT_SHAPE, Model


def _module(layer) -> nn.Module:
    if layer.type == "dense":
        return nn.Linear(layer.in_shape[0], layer["units"])
    if layer.type == "conv2d":
        padding = "same" if layer["padding"] == "same" else 0
        return nn.Conv2d(layer.in_shape[2], layer["filters"], layer["kernel"], stride=layer["stride"], padding=padding)
    if layer.type == "maxpool2d":
        return nn.MaxPool2d(layer["size"], stride=layer["stride"])
    return {"relu": nn.ReLU, "tanh": nn.Tanh, "flatten": nn.Flatten}[layer.type]()


class ChannelsLast(nn.Module):
    """Lays the image out channels-last in memory (NHWC), its shape and every index still NCHW: the
    memory format oneDNN's CPU convolutions run fastest in, as PyTorch's performance guide advises for
    a CNN (LeNet-5's harness epoch at batch 32: 6–13 % less time than NCHW on one core; docs/PERFORMANCE.md)."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x.contiguous(memory_format=torch.channels_last)


def build(model: Model) -> nn.Sequential:
    """The model on flat 784-value rows, as the runners keep the data; an image model first views
    each row as its 1x28x28 image (one channel: NCHW and NHWC rows are the same numbers). A model
    with convolutions keeps its images and conv kernels channels-last in memory (:class:`ChannelsLast`)."""
    h, w, c = INPUT_SHAPE
    convolved = any(layer.type == "conv2d" for layer in model.layers)
    modules: list[nn.Module] = [nn.Unflatten(1, (c, h, w))] if model.image_input else []
    modules += [ChannelsLast()] if convolved else []
    for layer in model.layers:
        if layer.type == "flatten" and not layer.spatial_in:
            continue  # already flat: the tutorial's MLP stays Linear, ReLU, Linear
        modules.append(_module(layer))
    net = nn.Sequential(*modules)
    if convolved:
        net = net.to(memory_format=torch.channels_last)  # the conv kernels; copy_ keeps their layout on load
    net.optbench_model = model  # what load_shared / export_shared convert with
    return net


def _param_modules(net: nn.Sequential) -> list[nn.Module]:
    return [m for m in net if isinstance(m, (nn.Linear, nn.Conv2d))]


def _row_order(layer) -> np.ndarray:
    """For the flatten of an H x W x C image: torch's C, H, W position -> the canonical H, W, C row."""
    h, w, c = layer.in_shape
    return np.arange(h * w * c).reshape(h, w, c).transpose(2, 0, 1).ravel()


def _permuted_rows(model: Model) -> dict[int, np.ndarray]:
    """Param-layer index (w1 = 0) -> row order, for the dense layers after an image flatten."""
    param_layers = [i for i, layer in enumerate(model.layers) if layer.has_params]
    out = {}
    for i in model.flatten_after_image():
        flat = max(j for j in range(i) if model.layers[j].type == "flatten")
        out[param_layers.index(i)] = _row_order(model.layers[flat])
    return out


def load_shared(net: nn.Sequential, weights: dict[str, np.ndarray]) -> None:
    """Load canonical weights (``models.init``) into ``net``."""
    perms = _permuted_rows(net.optbench_model)
    with torch.no_grad():
        for k, module in enumerate(_param_modules(net)):
            kernel = weights[f"w{k + 1}"]
            if isinstance(module, nn.Conv2d):
                kernel = kernel.transpose(3, 2, 0, 1)  # HWIO -> OIHW
            else:
                kernel = (kernel[perms[k]] if k in perms else kernel).T  # [in, out] -> [out, in]
            module.weight.copy_(torch.from_numpy(np.ascontiguousarray(kernel)))
            module.bias.copy_(torch.from_numpy(weights[f"b{k + 1}"]))


def export_shared(net: nn.Sequential) -> dict[str, np.ndarray]:
    """The parameters in the canonical layout, as numpy copies."""
    perms = _permuted_rows(net.optbench_model)
    out = {}
    for k, module in enumerate(_param_modules(net)):
        weight = module.weight.detach().cpu().numpy()
        if isinstance(module, nn.Conv2d):
            kernel = weight.transpose(2, 3, 1, 0)  # OIHW -> HWIO
        else:
            kernel = weight.T
            if k in perms:
                canonical = np.empty_like(kernel)
                canonical[perms[k]] = kernel
                kernel = canonical
        out[f"w{k + 1}"] = np.ascontiguousarray(kernel)
        out[f"b{k + 1}"] = module.bias.detach().cpu().numpy().copy()
    return out

"""One forward and backward pass of a layer list, for ``bench.perf layers=true`` (torch child only).

The same module tree, layout (channels-last for a CNN), threads and determinism as the runner; the
pass is autograd's ``backward`` of ``sum(output * g)`` for a fixed random ``g``: every weight
gradient and every input gradient but the model's own input, as in a training step; a model with
no layers is one scalar weight (what every pass pays). In
``mode=compiled`` the pass is one ``torch.compile`` graph, as the runner's forward and backward.
"""
from __future__ import annotations

from collections.abc import Callable
from typing import Any

import torch

from models import torch_model
from models.layers import INPUT_SHAPE, Model


class _Scale(torch.nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.s = torch.nn.Parameter(torch.ones(()))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x * self.s


def prefix_pass(spec: dict[str, Any], model: Model, batch: int) -> Callable[[], None]:
    torch.set_num_threads(int(spec["threads"]))
    if spec["deterministic"]:
        torch.use_deterministic_algorithms(True, warn_only=True)
    device = torch.device("cuda" if spec["device"] == "cuda" else "cpu")
    dtype = torch.float64 if spec["precision"] == "fp64" else torch.float32
    torch.manual_seed(spec["seed"])
    # no layers: a single scalar weight, so that the pass still has a gradient to take and times
    # what every pass pays (autograd's graph, backward's engine, the call) and nothing else
    net = (torch_model.build(model) if model.layers else _Scale()).to(device, dtype)
    x = torch.randn(batch, INPUT_SHAPE[0] * INPUT_SHAPE[1] * INPUT_SHAPE[2], device=device, dtype=dtype)
    g = torch.randn_like(net(x))
    params = list(net.parameters())

    def forward_backward() -> torch.Tensor:
        value = (net(x) * g).sum()
        value.backward()
        return value.detach()  # kept, as the training step keeps its loss: no forward is left out

    if spec["mode"] == "compiled":
        forward_backward = torch.compile(forward_backward, dynamic=False)

    def one_pass() -> None:
        for p in params:
            p.grad = None
        forward_backward()
        if device.type == "cuda":
            torch.cuda.synchronize()

    return one_pass

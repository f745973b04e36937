"""The MLP in PyTorch. Imported only inside a torch child process."""
from __future__ import annotations

import numpy as np
import torch
from torch import nn

from models.init import LAYERS


class MLP(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        (d_in, d_hidden), (_, d_out) = LAYERS
        self.fc1 = nn.Linear(d_in, d_hidden)
        self.fc2 = nn.Linear(d_hidden, d_out)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.fc2(torch.relu(self.fc1(x)))

    def load_shared(self, weights: dict[str, np.ndarray]) -> None:
        """Load canonical [in, out] weights (torch keeps [out, in])."""
        with torch.no_grad():
            for i, layer in ((1, self.fc1), (2, self.fc2)):
                layer.weight.copy_(torch.from_numpy(weights[f"w{i}"].T.copy()))
                layer.bias.copy_(torch.from_numpy(weights[f"b{i}"]))

    def export_shared(self) -> dict[str, np.ndarray]:
        out = {}
        for i, layer in ((1, self.fc1), (2, self.fc2)):
            out[f"w{i}"] = layer.weight.detach().cpu().numpy().T.copy()
            out[f"b{i}"] = layer.bias.detach().cpu().numpy().copy()
        return out

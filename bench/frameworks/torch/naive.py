"""The tutorial's PyTorch loop, kept as the baseline that ``bench.perf`` measures against.

Written the way the tutorial (and most MNIST examples) write it: a map-style dataset that
hands out one PIL image at a time, torchvision's ``ToTensor`` + ``Normalize`` per sample,
a ``DataLoader`` that collates batches, then ``zero_grad / forward / backward / step``.
Imported only inside a torch child process.
"""
from __future__ import annotations

import time

import numpy as np
import torch
from PIL import Image
from torch import nn
from torch.utils.data import DataLoader, Dataset
from torchvision import transforms

from models import torch_model
from models.layers import Model

MNIST_MEAN, MNIST_STD = 0.1307, 0.3081  # the tutorial's Normalize constants


class ImageArrayDataset(Dataset):
    """Like ``torchvision.datasets.MNIST``: uint8 arrays in, a transformed PIL image out
    (a 2-D uint8 array becomes a mode "L" image, as torchvision's MNIST makes it)."""

    def __init__(self, images: np.ndarray, labels: np.ndarray) -> None:
        self.images, self.labels = images, labels
        self.transform = transforms.Compose([transforms.ToTensor(), transforms.Normalize((MNIST_MEAN,), (MNIST_STD,))])

    def __len__(self) -> int:
        return len(self.labels)

    def __getitem__(self, i: int) -> tuple[torch.Tensor, int]:
        return self.transform(Image.fromarray(self.images[i])), int(self.labels[i])


def tutorial_model(model: Model) -> nn.Module:
    """The tutorial's ``nn.Sequential(nn.Flatten(), ...)`` for any layer list (for the MLP:
    Flatten, Linear(784, 128), ReLU, Linear(128, 10), as the tutorial writes it)."""
    return nn.Sequential(nn.Flatten(), *torch_model.build(model))


def epoch_times(images: np.ndarray, labels: np.ndarray, batch_size: int, epochs: int, model: Model,
                device: str = "cpu", warmup_steps: int = 20) -> list[tuple[float, float]]:
    """(wall, process CPU) seconds per epoch of the tutorial's loop (Adam 1e-3) after a short warm-up.

    Nothing here compiles, so a few warm-up steps (allocator, oneDNN/cuBLAS handles) are
    enough; the clock is read after the device is synchronised.
    """
    torch.manual_seed(0)
    dev = torch.device(device)
    net = tutorial_model(model).to(dev)
    criterion = nn.CrossEntropyLoss()
    optimizer = torch.optim.Adam(net.parameters(), lr=1e-3)
    loader = DataLoader(ImageArrayDataset(images, labels), batch_size=batch_size, shuffle=True)

    def one_pass(max_steps: int | None) -> None:
        for k, (x, y) in enumerate(loader):
            if max_steps is not None and k >= max_steps:
                break
            x, y = x.to(dev), y.to(dev)
            optimizer.zero_grad()
            loss = criterion(net(x), y)
            loss.backward()
            optimizer.step()

    def sync() -> None:
        if dev.type == "cuda":
            torch.cuda.synchronize(dev)

    one_pass(warmup_steps)
    times = []
    for _ in range(epochs):
        sync()
        t0, c0 = time.perf_counter(), time.process_time()
        one_pass(None)
        sync()
        times.append((time.perf_counter() - t0, time.process_time() - c0))
    return times

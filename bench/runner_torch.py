"""The PyTorch runner: data resident as tensors, batches sliced, autograd does the math."""
from __future__ import annotations

import os
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F

from bench.data import Dataset, as_float
from bench.optimizers import METHODS, native_kwargs
from bench.machine import cpu_name
from models.torch_mlp import MLP

EVAL_CHUNK = 10_000


def make_optimizer(params, spec: dict[str, Any]) -> torch.optim.Optimizer:
    opt = spec["optimizer"]
    rule = METHODS[opt["name"]].rule
    if opt["impl"] == "reference":
        from bench.reference_torch import ReferenceOptimizer

        return ReferenceOptimizer(params, rule=rule, hp=opt)
    cls, kwargs = native_kwargs(rule, "torch", opt)
    return getattr(torch.optim, cls)(params, **kwargs)


class TorchRunner:
    def __init__(self, spec: dict[str, Any], data: Dataset, weights: dict[str, np.ndarray]) -> None:
        threads = int(spec["threads"])
        torch.set_num_threads(threads)
        try:
            torch.set_num_interop_threads(1)
        except RuntimeError:  # already set in this process
            pass
        if spec["deterministic"]:
            torch.use_deterministic_algorithms(True, warn_only=True)
        self.device = torch.device("cuda" if spec["device"] == "cuda" else "cpu")
        if self.device.type == "cuda":
            if not torch.cuda.is_available():
                raise RuntimeError("device=cuda but torch.cuda.is_available() is False")
            os.environ.setdefault("CUBLAS_WORKSPACE_CONFIG", ":4096:8")
            torch.backends.cuda.matmul.allow_tf32 = spec["precision"] == "tf32"
            torch.backends.cudnn.allow_tf32 = spec["precision"] == "tf32"
        self.spec = spec
        self.splits = {
            "train": self._tensors(data.x_train, data.y_train),
            "test": self._tensors(data.x_test, data.y_test),
        }
        if data.y_val is not None:
            self.splits["val"] = self._tensors(data.x_val, data.y_val)
        torch.manual_seed(spec["seed"])  # only init=native draws from it
        self.model = MLP().to(self.device)
        if spec["init"] == "shared":
            self.model.load_shared(weights)
        self.optimizer = make_optimizer(self.model.parameters(), spec)
        self.step = self._make_step(spec["mode"])

    def _tensors(self, x: np.ndarray, y: np.ndarray) -> tuple[torch.Tensor, torch.Tensor]:
        return (torch.from_numpy(as_float(x)).to(self.device),
                torch.from_numpy(y.astype(np.int64)).to(self.device))

    def _make_step(self, mode: str):
        model, optimizer = self.model, self.optimizer

        def loss_and_grad(xb: torch.Tensor, yb: torch.Tensor) -> torch.Tensor:
            loss = F.cross_entropy(model(xb), yb)
            loss.backward()
            return loss.detach()

        if mode == "compiled":
            loss_and_grad = torch.compile(loss_and_grad, dynamic=False)

        def step(xb: torch.Tensor, yb: torch.Tensor) -> torch.Tensor:
            optimizer.zero_grad(set_to_none=True)
            loss = loss_and_grad(xb, yb)
            optimizer.step()
            return loss

        return step

    def describe(self) -> dict[str, Any]:
        name = torch.cuda.get_device_name(self.device) if self.device.type == "cuda" else cpu_name()
        return {
            "framework_version": torch.__version__,
            "device_name": name,
            "threads": torch.get_num_threads(),
            "cuda_version": torch.version.cuda,
            "mode_detail": "torch.compile(forward+backward), eager optimizer step"
            if self.spec["mode"] == "compiled" else "eager",
        }

    def sync(self) -> None:
        if self.device.type == "cuda":
            torch.cuda.synchronize(self.device)

    def train_epoch(self, order: np.ndarray, batch_size: int) -> np.ndarray:
        x, y = self.splits["train"]
        idx = torch.from_numpy(order).to(self.device)
        xs, ys = x.index_select(0, idx), y.index_select(0, idx)
        n = len(order)
        n_steps = -(-n // batch_size)
        losses = torch.empty(n_steps, device=self.device)
        self.model.train()
        for k in range(n_steps):
            sl = slice(k * batch_size, min(n, (k + 1) * batch_size))
            losses[k] = self.step(xs[sl], ys[sl])
        out = losses.cpu().numpy().astype(np.float64)  # synchronises the device
        self.sync()
        return out

    @torch.no_grad()
    def evaluate(self, split: str) -> tuple[float, float]:
        x, y = self.splits[split]
        self.model.eval()
        total_loss = torch.zeros((), dtype=torch.float64, device=self.device)
        correct = torch.zeros((), dtype=torch.int64, device=self.device)
        for start in range(0, len(y), EVAL_CHUNK):
            logits = self.model(x[start:start + EVAL_CHUNK])
            yb = y[start:start + EVAL_CHUNK]
            total_loss += F.cross_entropy(logits, yb, reduction="none").double().sum()
            correct += (logits.argmax(1) == yb).sum()
        n = len(y)
        return float(total_loss) / n, float(correct) / n

    def weights(self) -> dict[str, np.ndarray]:
        return self.model.export_shared()


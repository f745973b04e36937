"""The PyTorch runner: data resident as tensors, batches sliced, autograd does the math."""
from __future__ import annotations

import inspect
import os
import time
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F

from bench.data import FLOATS, Dataset, as_float
from bench.machine import cpu_name
from bench.optimizers import METHODS, get_rule, native_kwargs
from models import torch_model
from models.layers import parse_model

EVAL_CHUNK = 10_000


def make_optimizer(params, spec: dict[str, Any]) -> torch.optim.Optimizer:
    opt = spec["optimizer"]
    rule = METHODS[opt["name"]].rule
    if opt["impl"] == "reference":
        from bench.frameworks.torch.reference import ReferenceOptimizer

        return ReferenceOptimizer(params, rule=get_rule(rule), hp=opt)
    cls, kwargs = native_kwargs(rule, "torch", opt)
    if "fused" in inspect.signature(getattr(torch.optim, cls)).parameters:
        # torch's fused kernel: the same update rule in one C++ loop over all parameters, about
        # half the CPU time of the foreach path (~10 dispatched ops per step) here.
        kwargs["fused"] = True
    elif spec["mode"] == "compiled" and spec["device"] == "cuda":
        kwargs["capturable"] = True  # step counter on the GPU, so the update can replay as a CUDA graph
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
        self.dtype = getattr(torch, np.dtype(FLOATS[spec["precision"]]).name)  # torch.float32 or torch.float64
        self.splits = {
            "train": self._tensors(data.x_train, data.y_train),
            "test": self._tensors(data.x_test, data.y_test),
        }
        if data.y_val is not None:
            self.splits["val"] = self._tensors(data.x_val, data.y_val)
        torch.manual_seed(spec["seed"])  # only init=native draws from it
        self.model = torch_model.build(parse_model(spec["model"])).to(self.device, self.dtype)
        if spec["init"] == "shared":
            torch_model.load_shared(self.model, weights)
        self.optimizer = make_optimizer(self.model.parameters(), spec)
        # reduce-overhead = CUDA graphs: on a GPU the per-step launch cost is what limits this model.
        self.compile_mode = ("reduce-overhead" if self.device.type == "cuda" else "default") \
            if spec["mode"] == "compiled" else None
        self.step = self._make_step(spec["mode"])
        self.step_time_s = 0.0  # seconds inside step calls (and the final sync) in the last epoch

    def _tensors(self, x: np.ndarray, y: np.ndarray) -> tuple[torch.Tensor, torch.Tensor]:
        return (torch.from_numpy(as_float(x, self.spec["precision"])).to(self.device),
                torch.from_numpy(y.astype(np.int64)).to(self.device))

    def _make_step(self, mode: str):
        """One update from a batch of row indices (None = the whole resident training set)."""
        model, optimizer = self.model, self.optimizer
        x, y = self.splits["train"]

        def loss_and_grad(idx: torch.Tensor | None) -> torch.Tensor:
            # Gathering the batch here, per step, reads only its rows; a whole-epoch gather
            # would copy the full set (188 MB for 60k images) every epoch.
            xb, yb = (x, y) if idx is None else (x.index_select(0, idx), y.index_select(0, idx))
            loss = F.cross_entropy(model(xb), yb)
            loss.backward()
            return loss.detach()

        def update() -> None:
            optimizer.step()

        if mode == "compiled":
            # forward+backward as one AOTAutograd graph. Dynamo cannot trace through backward(),
            # so one whole-step graph is not on offer; a fused optimizer is already one kernel
            # (compiling it would only add a guard check per step), any other is compiled.
            loss_and_grad = torch.compile(loss_and_grad, dynamic=False, mode=self.compile_mode)
            if not optimizer.defaults.get("fused"):
                update = torch.compile(update, mode=self.compile_mode)
        graphs = self.compile_mode == "reduce-overhead"

        def step(idx: torch.Tensor | None) -> torch.Tensor:
            if graphs:  # the previous step's graph outputs may be overwritten from here on
                torch.compiler.cudagraph_mark_step_begin()
            optimizer.zero_grad(set_to_none=True)
            loss = loss_and_grad(idx)
            update()
            return loss

        return step

    def _batches(self, order: np.ndarray, batch_size: int) -> list[torch.Tensor | None]:
        if batch_size >= len(order) == len(self.splits["train"][1]):
            return [None]  # the full-batch gradient does not depend on the order: skip the gather
        return list(torch.from_numpy(order).to(self.device).split(batch_size))

    def warm_up(self, order: np.ndarray, batch_size: int) -> float:
        """Run every step shape of an epoch once (compiling in mode=compiled), then put the
        weights and optimizer state back; returns the seconds it took.

        The first shape runs twice: the optimizer's first step creates its state, so its
        steady-state graph only appears on the second call. State is reset in place (zeros
        are what every torch optimizer here starts from), so compiled guards still match.
        """
        saved = [p.detach().clone() for p in self.model.parameters()]
        batches = self._batches(order, batch_size)
        first, last = batches[0], batches[-1]
        shapes = [first, first] + ([last] if last is not None and len(last) != len(first) else [])
        self.model.train()
        t0 = time.perf_counter()
        for idx in shapes:
            float(self.step(idx))  # float() waits for the device
        elapsed = time.perf_counter() - t0
        with torch.no_grad():
            for p, value in zip(self.model.parameters(), saved):
                p.copy_(value)
            for state in self.optimizer.state.values():
                for value in state.values():
                    if torch.is_tensor(value):
                        value.zero_()
        self.optimizer.zero_grad(set_to_none=True)
        return elapsed

    def describe(self) -> dict[str, Any]:
        name = torch.cuda.get_device_name(self.device) if self.device.type == "cuda" else cpu_name()
        return {
            "framework_version": torch.__version__,
            "device_name": name,
            "threads": torch.get_num_threads(),
            "cuda_version": torch.version.cuda,
            "mode_detail": self._mode_detail(),
        }

    def device_peak_bytes(self) -> int | None:
        """torch's own peak of allocated GPU memory (its caching allocator holds more); None off a GPU."""
        return int(torch.cuda.max_memory_allocated(self.device)) if self.device.type == "cuda" else None

    def _mode_detail(self) -> str:
        if self.optimizer.defaults.get("fused"):
            update = "fused"
        else:
            update = "compiled" if self.compile_mode else "default"
        step = f"torch.compile(mode={self.compile_mode}) forward+backward" if self.compile_mode else "eager"
        return f"{step}, {update} optimizer step"

    def train_epoch(self, order: np.ndarray, batch_size: int) -> np.ndarray:
        batches = self._batches(order, batch_size)
        graphs = self.compile_mode == "reduce-overhead"
        losses = []
        self.model.train()
        clock = time.perf_counter
        inside = 0.0  # time in the framework's step calls; the rest of the epoch is harness overhead
        for idx in batches:
            t0 = clock()
            loss = self.step(idx)
            inside += clock() - t0
            # Kept on the device, no sync per step; a CUDA graph's output is overwritten by its next replay.
            losses.append(loss.clone() if graphs else loss)
        stacked = torch.stack(losses)  # one op for the epoch, not one per step
        t0 = clock()
        out = stacked.cpu().numpy().astype(np.float64)  # waits for the device: the queued steps finish here
        self.step_time_s = inside + clock() - t0
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
        return torch_model.export_shared(self.model)


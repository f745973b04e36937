"""What torch sees of the machine, asked in a child process: versions, the GPU, the GEMM rate.

``python -m bench.frameworks.torch.device`` prints :func:`facts` as one JSON line
(``make gpu-check`` asks it before anything else); ``bench.perf``'s worker calls
:func:`matmul_rate` for the FLOP floor.
"""
from __future__ import annotations

import json
import statistics
import time
from typing import Any

import torch

from bench.machine import cpu_name


def facts() -> dict[str, Any]:
    """torch's version, its CUDA build, and the first GPU if one is visible."""
    cuda = torch.cuda.is_available()
    return {"torch": torch.__version__, "cuda": torch.version.cuda, "cuda_available": cuda,
            "gpu": torch.cuda.get_device_name(0) if cuda else None}


def matmul_rate(device: str, threads: int, reps: int) -> dict[str, Any]:
    """Best-case fp32 GEMM rate (square, large) with the benchmark's thread count.

    ``times`` and ``cpu_times`` are the ``reps`` timed products (after two that warm up the
    BLAS); ``gflops`` is the rate of their median.
    """
    torch.set_num_threads(threads)
    dev = torch.device(device)
    n = 8192 if dev.type == "cuda" else 2048
    a, b = torch.randn(n, n, device=dev), torch.randn(n, n, device=dev)
    sync = torch.cuda.synchronize if dev.type == "cuda" else (lambda: None)
    times = []
    for _ in range(reps + 2):
        sync()
        t0, c0 = time.perf_counter(), time.process_time()
        torch.mm(a, b)
        sync()
        times.append((time.perf_counter() - t0, time.process_time() - c0))
    wall, cpu = [w for w, _ in times[2:]], [c for _, c in times[2:]]
    flop = 2 * n ** 3 / 1e9
    # Per CPU-second is meaningful on CPU only (a GPU works while the host thread waits).
    return {"gflops": flop / statistics.median(wall), "gflop": flop, "times": wall,
            "cpu_gflops": flop / statistics.median(cpu) if dev.type == "cpu" else None,
            "cpu_times": cpu if dev.type == "cpu" else None,
            "device_name": torch.cuda.get_device_name(dev) if dev.type == "cuda" else cpu_name()}


def gemm_times(device: str, threads: int, shapes: list[list[Any]], rounds: int, sample_s: float) -> dict[str, Any]:
    """Seconds per fp32 product for each ``[m, k, n, a_t, b_t]`` (``models.layers.Product``: an
    operand flagged ``_t`` is a row-major array read transposed, as the backward pass reads it),
    the products interleaved round by round as ``bench.perf.layers`` times the layers' passes
    (:func:`bench.perf.layers.time_passes`)."""
    from bench.perf.layers import time_passes

    torch.set_num_threads(threads)
    dev = torch.device(device)
    sync = torch.cuda.synchronize if dev.type == "cuda" else (lambda: None)

    def operand(rows: int, cols: int, transposed: bool) -> Any:
        return torch.randn(cols, rows, device=dev).t() if transposed else torch.randn(rows, cols, device=dev)

    def product(m: int, k: int, n: int, a_t: bool = False, b_t: bool = False) -> Any:
        a, b = operand(m, k, a_t), operand(k, n, b_t)

        def one() -> None:
            torch.mm(a, b)
            sync()
        return one

    return {"shapes": shapes, "times": time_passes([product(*shape) for shape in shapes], rounds, sample_s)}

if __name__ == "__main__":
    print(json.dumps(facts()), flush=True)

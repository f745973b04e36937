"""A run's memory, framework-neutral: what the OS says the child holds, and the model's floor.

Resident memory comes from ``/proc/self/status`` (Linux); where that is missing the peak falls back
to ``getrusage``'s ``ru_maxrss`` and the current value is unknown (None). Everything is in MiB
(2**20 bytes), the unit of the run.json keys ``*_mib``.
"""
from __future__ import annotations

import math
import resource
import sys
from pathlib import Path
from typing import Any

import numpy as np

from bench.data import FLOATS
from bench.optimizers import METHODS, get_rule
from models.layers import Model, parse_model

MIB = 2**20
# A run's precision -> bytes per number it stores, from the one table of precisions' float types.
FLOAT_BYTES = {precision: np.dtype(dtype).itemsize for precision, dtype in FLOATS.items()}


def _status_kib(field: str, path: Path = Path("/proc/self/status")) -> int | None:
    """A ``kB`` field of /proc/self/status (``VmRSS``, ``VmHWM``), or None where it cannot be read."""
    try:
        for line in path.read_text().splitlines():
            if line.startswith(f"{field}:"):
                return int(line.split()[1])
    except (OSError, ValueError, IndexError):
        return None
    return None


def rss_now_mib() -> float | None:
    """Resident memory of this process now."""
    kib = _status_kib("VmRSS")
    return None if kib is None else kib / 1024


def rss_peak_mib() -> float:
    """Peak resident memory of this process so far (its high-water mark)."""
    kib = _status_kib("VmHWM")
    if kib is not None:
        return kib / 1024
    # ru_maxrss is KiB on Linux but bytes on macOS.
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    return peak / MIB if sys.platform == "darwin" else peak / 1024


def floor_bytes(model: Model, n_slots: int, batch_size: int, precision: str = "fp32") -> int:
    """The least any framework could hold to train ``model``: the parameters, their gradients,
    ``n_slots`` optimizer-state copies of them, and one batch's activations (input included), in
    ``precision``'s numbers (float32, or float64 for fp64). Not a prediction of the resident size:
    the framework's own code and buffers come on top."""
    params = model.n_params
    return FLOAT_BYTES[precision] * (params * (2 + n_slots) + batch_size * model.activation_floats())


def floor_mib(spec: dict[str, Any], batch_size: int) -> float:
    """:func:`floor_bytes` of a run's spec, in MiB."""
    slots = len(get_rule(METHODS[spec["optimizer"]["name"]].rule).slots)
    return floor_bytes(parse_model(spec["model"]), slots, batch_size, spec.get("precision", "fp32")) / MIB


def after_training(ready_mib: float | None, device_peak_bytes: int | None) -> dict[str, float | None]:
    """run.json's memory keys once training ended: the peak, the training's own share (peak − ready),
    and the framework's device peak (None off a GPU)."""
    peak = rss_peak_mib()
    return {
        "rss_peak_mib": round(peak, 1),
        "train_mem_mib": None if ready_mib is None else round(peak - ready_mib, 1),
        "device_peak_mib": None if device_peak_bytes is None else round(device_peak_bytes / MIB, 1),
    }


def rounded(value: float | None, digits: int = 1) -> float | None:
    return None if value is None or not math.isfinite(value) else round(value, digits)

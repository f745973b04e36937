"""Facts about the machine and the checkout, read without importing a framework."""
from __future__ import annotations

import os
import platform
import shutil
import socket
import subprocess
from pathlib import Path
from typing import NamedTuple

from bench.exits import BadInput

PROJECT_ROOT = Path(__file__).resolve().parent.parent


def cpu_name() -> str:
    try:
        with open("/proc/cpuinfo") as fh:
            for line in fh:
                if line.startswith("model name"):
                    return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine()


def git_commit() -> str | None:
    try:
        out = subprocess.run(["git", "-C", str(PROJECT_ROOT), "rev-parse", "HEAD"],
                             capture_output=True, text=True, timeout=10)
    except (OSError, subprocess.SubprocessError):
        return None
    if out.returncode != 0:
        return None
    dirty = subprocess.run(["git", "-C", str(PROJECT_ROOT), "status", "--porcelain", "--untracked-files=no"],
                           capture_output=True, text=True, timeout=10).stdout.strip()
    return out.stdout.strip() + ("+dirty" if dirty else "")


def host_info() -> dict[str, object]:
    return {"host": socket.gethostname(), "cpu": cpu_name(), "cpu_count": os.cpu_count(),
            "platform": platform.platform(), "python": platform.python_version()}


class Gpu(NamedTuple):
    index: str
    name: str
    uuid: str


def _nvidia_smi(*args: str) -> list[str] | None:
    """nvidia-smi's output lines, or None when there is no nvidia-smi (or it fails)."""
    smi = shutil.which("nvidia-smi")
    if not smi:
        return None
    try:
        out = subprocess.run([smi, *args], capture_output=True, text=True, timeout=20)
    except (OSError, subprocess.SubprocessError):
        return None
    return out.stdout.splitlines() if out.returncode == 0 else None


def _hidden() -> bool:
    return os.environ.get("CUDA_VISIBLE_DEVICES", None) in ("", "-1")


def gpus() -> list[Gpu]:
    """The GPUs this process may use, with index, name and UUID, found without a framework.

    nvidia-smi lists every GPU of the machine; a CUDA_VISIBLE_DEVICES already set (by Slurm, or
    by the user) narrows the list to the GPUs it names, by index or by UUID.
    """
    if _hidden():
        return []
    lines = _nvidia_smi("--query-gpu=index,name,uuid", "--format=csv,noheader") or []
    found = [Gpu(*(part.strip() for part in line.split(",", 2))) for line in lines if line.count(",") >= 2]
    allowed = os.environ.get("CUDA_VISIBLE_DEVICES")
    if allowed:
        names = {a.strip() for a in allowed.split(",")}
        found = [g for g in found if g.index in names or g.uuid in names]
    return found


def visible_gpus() -> list[str]:
    """GPUs visible to a child process (one line each), found without importing a framework."""
    if _hidden():
        return []
    lines = _nvidia_smi("-L")
    if lines is not None:
        return [line for line in lines if line.startswith("GPU")]
    procdir = "/proc/driver/nvidia/gpus"
    return sorted(os.listdir(procdir)) if os.path.isdir(procdir) else []


def resolve_device(requested: str) -> str:
    """``cpu`` or ``cuda`` for ``device=cpu|cuda|auto``; BadInput for cuda without a GPU."""
    if requested == "cpu":
        return "cpu"
    if visible_gpus():
        return "cuda"
    if requested == "cuda":
        cvd = os.environ.get("CUDA_VISIBLE_DEVICES")
        found = "nvidia-smi lists no GPU" if shutil.which("nvidia-smi") else "no nvidia-smi and no /proc/driver/nvidia"
        if cvd is not None:
            found += f", CUDA_VISIBLE_DEVICES={cvd!r}"
        raise BadInput(f"device=cuda but no GPU is visible ({found}); use device=cpu or device=auto")
    return "cpu"

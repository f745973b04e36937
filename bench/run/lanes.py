"""GPU lanes: each run of a ``device=cuda`` sweep gets a GPU of its own (or a share of one).

A GPU has ``runs_per_gpu`` slots; a slot is an ``flock`` on a file under
``<results_dir>/.gpu-slots/`` named by the GPU's UUID, so it holds across the joblib worker
processes of a sweep, across sweeps into the same results_dir, and across the nodes of a
cluster that share it (UUIDs are unique per card). The kernel drops a slot when its holder
dies, so a killed run never keeps a GPU. The child sees only its GPU (CUDA_VISIBLE_DEVICES).
"""
from __future__ import annotations

import fcntl
import re
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import IO, Any

from bench.exits import BadInput
from bench.machine import Gpu, gpus

SLOTS_DIR = ".gpu-slots"
POLL_S = 0.5


def _stem(gpu: Gpu) -> str:
    return re.sub(r"[^A-Za-z0-9._-]", "_", gpu.uuid or f"index{gpu.index}")


def _try_lock(path: Path) -> IO[Any] | None:
    fh = open(path, "a")
    try:
        fcntl.flock(fh, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
        fh.close()
        return None
    return fh


def _pick(root: Path, cards: list[Gpu], runs_per_gpu: int) -> tuple[Gpu, IO[Any]] | None:
    """A free slot on the least busy GPU (then the least recently given one), or None."""
    with open(root / "pick.lock", "a") as pick:
        fcntl.flock(pick, fcntl.LOCK_EX)  # one picker at a time: two lanes never count the same slot free
        offers: list[tuple[int, float, int, Gpu, IO[Any]]] = []
        for order, gpu in enumerate(cards):
            busy, slot = 0, None
            for k in range(runs_per_gpu):
                fh = _try_lock(root / f"{_stem(gpu)}.{k}.lock")
                if fh is None:
                    busy += 1
                elif slot is None:
                    slot = fh
                else:
                    fh.close()
            if slot is not None:
                given = root / f"{_stem(gpu)}.given"
                last = given.stat().st_mtime if given.exists() else 0.0
                offers.append((busy, last, order, gpu, slot))
        if not offers:
            return None
        offers.sort(key=lambda o: o[:3])
        for _, _, _, _, fh in offers[1:]:
            fh.close()
        _, _, _, gpu, fh = offers[0]
        (root / f"{_stem(gpu)}.given").write_text(f"{time.time()}\n")  # spreads runs when lanes are idle
        return gpu, fh


@contextmanager
def gpu_slot(results_dir: str, runs_per_gpu: int, who: str = "") -> Iterator[Gpu]:
    """Hold one of the ``runs_per_gpu`` slots of a visible GPU for the block; waits for one."""
    cards = gpus()
    if not cards:
        raise BadInput("device=cuda but nvidia-smi lists no GPU with index, name and UUID")
    root = Path(results_dir) / SLOTS_DIR
    root.mkdir(parents=True, exist_ok=True)
    said = False
    while (held := _pick(root, cards, runs_per_gpu)) is None:
        if not said:
            print(f"[gpu] {who}: all {len(cards)} GPU(s) run {runs_per_gpu} run(s) each; waiting for a free one",
                  flush=True)
            said = True
        time.sleep(POLL_S)
    gpu, fh = held
    try:
        yield gpu
    finally:
        fh.close()  # closing the file drops the flock: the slot is free

"""``python -m bench.perf.gpu_check [key=value ...]`` (``make gpu-check``): the GPU smoke test.

Meant for a bare CUDA box with PyTorch preinstalled and no network: it needs torch and
numpy only (no TensorFlow, no Hydra, no omegaconf, no PyYAML: runs are started through
``bench.run.child`` with specs that ``bench.spec.compose`` reads from the conf files and
``bench.spec.build_spec`` validates). In about 5 minutes on one GPU:

1. the torch runner for every method in both modes (eager, compiled = torch.compile
   with CUDA graphs), one epoch each, on ``limit_train`` images; compiled and eager
   losses compared;
2. the same with the JAX runner (jit per step, and the whole epoch in one ``lax.scan``) where
   JAX is importable with a backend for the device; where it is not, one line says why;
3. ``bench.perf`` on the device (torch, and JAX where step 2 ran: naive loops and both modes,
   batch 1 capped / 32 / full); skipped, loudly, where scipy (its intervals) is missing.

Outputs, in ``out`` (default ``$OUT`` if set, else ``results/gpu_check``), few and flat so
they can travel back from a lent machine: ``gpu_runs.csv`` (every epoch row of every
run), ``gpu_check.csv`` (one line per run: status, loss, times, eager-vs-compiled gap),
``gpu_check.json`` (device, versions, data used) and ``perf/perf.csv`` + ``perf/perf.json``.
Run folders live in a temporary folder that is removed at the end.

Data: Fashion-MNIST from ``data_root`` (default: /usr/share/datasets/fashion-mnist, then
``data/fashion_mnist`` in the checkout, which ``make gpu-pack`` fills); with neither,
``limit_train`` random images of the same shape, loudly (per-sample speed is the same;
losses mean nothing, and ``bench.perf``'s epochs are ``limit_train`` images long).

Keys, their defaults and meanings: ``python -m bench.perf.gpu_check --help`` (:data:`OPTIONS`).

Exit codes: 0 every run completed, 1 some failed, 2 bad input / no GPU.
"""
from __future__ import annotations

import csv
import importlib.util
import itertools
import json
import math
import os
import subprocess
import sys
import tempfile
import time
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np

from bench.cli import entry
from bench.data import write_idx
from bench.exits import BadInput
from bench.machine import PROJECT_ROOT, host_info
from bench.optimizers import METHODS
from bench.options import Option, Options, boolean, choice, integer, names, optional_pathname
from bench.results import METRIC_COLUMNS, write_csv, write_json
from bench.run import proc
from bench.spec import MODES, build_spec, compose, model_group

DATA_ROOTS = (Path("/usr/share/datasets/fashion-mnist"), Path(PROJECT_ROOT) / "data" / "fashion_mnist")
IDX_FILES = ("train-images-idx3-ubyte", "train-labels-idx1-ubyte", "t10k-images-idx3-ubyte", "t10k-labels-idx1-ubyte")
SYNTHETIC_TEST = 1000  # test images of the synthetic fallback: evaluated every epoch, meaningless anyway


PERF_SET = ("results_dir", "device", "frameworks", "threads", "data_root", "model")  # what main gives bench.perf


def _perf_args(key: str, raw: str) -> str:
    """``perf_args`` checked against bench.perf's keys now, not after every run has trained."""
    from bench.perf.cases import OPTIONS as PERF

    args = raw.split()
    taken = [a.partition("=")[0] for a in args if a.partition("=")[0] in PERF_SET]
    if taken:
        raise BadInput(f"{key}: {taken[0]} is set by gpu-check itself")
    try:
        PERF.given(args)
    except BadInput as exc:
        raise BadInput(f"{key}: {exc}") from None
    return raw


OPTIONS = Options(
    "python -m bench.perf.gpu_check",
    """The GPU smoke test (make gpu-check), for a bare CUDA box with torch and numpy only: the torch
    runner for every method in both modes, one epoch each, compiled and eager losses compared; the
    same with JAX where it has a backend for the device; then bench.perf on the device. Writes
    gpu_runs.csv, gpu_check.csv, gpu_check.json and perf/ to `out`.""",
    {
        "device": Option("cuda", "cuda | cpu (cpu runs the same path on CPU, for testing)", choice("cuda", "cpu")),
        "out": Option(None, "output folder (null: $OUT if set, else results/gpu_check)", optional_pathname),
        "data_root": Option(None, "folder of the Fashion-MNIST IDX files (null: /usr/share/datasets/fashion-mnist, "
                            "then data/fashion_mnist, which make gpu-pack fills; with neither, random images, loudly)",
                            optional_pathname),
        "limit_train": Option(10000, "training images per run", integer(1)),
        "methods": Option(list(METHODS), "methods, comma-separated", names(METHODS)),
        "model": Option("mlp", "the layer list every run and the perf step train: a conf/model/ name, or "
                        "your own model file's path"),
        "modes": Option(list(MODES), "execution modes, comma-separated", names(MODES)),
        "epochs": Option(1, "epochs per run", integer(1)),
        "perf": Option(True, "false: no bench.perf afterwards", boolean),
        "perf_args": Option("reps=2 cap_steps=1000", "extra bench.perf key=value pairs, space-separated",
                            _perf_args),
        "timeout": Option(240, "seconds per run", integer(1)),
    },
)


def parse_args(argv: Sequence[str]) -> dict[str, Any]:
    cfg = OPTIONS.parse(argv)
    model_group(str(cfg["model"]))  # BadInput for no such model, before any framework is probed
    return cfg


def _has_idx(root: Path) -> bool:
    return all((root / f).is_file() or (root / (f + ".gz")).is_file() for f in IDX_FILES)


def find_data(cfg: Mapping[str, Any], work: Path) -> tuple[Path, str | None]:
    """A folder with the four Fashion-MNIST IDX files, and a note if they are synthetic.

    The synthetic set is only as large as the runs use (``limit_train`` training images), so a
    box without the data does not write 55 MB of noise on every call.
    """
    roots = [Path(cfg["data_root"])] if cfg["data_root"] else list(DATA_ROOTS)
    for root in roots:
        if _has_idx(root):
            return root, None
    synthetic = work / "synthetic_data"
    rng = np.random.default_rng(0)
    synthetic.mkdir(parents=True, exist_ok=True)
    for name, n in (("train", cfg["limit_train"]), ("t10k", min(cfg["limit_train"], SYNTHETIC_TEST))):
        write_idx(synthetic / f"{name}-images-idx3-ubyte", rng.integers(0, 256, (n, 28, 28), dtype=np.uint8))
        write_idx(synthetic / f"{name}-labels-idx1-ubyte", rng.integers(0, 10, n, dtype=np.uint8))
    note = (f"!!! no Fashion-MNIST IDX files in {', '.join(map(str, roots))}: using {cfg['limit_train']:,} RANDOM "
            f"images of the same shape (per-sample timings are valid, losses and accuracies mean nothing, "
            f"bench.perf's epochs are {cfg['limit_train']:,} images long); `make gpu-pack` copies the real files "
            f"into data/fashion_mnist so they travel with the checkout")
    return synthetic, note


def torch_facts(device: str) -> dict[str, Any]:
    """Device and versions, asked of torch in a child (this process never imports it)."""
    try:
        done = proc.run("bench.frameworks.torch.device", env=proc.child_env(1, device, "torch"), timeout=120)
    except subprocess.TimeoutExpired:
        raise BadInput(f"importing torch with {sys.executable} took over 120 s") from None
    if done.returncode != 0:
        raise BadInput(f"cannot import torch with {sys.executable}: {proc.last_line(done)}")
    return json.loads(done.stdout.strip().splitlines()[-1])


def jax_facts(device: str) -> tuple[dict[str, Any] | None, str]:
    """JAX's versions and backend, asked in a child: (facts, "") or (None, why JAX is left out)."""
    try:
        done = proc.run("bench.frameworks.jax.device", env=proc.child_env(1, device, "jax"), timeout=120)
    except subprocess.TimeoutExpired:
        return None, "importing jax took over 120 s"
    if done.returncode != 0:
        return None, f"jax is not importable with {sys.executable} ({proc.last_line(done)})"
    facts = json.loads(done.stdout.strip().splitlines()[-1])
    if device == "cuda" and facts["backend"] != "gpu":
        return None, f"jax {facts['jax']} has no CUDA backend here (backend {facts['backend']}; needs jax[cuda12])"
    return facts, ""


def run_one(spec: Mapping[str, Any], work: Path, timeout: int) -> tuple[list[dict[str, str]], dict[str, Any]]:
    """One harness run through ``bench.run.child``; returns its metrics rows and run.json."""
    run = work / spec["run_id"]
    run.mkdir(parents=True, exist_ok=True)
    write_json(run / "spec.json", spec)
    write_json(run / "run.json", {"run_id": spec["run_id"], "status": "running", "config": spec})
    try:
        done = proc.run("bench.run.child", [run / "spec.json"], env=proc.spec_env(spec), timeout=timeout)
        error = "" if done.returncode == 0 else proc.last_line(done)
    except subprocess.TimeoutExpired:
        error = f"timed out after {timeout} s"
    info = json.loads((run / "run.json").read_text())
    if error:
        info["error"] = info.get("error") or error
        if info.get("status") in ("running", None):  # killed before the child could say so
            info["status"] = "failed"
    rows = []
    if (run / "metrics.csv").is_file():
        with open(run / "metrics.csv", newline="") as fh:
            rows = list(csv.DictReader(fh))
    return rows, info


def summary_row(spec: dict[str, Any], rows: list[dict[str, str]], info: dict[str, Any]) -> dict[str, Any]:
    last = rows[-1] if rows else {}
    trained = [r for r in rows if r.get("epoch") not in (None, "0")]
    return {
        "framework": spec["framework"]["name"], "optimizer": spec["optimizer"]["name"], "mode": spec["mode"],
        "batch_size": spec["batch_size"],
        "status": info.get("status"), "device_name": info.get("device_name"),
        "train_loss": last.get("train_loss"), "test_acc": last.get("test_acc"),
        "epoch_time_s": trained[-1]["epoch_time_s"] if trained else "",
        "overhead_frac": trained[-1]["overhead_frac"] if trained else "",
        "warmup_time_s": info.get("warmup_time_s"), "error": info.get("error", ""),
    }


def main(argv: Sequence[str]) -> int:
    cfg = parse_args(argv)
    out = Path(cfg["out"] or os.environ.get("OUT") or Path(PROJECT_ROOT) / "results" / "gpu_check")
    out.mkdir(parents=True, exist_ok=True)
    facts = torch_facts(cfg["device"])
    if cfg["device"] == "cuda" and not facts["cuda_available"]:
        raise BadInput(f"device=cuda but torch {facts['torch']} sees no GPU; use device=cpu to test this path")
    t_start = time.perf_counter()
    print(f"[gpu-check] torch {facts['torch']} (CUDA {facts['cuda']}), device {facts['gpu'] or 'cpu'}", flush=True)
    jax, jax_skipped = jax_facts(cfg["device"])
    print(f"[gpu-check] jax {jax['jax']} (backend {jax['backend']}), device {jax['device']}" if jax
          else f"[gpu-check] JAX left out: {jax_skipped}", flush=True)
    frameworks = ["torch"] + (["jax"] if jax else [])
    # Run folders and any synthetic data stay out of `out`: a lent machine sends back few files.
    with tempfile.TemporaryDirectory(prefix="gpu_check.") as tmp:
        work = Path(tmp)
        data_root, note = find_data(cfg, work)
        if note:
            print(note, file=sys.stderr, flush=True)
        data = {"root": str(data_root), "download": False, "limit_train": cfg["limit_train"]}
        threads = 1 if cfg["device"] == "cpu" else min(4, os.cpu_count() or 1)  # the GPU does the math

        all_rows: list[dict[str, str]] = []
        summary: list[dict[str, Any]] = []
        for fw, method, mode in itertools.product(frameworks, cfg["methods"], cfg["modes"]):
            spec = build_spec(compose(fw, method, "fashion_mnist", str(cfg["model"]), data=data, epochs=cfg["epochs"],
                                      device=cfg["device"], threads=threads, mode=mode, progress="none"))
            t0 = time.perf_counter()
            rows, info = run_one(spec, work, cfg["timeout"])
            all_rows += rows
            summary.append(summary_row(spec, rows, info))
            s = summary[-1]
            print(f"[gpu-check] {fw:5s} {method:9s} {mode:8s} {s['status']:9s} loss {s['train_loss'] or '-':.8} "
                  f"epoch {s['epoch_time_s'] or '-':.6} s  warm-up {s['warmup_time_s'] or 0:.3g} s  "
                  f"[{time.perf_counter() - t0:.0f} s] {s['error']}", flush=True)
        by_key = {(s["framework"], s["optimizer"], s["mode"]): s for s in summary}
        for s in summary:
            other = by_key.get((s["framework"], s["optimizer"], "eager"))
            try:
                s["rel_diff_vs_eager"] = abs(float(s["train_loss"]) / float(other["train_loss"]) - 1)
            except (TypeError, ValueError, ZeroDivisionError):
                s["rel_diff_vs_eager"] = math.nan
        write_csv(out / "gpu_runs.csv", all_rows, METRIC_COLUMNS)
        write_csv(out / "gpu_check.csv", summary, list(summary[0]))

        perf_code = None
        if cfg["perf"] and importlib.util.find_spec("scipy") is None:
            skipped = "bench.perf skipped: it needs scipy (its bootstrap intervals)"
            print(f"!!! {skipped}", file=sys.stderr, flush=True)
            note = "; ".join(filter(None, [note, skipped]))
        elif cfg["perf"]:
            perf_args = [f"results_dir={out}", f"device={cfg['device']}", f"frameworks={','.join(frameworks)}",
                         f"threads={threads}", f"data_root={data_root}", f"model={cfg['model']}"] \
                + cfg["perf_args"].split()
            print(f"[gpu-check] python -m bench.perf {' '.join(perf_args)}", flush=True)
            # bench.perf sets each case's own threads and devices; its output goes straight to ours.
            perf_code = proc.start("bench.perf", perf_args, env=proc.child_env(threads, cfg["device"])).wait()
    ok = all(s["status"] == "completed" for s in summary)
    write_json(out / "gpu_check.json", {**facts, **host_info(), "data_root": str(data_root), "data_note": note,
                                        "jax": jax, "jax_left_out": jax_skipped, "config": cfg, "runs_ok": ok,
                                        "perf_exit_code": perf_code,
                                        "seconds": time.perf_counter() - t_start})
    print(f"[gpu-check] {'all runs completed' if ok else 'SOME RUNS FAILED'}; "
          f"{time.perf_counter() - t_start:.0f} s; outputs in {out}", flush=True)
    return 0 if ok and perf_code in (0, None) else 1


if __name__ == "__main__":
    sys.exit(entry(lambda: main(sys.argv[1:])))

"""``python -m bench.perf [key=value ...]``: the harness's speed against the naive loops.

One invocation measures, one case per child process (``python -m bench.perf.worker``; no two
frameworks share a process, and no two cases run at once):

* this machine's single-precision matrix-product rate, which sets the FLOP floor;
* the tutorial's loops as written (``bench/frameworks/torch/naive.py``: DataLoader + per-sample
  ToTensor/Normalize; ``bench/frameworks/tf/naive.py``: Keras ``model.fit`` with defaults;
  ``bench/frameworks/jax/naive.py``: host numpy batches into a jitted optax step);
* the products of one training step of the model at each batch size (not the full batch), each
  at its own shape and layout, timed with the machine's GEMM: the second floor (``x_gemm``);
* the harness's runners, through the real training loop (``bench.loop.train``), in each
  execution mode;

for batch 1 (a capped number of steps), 32 and the full batch, all with the MLP and Adam; and with
``layers=true``, each harness case's step layer by layer (``bench.perf.layers``).
Every time is the median of ``reps`` epochs after a warm-up (compile / trace / first
allocations), clocks read after the device is synchronised, with a 95 % bootstrap interval;
every ratio has one too (``bench.perf.cases``). The table is printed and written to
``results_dir/perf/perf.csv`` (+ ``perf.json``); ``bench.perf.section`` turns it into the
report's "Speed" section.

Keys, their defaults and meanings: ``python -m bench.perf --help`` (``bench.perf.cases.OPTIONS``).
Exit codes: 0 done (a failed case is a row with its error), 2 bad input.
"""
from __future__ import annotations

import json
import os
import platform
import statistics
import subprocess
import sys
import time
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

from bench.cli import entry
from bench.machine import cpu_name
from bench.perf import layers
from bench.perf.cases import (
    COLUMNS,
    MATMUL_REPS,
    build_rows,
    fmt,
    label,
    parse_args,
    plan,
    resolve_data,
)
from bench.perf.worker import RESULT_TAG
from bench.results import write_csv, write_json
from bench.run import proc


def run_case(job: Mapping[str, Any], timeout: float = 1800) -> dict[str, Any]:
    """Run one case in a fresh interpreter; returns its result or {'error': ...}."""
    env = proc.child_env(job["threads"], job["device"], job["framework"], job.get("deterministic", True))
    try:
        done = proc.run("bench.perf.worker", [json.dumps(job)], env=env, timeout=timeout)
    except subprocess.TimeoutExpired:
        return {"error": f"timed out after {timeout:.0f} s"}
    for line in reversed(done.stdout.splitlines()):
        if line.startswith(RESULT_TAG):
            return json.loads(line[len(RESULT_TAG):])
    return {"error": proc.last_line(done)}


def print_table(rows: Sequence[Mapping[str, Any]]) -> None:
    cols = ("case", "batch_size", "steps", "epoch_time_s", "step_time_us", "samples_per_s",
            "vs_naive_torch", "vs_naive_tf", "vs_naive_jax", "vs_torch", "x_floor", "x_gemm", "overhead_frac",
            "warmup_s")
    cells = [[fmt(r.get(c)) for c in cols] for r in rows]
    widths = [max(len(c), *(len(row[i]) for row in cells)) for i, c in enumerate(cols)]
    print("  ".join(c.ljust(w) for c, w in zip(cols, widths)))
    for r, row in zip(rows, cells):
        line = "  ".join(v.ljust(w) for v, w in zip(row, widths))
        print(line + (f"  ERROR: {r['error']}" if r.get("error") else ""))


def main(argv: Sequence[str]) -> int:
    cfg = parse_args(argv)
    data, note = resolve_data(cfg)
    if note:
        print(note, file=sys.stderr, flush=True)
    jobs = plan(cfg, data)
    out_dir = Path(cfg["results_dir"]) / "perf"
    out_dir.mkdir(parents=True, exist_ok=True)
    started = time.strftime("%Y-%m-%dT%H:%M:%S%z")
    matmul = run_case({"kind": "matmul", "framework": "torch", "device": cfg["device"], "threads": cfg["threads"],
                       "reps": MATMUL_REPS})
    rate, cpu_rate = matmul.get("gflops"), matmul.get("cpu_gflops")
    print(f"[perf] matrix product: {fmt(rate)} GFLOP/s fp32 on {cfg['threads']} thread(s), {cfg['device']} "
          f"({fmt(cpu_rate)} per CPU-second)"
          + (f" (error: {matmul['error']})" if matmul.get("error") else ""), flush=True)
    t0 = time.perf_counter()
    gemm_result = run_case(layers.gemm_job(jobs, cfg["device"], cfg["threads"], bool(cfg["quick"]), int(cfg["reps"])))
    gemm = layers.gemm_seconds(gemm_result)
    print(f"[perf] the models' matrix products at their own shapes: {len(gemm_result.get('shapes') or [])} products"
          + (f" ERROR {gemm_result['error']}" if gemm_result.get("error") else "")
          + f"  [{time.perf_counter() - t0:.0f} s]", flush=True)
    results = []
    for job in jobs:
        t0 = time.perf_counter()
        res = run_case(job)
        results.append((job, res))
        times = res.get("epoch_times")
        shown = (f"{statistics.median(times):.3f} s/epoch ({res['steps']} steps)" if times
                 else f"ERROR {res.get('error')}")
        print(f"[perf] bs {job['batch']:>5} {label(job):26s} {shown}  [{time.perf_counter() - t0:.0f} s]", flush=True)
    rows = build_rows(results, matmul, data["name"], gemm)
    write_csv(out_dir / "perf.csv", rows, COLUMNS)
    block_rows = _layers(cfg, results, matmul, gemm) if cfg["layers"] else []
    write_json(out_dir / "perf.json", {
        "command": "python -m bench.perf " + " ".join(argv), "started": started,
        "finished": time.strftime("%Y-%m-%dT%H:%M:%S%z"), "cpu": cpu_name(), "cpu_count": os.cpu_count(),
        "platform": platform.platform(), "device": cfg["device"], "device_name": matmul.get("device_name"),
        "threads": cfg["threads"], "matmul_gflops": rate, "matmul_gflops_per_cpu_s": cpu_rate,
        "model": rows[0]["model"] if rows else str(cfg["model"]), "model_given": str(cfg["model"]),
        "flop_per_sample": rows[0]["flop_per_sample"] if rows else None,
        "data_note": note, "config": dict(cfg),
        "samples": [{"case": label(job), "batch_size": job["batch"], "epoch_times": res.get("epoch_times"),
                     "cpu_times": res.get("cpu_times")} for job, res in results],
    })
    print()
    print_table(rows)
    if block_rows:
        write_csv(out_dir / "layers.csv", block_rows, layers.COLUMNS)
        print("\nWhere each step's time goes (bench.perf.layers): each layer's forward and backward pass, "
              "the harness's step less all layers, with 95 % intervals")
        print("\n".join(layers.table(block_rows)))
    print(f"\nwrote {out_dir / 'perf.csv'}" + (f" and {out_dir / 'layers.csv'}" if block_rows else ""))
    return 0


def _layers(cfg: Mapping[str, Any], results: Sequence[tuple[Mapping[str, Any], Mapping[str, Any]]],
            matmul: Mapping[str, Any], gemm: Mapping[tuple, Sequence[float]]) -> list[dict[str, Any]]:
    """Each harness case's step, layer by layer (``bench.perf.layers``), one child per case."""
    harness = {(job["framework"], job["mode"], job.get("xla"), job["batch"]): res for job, res in results}
    out = []
    for job in layers.jobs([job for job, _ in results], bool(cfg["quick"]), int(cfg["reps"])):
        t0 = time.perf_counter()
        res = run_case(job)
        print(f"[perf] bs {job['batch']:>5} {label(job):26s} layer by layer"
              + (f" ERROR {res['error']}" if res.get("error") else "") + f"  [{time.perf_counter() - t0:.0f} s]",
              flush=True)
        out += layers.rows(job, res, harness.get((job["framework"], job["mode"], job.get("xla"), job["batch"]), {}),
                           matmul, gemm)
    return out

if __name__ == "__main__":
    sys.exit(entry(lambda: main(sys.argv[1:])))

"""``python -m bench.perf [key=value ...]``: the harness's speed against the naive loops.

One invocation measures, one case per child process (torch and TensorFlow never share a
process, and no two cases run at once):

* this machine's single-precision matrix-product rate, which sets the FLOP floor;
* the seed's loops as written (``bench/frameworks/torch/naive.py``: DataLoader + per-sample
  ToTensor/Normalize; ``bench/frameworks/tf/naive.py``: Keras ``model.fit`` with defaults);
* the harness's runners, through the real training loop (``bench.loop.train``), in each
  execution mode;

for batch 1 (a capped number of steps), 32 and the full batch, all with the MLP and Adam.
Every figure is the median of ``reps`` epochs after a warm-up (compile / trace / first
allocations), clocks read after the device is synchronised. The table is printed and written
to ``results_dir/perf/perf.csv`` (+ ``perf.json``); ``report_section`` turns it into the
report's "Speed" section.

Keys (defaults in brackets): results_dir [results], data [fashion_mnist; falls back to
mnist_embedded, loudly], device [cpu] (cpu|cuda), threads [1], reps [3], batches [1,32,full],
cap_steps [2000] (steps timed at batch 1), frameworks [torch,tensorflow],
modes [eager,compiled], xla [false] (adds TensorFlow compiled + XLA), naive [true],
limit_train [none], data_root [the conf file's], deterministic [true], quick [false] (toy
size for tests: 1,024 images, 1 rep, 64 steps at batch 1). Exit codes: 0 done (a failed case is a row with its error), 2 bad input.
This module imports neither framework; its ``--worker`` entry runs inside the child.
"""
from __future__ import annotations

import json
import math
import os
import platform
import statistics
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

from bench.exits import EXIT_BAD_INPUT, BadInput
from bench.machine import PROJECT_ROOT, cpu_name
from bench.report.sections import ReportSection
from bench.results import write_csv, write_json
from models.init import LAYERS

RESULT_TAG = "PERF_RESULT "  # the worker's last stdout line: this tag + one JSON object
# Multiply-adds per sample of one training step, x2 for FLOPs: forward (both layers),
# backward weight gradients (both layers) and the hidden-layer input gradient; the input
# layer's input gradient is never needed. 409,088 FLOP/sample: 24.5 GFLOP per 60k epoch.
FLOP_PER_SAMPLE = 2 * (2 * sum(i * o for i, o in LAYERS) + LAYERS[1][0] * LAYERS[1][1])
COLUMNS = (
    "case", "framework", "mode", "batch_size", "n_train", "steps", "reps", "epoch_time_s",
    "step_time_us", "samples_per_s", "cpu_time_s", "vs_naive_torch", "vs_naive_tf",
    "floor_s", "x_floor", "cpu_vs_naive_torch", "cpu_vs_naive_tf", "cpu_x_floor", "overhead_frac",
    "warmup_s", "threads", "device", "dataset", "error",
)
DEFAULTS: dict[str, Any] = {
    "results_dir": "results", "data": "fashion_mnist", "device": "cpu", "threads": 1, "reps": 3,
    "batches": "1,32,full", "cap_steps": 2000, "frameworks": "torch,tensorflow",
    "modes": "eager,compiled", "xla": False, "naive": True, "limit_train": None, "quick": False,
    "deterministic": True, "data_root": None,
}
QUICK = {"limit_train": 1024, "reps": 1, "cap_steps": 64}


# ------------------------------------------------------------------ configuration
def parse_scalar(text: str) -> Any:
    """A scalar as the flat conf/*.yaml files and key=value arguments write it."""
    low = text.strip().lower()
    if low in ("true", "false"):
        return low == "true"
    if low in ("null", "none", "~", ""):
        return None
    try:
        return json.loads(text)
    except ValueError:
        return text.strip().strip("'\"")


def read_flat_yaml(path: Path) -> dict[str, Any]:
    """``key: value`` lines of a conf group file; read without omegaconf, which a bare GPU
    box may not have."""
    out: dict[str, Any] = {}
    for line in path.read_text().splitlines():
        line = line.split(" #", 1)[0].rstrip()
        if not line or line.startswith("#") or line.startswith(" ") or ":" not in line:
            continue
        key, _, value = line.partition(":")
        out[key.strip()] = parse_scalar(value)
    return out


def parse_args(argv: list[str]) -> dict[str, Any]:
    cfg = dict(DEFAULTS)
    given: dict[str, Any] = {}
    for arg in argv:
        key, eq, value = arg.partition("=")
        if not eq or key not in DEFAULTS:
            raise BadInput(f"unknown argument {arg!r}; expected key=value with key in {', '.join(DEFAULTS)}")
        given[key] = parse_scalar(value)
    if given.get("quick"):
        cfg.update(QUICK)
    cfg.update(given)
    for key in ("threads", "reps", "cap_steps"):
        if isinstance(cfg[key], bool) or not isinstance(cfg[key], int) or cfg[key] < 1:
            raise BadInput(f"{key} must be an integer >= 1, got {cfg[key]!r}")
    if cfg["limit_train"] is not None and (not isinstance(cfg["limit_train"], int) or cfg["limit_train"] < 2):
        raise BadInput(f"limit_train must be an integer >= 2, got {cfg['limit_train']!r}")
    if cfg["device"] not in ("cpu", "cuda"):
        raise BadInput(f"device must be cpu or cuda, got {cfg['device']!r}")
    cfg["batches"] = [_batch(b) for b in str(cfg["batches"]).split(",")]
    cfg["frameworks"] = _choices("frameworks", cfg["frameworks"], ("torch", "tensorflow"))
    cfg["modes"] = _choices("modes", cfg["modes"], ("eager", "compiled"))
    if not (Path(PROJECT_ROOT) / "conf" / "data" / f"{cfg['data']}.yaml").is_file():
        raise BadInput(f"data={cfg['data']!r}: no conf/data/{cfg['data']}.yaml")
    return cfg


def _batch(text: str) -> int | str:
    text = text.strip()
    if text == "full":
        return "full"
    if not text.isdigit() or int(text) < 1:
        raise BadInput(f"batches: {text!r} is not a positive integer or 'full'")
    return int(text)


def _choices(key: str, value: Any, allowed: tuple[str, ...]) -> list[str]:
    items = [v.strip() for v in str(value).split(",") if v.strip()]
    bad = [v for v in items if v not in allowed]
    if bad or not items:
        raise BadInput(f"{key}={value!r}: choose from {', '.join(allowed)}")
    return items


def resolve_data(cfg: dict[str, Any]) -> tuple[dict[str, Any], str | None]:
    """The data config the children load, and a loud note if we fell back."""
    from bench.data import DataError, load_dataset  # numpy only

    data = read_flat_yaml(Path(PROJECT_ROOT) / "conf" / "data" / f"{cfg['data']}.yaml")
    data["download"] = False  # a benchmark must not wait on the network
    if cfg["data_root"]:
        data["root"] = str(cfg["data_root"])
    data["limit_train"] = cfg["limit_train"]
    try:
        load_dataset(data, log=lambda *_: None)
        return data, None
    except DataError as exc:
        fallback = read_flat_yaml(Path(PROJECT_ROOT) / "conf" / "data" / "mnist_embedded.yaml")
        fallback["limit_train"] = cfg["limit_train"]
        note = (f"!!! {exc} -- measuring on mnist_embedded (4,000 training images) instead: "
                f"per-sample figures stay comparable, per-epoch figures are NOT 60k-epoch numbers")
        return fallback, note


# ------------------------------------------------------------------ parent side
def child_env(threads: int, device: str) -> dict[str, str]:
    """Thread counts fixed before the child imports its framework (as bench.run.launch does)."""
    env = dict(os.environ)
    env.update({
        "OMP_NUM_THREADS": str(threads), "MKL_NUM_THREADS": str(threads),
        "TF_NUM_INTRAOP_THREADS": str(threads), "TF_NUM_INTEROP_THREADS": "1",
        "TF_CPP_MIN_LOG_LEVEL": env.get("TF_CPP_MIN_LOG_LEVEL", "3"), "PYTHONUNBUFFERED": "1",
        "PYTHONPATH": os.pathsep.join([str(PROJECT_ROOT)] + ([env["PYTHONPATH"]] if env.get("PYTHONPATH") else [])),
    })
    if device == "cpu":
        env["CUDA_VISIBLE_DEVICES"] = ""
    return env


def run_case(job: dict[str, Any], timeout: float = 1800) -> dict[str, Any]:
    """Run one case in a fresh interpreter; returns its result or {'error': ...}."""
    cmd = [sys.executable, "-m", "bench.perf", "--worker", json.dumps(job)]
    try:
        proc = subprocess.run(cmd, env=child_env(job["threads"], job["device"]), capture_output=True,
                              text=True, timeout=timeout, cwd=PROJECT_ROOT)
    except subprocess.TimeoutExpired:
        return {"error": f"timed out after {timeout:.0f} s"}
    for line in reversed(proc.stdout.splitlines()):
        if line.startswith(RESULT_TAG):
            return json.loads(line[len(RESULT_TAG):])
    tail = [ln for ln in proc.stderr.splitlines() if ln.strip()][-1:] or [f"exit code {proc.returncode}"]
    return {"error": tail[0][:300]}


def plan(cfg: dict[str, Any]) -> list[dict[str, Any]]:
    """Every case of the run, in the order they execute."""
    jobs = []
    base = {"device": cfg["device"], "threads": cfg["threads"], "reps": cfg["reps"],
            "deterministic": bool(cfg["deterministic"])}
    for batch in cfg["batches"]:
        cap = cfg["cap_steps"] if batch == 1 else None
        if cfg["naive"]:
            for fw in cfg["frameworks"]:
                jobs.append({**base, "kind": "naive", "framework": fw, "mode": "naive", "batch": batch, "cap": cap})
        for fw in cfg["frameworks"]:
            for mode in cfg["modes"]:
                jobs.append({**base, "kind": "harness", "framework": fw, "mode": mode, "batch": batch, "cap": cap})
            if fw == "tensorflow" and cfg["xla"]:
                jobs.append({**base, "kind": "harness", "framework": fw, "mode": "compiled", "xla": True,
                             "batch": batch, "cap": cap})
    return jobs


def _label(job: dict[str, Any]) -> str:
    if job["kind"] == "naive":
        return "naive torch DataLoader" if job["framework"] == "torch" else "naive keras fit"
    return f"harness {job['framework']} {job['mode']}" + ("+xla" if job.get("xla") else "")


def build_rows(results: list[tuple[dict[str, Any], dict[str, Any]]], rate: float | None,
               dataset: str, cpu_rate: float | None = None) -> list[dict[str, Any]]:
    """One perf.csv row per case, with the ratios to the naive loops and to the floor.

    The cpu_* ratios use process CPU time instead of wall time: with threads=1 they are what
    the wall ratios would be on an idle machine, and other processes barely move them.
    """
    naive = {(job["framework"], job["batch"]): res.get("epoch_time_s")
             for job, res in results if job["kind"] == "naive" and not res.get("error")}
    naive_cpu = {(job["framework"], job["batch"]): res.get("cpu_time_s")
                 for job, res in results if job["kind"] == "naive" and not res.get("error")}
    rows = []
    for job, res in results:
        t = res.get("epoch_time_s")
        steps, n = res.get("steps"), res.get("n_train")
        row = {"case": _label(job), "framework": job["framework"],
               "mode": job["mode"] + ("+xla" if job.get("xla") else ""), "batch_size": job["batch"],
               "n_train": n, "steps": steps, "reps": res.get("reps"), "epoch_time_s": t,
               "cpu_time_s": res.get("cpu_time_s"), "overhead_frac": res.get("overhead_frac"),
               "warmup_s": res.get("warmup_s"), "threads": job["threads"], "device": job["device"],
               "dataset": res.get("dataset", dataset), "error": res.get("error", "")}
        if t and steps and n:
            samples = n if job["batch"] == "full" else min(n, steps * job["batch"])
            row["step_time_us"] = 1e6 * t / steps
            row["samples_per_s"] = samples / t
            for fw, key in (("torch", "vs_naive_torch"), ("tensorflow", "vs_naive_tf")):
                ref = naive.get((fw, job["batch"]))
                row[key] = ref / t if ref else math.nan
            if rate:
                row["floor_s"] = samples * FLOP_PER_SAMPLE / (rate * 1e9)
                row["x_floor"] = t / row["floor_s"]
            cpu = res.get("cpu_time_s")
            if cpu:
                for fw, key in (("torch", "cpu_vs_naive_torch"), ("tensorflow", "cpu_vs_naive_tf")):
                    ref = naive_cpu.get((fw, job["batch"]))
                    row[key] = ref / cpu if ref else math.nan
                if cpu_rate:
                    row["cpu_x_floor"] = cpu / (samples * FLOP_PER_SAMPLE / (cpu_rate * 1e9))
        rows.append(row)
    return rows


def _fmt(value: Any, digits: int = 3) -> str:
    if value is None or value == "" or (isinstance(value, float) and math.isnan(value)):
        return "-"
    if isinstance(value, float):
        return f"{value:.{digits}g}"
    return str(value)


def print_table(rows: list[dict[str, Any]]) -> None:
    cols = ("case", "batch_size", "steps", "epoch_time_s", "step_time_us", "samples_per_s",
            "vs_naive_torch", "vs_naive_tf", "x_floor", "overhead_frac", "warmup_s")
    cells = [[_fmt(r.get(c)) for c in cols] for r in rows]
    widths = [max(len(c), *(len(row[i]) for row in cells)) for i, c in enumerate(cols)]
    print("  ".join(c.ljust(w) for c, w in zip(cols, widths)))
    for r, row in zip(rows, cells):
        line = "  ".join(v.ljust(w) for v, w in zip(row, widths))
        print(line + (f"  ERROR: {r['error']}" if r.get("error") else ""))


def main(argv: list[str]) -> int:
    try:
        cfg = parse_args(argv)
    except BadInput as exc:
        print(f"error: {exc}", file=sys.stderr)
        return EXIT_BAD_INPUT
    data, note = resolve_data(cfg)
    if note:
        print(note, file=sys.stderr, flush=True)
    out_dir = Path(cfg["results_dir"]) / "perf"
    out_dir.mkdir(parents=True, exist_ok=True)
    started = time.strftime("%Y-%m-%dT%H:%M:%S%z")
    rate_res = run_case({"kind": "matmul", "framework": "torch", "device": cfg["device"],
                         "threads": cfg["threads"], "reps": 5})
    rate, cpu_rate = rate_res.get("gflops"), rate_res.get("cpu_gflops")
    print(f"[perf] matrix product: {_fmt(rate)} GFLOP/s fp32 on {cfg['threads']} thread(s), {cfg['device']} "
          f"({_fmt(cpu_rate)} per CPU-second)"
          + (f" (error: {rate_res['error']})" if rate_res.get("error") else ""), flush=True)
    results = []
    for job in plan(cfg):
        job["data"] = data
        t0 = time.perf_counter()
        res = run_case(job)
        results.append((job, res))
        took = time.perf_counter() - t0
        shown = f"{res['epoch_time_s']:.3f} s/epoch ({res['steps']} steps)" if res.get("epoch_time_s") else f"ERROR {res.get('error')}"
        print(f"[perf] bs {job['batch']:>5} {_label(job):26s} {shown}  [{took:.0f} s]", flush=True)
    rows = build_rows(results, rate, data["name"], cpu_rate)
    write_csv(out_dir / "perf.csv", rows, COLUMNS)
    write_json(out_dir / "perf.json", {
        "command": "python -m bench.perf " + " ".join(argv), "started": started,
        "finished": time.strftime("%Y-%m-%dT%H:%M:%S%z"), "cpu": cpu_name(), "cpu_count": os.cpu_count(),
        "platform": platform.platform(), "device": cfg["device"], "device_name": rate_res.get("device_name"),
        "threads": cfg["threads"], "matmul_gflops": rate, "matmul_gflops_per_cpu_s": cpu_rate,
        "flop_per_sample": FLOP_PER_SAMPLE,
        "data_note": note, "config": {k: v for k, v in cfg.items()},
    })
    print()
    print_table(rows)
    print(f"\nwrote {out_dir / 'perf.csv'}")
    return 0


# ------------------------------------------------------------------ report
def report_section(results_dir: Path) -> ReportSection | None:
    """The report's "Speed" section from ``results_dir/perf/perf.csv`` (None if absent)."""
    import pandas as pd

    path = Path(results_dir) / "perf" / "perf.csv"
    if not path.is_file():
        return None
    df = pd.read_csv(path, keep_default_na=False, na_values=["nan", ""])
    df["error"] = ["" if pd.isna(e) else str(e) for e in df["error"]]  # an empty cell means the case ran
    meta = {}
    try:
        meta = json.loads((path.parent / "perf.json").read_text())
    except (OSError, ValueError):
        pass
    table = df[["case", "batch_size", "steps", "epoch_time_s", "step_time_us", "samples_per_s",
                "vs_naive_torch", "vs_naive_tf", "x_floor", "cpu_vs_naive_torch", "cpu_vs_naive_tf",
                "cpu_x_floor", "overhead_frac"]].copy()
    table = table.rename(columns={
        "vs_naive_torch": "× faster than naive torch", "vs_naive_tf": "× faster than Keras fit",
        "x_floor": "× FLOP floor", "cpu_vs_naive_torch": "CPU time: × naive torch",
        "cpu_vs_naive_tf": "CPU time: × Keras fit", "cpu_x_floor": "CPU time: × floor"})
    lines = [
        f"`{meta.get('command', 'python -m bench.perf')}` on {meta.get('cpu', '?')} "
        f"({meta.get('device', '?')}, {meta.get('threads', '?')} thread(s)), {meta.get('finished', '')}. "
        f"Median of {int(df['reps'].max()) if df['reps'].notna().any() else '?'} epochs after a warm-up; "
        f"each case in its own process. Matrix-product rate {_fmt(meta.get('matmul_gflops'))} GFLOP/s "
        f"sets the floor ({FLOP_PER_SAMPLE:,} FLOP per sample per step). Ratios are given on wall time "
        f"and on process CPU time; with one thread the CPU-time ratios are the ones a busy machine "
        f"disturbs least."
    ]
    ok = df[df["error"] == ""]
    for batch in ok["batch_size"].astype(str).unique():
        best = []
        for fw in ("torch", "tensorflow"):
            sub = ok[(ok["batch_size"].astype(str) == batch) & (ok["framework"] == fw)
                     & ok["case"].str.startswith("harness")]
            if len(sub):
                row = sub.loc[sub["epoch_time_s"].idxmin()]
                best.append(f"{fw} {row['mode']}: {_fmt(row['epoch_time_s'])} s for {int(row['steps'])} steps, "
                            f"{_fmt(row['vs_naive_torch'], 2)}× naive torch, {_fmt(row['vs_naive_tf'], 2)}× Keras fit, "
                            f"{_fmt(row['x_floor'], 2)}× floor (CPU time: {_fmt(row['cpu_vs_naive_torch'], 2)}×, "
                            f"{_fmt(row['cpu_vs_naive_tf'], 2)}×, {_fmt(row['cpu_x_floor'], 2)}×)")
        if best:
            lines.append(f"Batch {batch}, best mode — " + "; ".join(best) + ".")
    if meta.get("data_note"):
        lines.append(meta["data_note"])
    failed = df[df["error"] != ""]
    if len(failed):
        lines.append("Failed cases: " + "; ".join(f"{c} (bs {b}): {e}" for c, b, e in
                                                  zip(failed["case"], failed["batch_size"], failed["error"])))
    return ReportSection(title="Speed", text="\n\n".join(lines), table=table)


# ------------------------------------------------------------------ child side
def _worker(job: dict[str, Any]) -> dict[str, Any]:
    if job["kind"] == "matmul":
        return _matmul_rate(job)
    from bench.data import load_dataset

    data = load_dataset({**job["data"], "limit_train": job["cap"] or job["data"].get("limit_train")},
                        log=lambda *_: None)
    if job["kind"] == "naive":
        return _naive(job, data)
    return _harness(job, data)


def _matmul_rate(job: dict[str, Any]) -> dict[str, Any]:
    """Best-case fp32 GEMM rate (square, large) with the benchmark's thread count."""
    import torch

    torch.set_num_threads(job["threads"])
    dev = torch.device(job["device"])
    n = 8192 if dev.type == "cuda" else 2048
    a, b = torch.randn(n, n, device=dev), torch.randn(n, n, device=dev)
    sync = torch.cuda.synchronize if dev.type == "cuda" else (lambda: None)
    times = []
    for _ in range(job["reps"] + 2):  # the first two warm up the BLAS
        sync()
        t0, c0 = time.perf_counter(), time.process_time()
        torch.mm(a, b)
        sync()
        times.append((time.perf_counter() - t0, time.process_time() - c0))
    name = torch.cuda.get_device_name(dev) if dev.type == "cuda" else cpu_name()
    flop = 2 * n ** 3 / 1e9
    # Per CPU-second is meaningful on CPU only (a GPU works while the host thread waits).
    per_cpu = flop / statistics.median(c for _, c in times[2:]) if dev.type == "cpu" else None
    return {"gflops": flop / statistics.median(w for w, _ in times[2:]), "cpu_gflops": per_cpu,
            "device_name": name}


def _naive(job: dict[str, Any], data) -> dict[str, Any]:
    batch = data.n_train if job["batch"] == "full" else job["batch"]
    if job["framework"] == "torch":
        from bench.frameworks.torch.naive import epoch_times

        times = epoch_times(data.x_train, data.y_train, batch, job["reps"], device=job["device"])
    else:
        from bench.frameworks.tf.naive import epoch_times

        times = epoch_times(data.x_train, data.y_train, batch, job["reps"])
    return {"epoch_time_s": statistics.median(w for w, _ in times), "steps": -(-data.n_train // batch),
            "n_train": data.n_train, "reps": len(times), "dataset": data.name,
            "cpu_time_s": statistics.median(c for _, c in times)}


class _Clocked:
    """Wraps a runner to add process CPU time per epoch (less sensitive to a busy machine
    than wall time when threads=1)."""

    def __init__(self, runner) -> None:
        self._runner, self.cpu_times = runner, []

    def __getattr__(self, name: str):
        return getattr(self._runner, name)

    def train_epoch(self, order, batch_size):
        t0 = time.process_time()
        out = self._runner.train_epoch(order, batch_size)
        self.cpu_times.append(time.process_time() - t0)
        return out


def harness_spec(framework: str, mode: str, batch: int | str, device: str, threads: int,
                 data: dict[str, Any], epochs: int, optimizer: str = "adam", jit: bool = False,
                 deterministic: bool = True) -> dict[str, Any]:
    """A run spec as ``bench.spec.build_spec`` makes it, from the conf files but without
    Hydra (``bench.perf.gpu_check`` uses it on a box that may not have Hydra)."""
    conf = Path(PROJECT_ROOT) / "conf"
    opt = read_flat_yaml(conf / "optimizer" / f"{optimizer}.yaml")
    fw = read_flat_yaml(conf / "framework" / f"{framework}.yaml")
    fw["jit_compile"] = jit
    batch_size = batch if batch is not None else opt["batch_size"]
    spec = {
        "framework": fw, "optimizer": opt, "data": data, "batch_size": batch_size, "epochs": epochs,
        "seed": 0, "device": device, "device_requested": device, "threads": threads, "mode": mode,
        "init": "shared", "deterministic": deterministic, "precision": "fp32", "step_log_points": 200,
        "progress": "none",
    }
    spec["run_id"] = f"{framework}-{optimizer}-{mode}{'-xla' if jit else ''}-bs{batch_size}-{device}"
    return spec


def _harness(job: dict[str, Any], data) -> dict[str, Any]:
    import csv
    import tempfile

    from bench.run.child import make_runner, resolve_batch_size
    from bench.loop import train
    from bench.results import read_json
    from models.init import initial_weights

    spec = harness_spec(job["framework"], job["mode"], job["batch"], job["device"], job["threads"],
                        job["data"], job["reps"], jit=bool(job.get("xla")), deterministic=job["deterministic"])
    batch = resolve_batch_size(spec, data.n_train)
    runner = _Clocked(make_runner(spec, data, initial_weights(spec["seed"])))
    with tempfile.TemporaryDirectory() as tmp:
        status = train(spec, runner, data, Path(tmp), batch)
        with open(Path(tmp) / "metrics.csv", newline="") as fh:
            rows = [r for r in csv.DictReader(fh) if int(r["epoch"]) > 0]
        warmup = (read_json(Path(tmp) / "run.json") or {}).get("warmup_time_s")
    if status != "completed":
        return {"error": f"run {status}"}
    def median(key: str) -> float:
        return statistics.median(float(r[key]) for r in rows)

    return {"epoch_time_s": median("epoch_time_s"), "overhead_frac": median("overhead_frac"),
            "steps": -(-data.n_train // batch), "n_train": data.n_train, "reps": len(rows),
            "warmup_s": warmup, "dataset": data.name, "cpu_time_s": statistics.median(runner.cpu_times)}


def worker_main(payload: str) -> int:
    job = json.loads(payload)
    try:
        result = _worker(job)
    except Exception as exc:  # reported as the case's error; the parent carries on
        import traceback

        traceback.print_exc()
        result = {"error": f"{type(exc).__name__}: {exc}"[:300]}
    print(RESULT_TAG + json.dumps(result), flush=True)
    return 0


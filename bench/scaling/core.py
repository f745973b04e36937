"""Parent side of the scaling pass: where does each framework stop being dispatch-bound?

One method (Adam with the framework's own optimizer, by default) is timed at batch sizes from 1 to
the whole training set, for every framework and model, under the timing pass's protocol: while
this pass holds the machine's CPU lock exclusively, every (framework, model) has a worker process
(``bench.scaling.worker``) that serves any batch size, and the workers are asked in turn for a
sample of a fixed number of steps, batch size by batch size, in interleaved rounds
(A B C ... A B C ...). Several worker processes per configuration are started one slot after the
other (slot 1 of every configuration, its rounds, then slot 2 ...), so what differs between
processes is sampled, and the intervals are two-level bootstraps: processes, then rounds.

``mode=best`` first times every mode of each framework at batch 32 in interleaved rounds and
keeps the faster one per framework and model (the evidence goes to scaling.json).

The FLOP floor is this machine's single-precision matrix-product rate (numpy's BLAS, with the
pass's thread count) divided by the model's training FLOPs per sample: no framework can train
faster than that many samples per second on these cores.

Writes ``results_dir/scaling/scaling.csv`` (one row per sample) and ``scaling.json``, and prints
a table of samples per second with their 95 % intervals and where the frameworks' curves cross.
Imports no framework: each worker imports its own.
"""
from __future__ import annotations

import json
import math
import os
import socket
import sys
import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from bench import frameworks
from bench.clock import CONTENTION_THRESHOLD, DRIFT
from bench.data import DataError, load_dataset
from bench.envs import interpreter
from bench.exits import BadInput
from bench.machine import cpu_name
from bench.options import Option, Options, boolean, choice, integer, names, nullable, number, pathname, text
from bench.results import write_csv, write_json
from bench.run.cpulock import CpuLock
from bench.run.proc import spec_env, start
from bench.scaling.analysis import COLUMNS, crossings, print_table, summarise
from bench.spec import MODES, build_spec, compose, conf_group, model_group
from bench.timing.core import Worker
from bench.timing.schedule import cpus_for
from models.layers import parse_model

PROBE_BATCH = 32  # mode=best compares the modes here: the tutorial's mini-batch size
PROBE_ROUNDS = 5
DEFAULT_BATCHES: list[int | str] = [1, 8, 32, 128, 512, 2048, "full"]
MATMUL_N = 512  # the floor's matrix product: big enough to run at the BLAS's steady rate


def _batches(key: str, raw: str) -> list[int | str]:
    out: list[int | str] = []
    for item in raw.split(","):
        item = item.strip()
        if item != "full" and (not item.isdigit() or int(item) < 1):
            raise BadInput(f"{key}: {item!r} is not a positive integer or 'full'")
        out.append(item if item == "full" else int(item))
    if not out:
        raise BadInput(f"{key}: give at least one batch size")
    return out


def _models() -> list[str]:
    return sorted(p.stem for p in (Path(__file__).resolve().parents[2] / "conf" / "model").glob("*.yaml"))


def _model_list(key: str, raw: str) -> list[str]:
    """conf/model/ names and model files' paths (``.yaml``), comma-separated."""
    given = [v.strip() for v in (text(key, raw) or "").split(",")]
    files = [v for v in given if v.endswith((".yaml", ".yml"))]
    if len(files) < len(given):  # the names among them, and the refusal of an empty item
        names(_models())(key, ",".join(v for v in given if v not in files) if "" not in given else raw)
    return given


OPTIONS = Options(
    "python -m bench.scaling",
    """Batch-size scaling: one method's time per step at each batch size, for every framework and
    model, timed in interleaved rounds in several worker processes per configuration while this
    pass holds the machine's CPU lock exclusively. Writes results_dir/scaling/scaling.csv (one row
    per sample) and scaling.json, and prints samples per second with 95 % intervals (two-level
    bootstrap: processes, then rounds), the FLOP floor, and where the frameworks' curves cross.""",
    {
        "results_dir": Option("results", "the table goes to results_dir/scaling/", pathname),
        "models": Option(["mlp", "lenet5"], "conf/model/ names or your own model files' paths "
                         "(DIR/model/mine.yaml), comma-separated", _model_list),
        "frameworks": Option(list(frameworks.NAMES), "frameworks timed, comma-separated", names(frameworks.NAMES)),
        "batch_sizes": Option(DEFAULT_BATCHES, "batch sizes, comma-separated (full = the whole training set)",
                              _batches),
        "optimizer": Option("adam", "a conf/optimizer/ name"),
        "impl": Option("native", "native | reference", choice("native", "reference")),
        "mode": Option("best", "best (the faster mode per framework and model, timed at batch "
                       f"{PROBE_BATCH} first) | " + " | ".join(MODES), choice("best", *MODES)),
        "data": Option("mnist_embedded", "a conf/data/ name"),
        "limit_train": Option(None, "train on the first N images (null: all)", nullable(integer(2))),
        "processes": Option(3, "worker processes per configuration, started one slot after the other",
                            integer(1)),
        "rounds": Option(3, "timed interleaved rounds per process", integer(1)),
        "budget_s": Option(300.0, "seconds of timed samples the pass aims at (start-ups and compiles "
                           "come on top)", number()),
        "min_sample_s": Option(0.2, "no sample is shorter than this many seconds (a scheduler tick "
                               "must not matter)", number()),
        "threads": Option(1, "intra-op threads of each worker", integer(1)),
        "contention_threshold": Option(CONTENTION_THRESHOLD, "a sample during which other processes used "
                                       "more than this share of the CPUs is left out", number(high=1.0)),
        "floor": Option(True, "measure the FLOP floor (numpy's matrix product)", boolean),
        "drift_time": Option(DRIFT["time"], "between-run allowance of a point's samples per second (as "
                             "bench.timing's: 0 for the pass's own spread only)", number(low_inclusive=True)),
        "drift_ratio": Option(DRIFT["ratio"], "the same for the paired time ratio of two frameworks",
                              number(low_inclusive=True)),
    },
    positional=("results_dir",),
)


def parse_args(argv: Sequence[str]) -> dict[str, Any]:
    cfg = OPTIONS.parse(argv)
    conf_group("data", str(cfg["data"]))  # BadInput when there is no such data config
    conf_group("optimizer", str(cfg["optimizer"]))
    # Curves, rows and tables name a model by its name; a file given by path is read from there.
    cfg["model_files"] = {}
    for given in cfg["models"]:
        name = str(model_group(given)["name"])
        if name in cfg["model_files"]:
            raise BadInput(f"models: {given} and {cfg['model_files'][name]} are both called {name}")
        cfg["model_files"][name] = given
    cfg["models"] = list(cfg["model_files"])
    return cfg


def model_file(cfg: Mapping[str, Any], model: str) -> str:
    """What ``compose`` reads for the model called ``model``: its conf/model/ name or its file's path."""
    return str(cfg.get("model_files", {}).get(model, model))


# ------------------------------------------------------------------ configurations
@dataclass
class Curve:
    """One (framework, model, mode): one worker per process slot serves all its batch sizes."""

    framework: str
    model: str
    mode: str
    spec: dict[str, Any]

    @property
    def name(self) -> str:
        return f"{self.framework} {self.model} {self.mode}"


def make_spec(cfg: Mapping[str, Any], framework: str, model: str, mode: str) -> dict[str, Any]:
    data = {"limit_train": cfg["limit_train"], "download": False}
    return build_spec(compose(framework, str(cfg["optimizer"]), str(cfg["data"]), model_file(cfg, model), data=data,
                              optimizer={"impl": cfg["impl"]}, batch_size=PROBE_BATCH, epochs=1,
                              threads=cfg["threads"], mode=mode, progress="none"))


def n_train_of(cfg: Mapping[str, Any]) -> int:
    data = {**conf_group("data", str(cfg["data"])), "limit_train": cfg["limit_train"], "download": False}
    try:
        return load_dataset(data, log=lambda *_: None).n_train
    except DataError as exc:
        raise BadInput(f"data={cfg['data']}: {exc}") from None


def resolve_batches(batches: Sequence[int | str], n_train: int) -> list[int]:
    """The batch sizes as numbers: ``full`` is the training set; sizes above it are left out."""
    out = sorted({n_train if b == "full" else int(b) for b in batches if b == "full" or int(b) <= n_train})
    return out


class CurveWorker(Worker):
    """A :class:`bench.timing.core.Worker` that starts ``bench.scaling.worker`` and asks for any batch size."""

    def begin(self) -> None:
        spec = self.config["spec"]
        options = {"cpus": self.cpus} if self.cpus else {}
        try:
            self.proc = start("bench.scaling.worker", [json.dumps(spec), json.dumps(options)], env=spec_env(spec),
                              python=interpreter(spec), stdin=-1, stdout=-1, stderr=self.log)
        except OSError as exc:
            self.error = f"cannot start: {exc.strerror or exc}"
            return
        self.listen()

    def ready(self) -> bool:
        ok = super().ready()
        self.config["n_train"] = self.ready_info.get("n_train")
        return ok

    def sample_at(self, steps: int, batch: int) -> dict[str, Any]:
        self.proc.stdin.write(json.dumps({"steps": steps, "batch_size": batch}) + "\n")
        self.proc.stdin.flush()
        got = self._answer()
        if "error" in got:
            raise RuntimeError(got["error"])
        return got


def steps_for(worker: CurveWorker, batch: int, n_train: int, sample_s: float) -> int:
    """Steps of ``batch`` that take about ``sample_s``: doubling runs, each size twice, the second
    timed (the first pays a compile where a framework compiles per length)."""
    steps, target = 1, min(0.1, sample_s / 4)
    while True:
        worker.sample_at(steps, batch)
        took = worker.sample_at(steps, batch)["time_s"]
        if took >= target or steps >= 10**7:
            break
        steps *= 2 if took <= 0 else min(16, max(2, math.ceil(target / took)))
    want = max(1, round(sample_s * steps / max(took, 1e-9)))
    per_epoch = max(1, n_train // batch)
    return per_epoch * max(1, round(want / per_epoch)) if want > per_epoch else want


# ------------------------------------------------------------------ the pass
class Pass:
    """Workers of one slot, their step counts and the rows they gave."""

    def __init__(self, cfg: Mapping[str, Any], out: Path) -> None:
        self.cfg, self.out = cfg, out
        self.rows: list[dict[str, Any]] = []
        self.steps: dict[tuple[str, int], int] = {}  # (curve name, batch) -> steps per sample
        self.errors: dict[str, str] = {}
        self.n_started = 0

    def start_workers(self, curves: Sequence[Curve], process: int) -> list[CurveWorker]:
        """One worker per curve, each pinned as the timing pass pins its workers (the cores taken in
        turn, one further per curve and per process slot)."""
        allowed = sorted(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else []
        workers = []
        for i, curve in enumerate(curves):
            log = open(self.out / "logs" / f"worker-{self.n_started}.log", "w")
            self.n_started += 1
            w = CurveWorker({"spec": curve.spec, "curve": curve, "row": {}}, log)
            w.cpus = cpus_for(i, process, int(curve.spec["threads"]), allowed) if allowed else None
            w.begin()
            workers.append(w)
        for w in workers:
            if not w.ready():
                self.fail(w, w.error or "not ready")
        return [w for w in workers if w.error is None]

    def fail(self, w: CurveWorker, why: str) -> None:
        w.error = why
        self.errors[w.config["curve"].name] = why
        print(f"[scaling] {w.config['curve'].name}: failed: {why}", file=sys.stderr, flush=True)

    def guarded(self, w: CurveWorker, fn) -> Any:
        try:
            return fn()
        except (RuntimeError, OSError, ValueError) as exc:
            self.fail(w, str(exc))
            return None

    def calibrate(self, workers: Sequence[CurveWorker], batches: Sequence[int], sample_s: float) -> None:
        for w in workers:
            for b in batches:
                key = (w.config["curve"].name, b)
                if key not in self.steps and w.error is None:
                    self.steps[key] = self.guarded(w, lambda w=w, b=b: steps_for(w, b, int(w.config["n_train"]),
                                                                                  sample_s)) or 0
                    w.reply_timeout_s = max(w.reply_timeout_s, 20 * sample_s)

    def rounds(self, workers: Sequence[CurveWorker], batches: Sequence[int], n_rounds: int, process: int,
               warmup: bool = True) -> list[dict[str, Any]]:
        """Untimed warm-up samples, then ``n_rounds`` rounds: in each, every batch size, every worker."""
        rows = []
        if warmup:
            for b in batches:
                for w in workers:
                    if w.error is None:
                        self.guarded(w, lambda w=w, b=b: w.sample_at(self.steps[(w.config["curve"].name, b)], b))
        for rnd in range(1, n_rounds + 1):
            for b in batches:
                for w in workers:
                    if w.error is not None:
                        continue
                    steps = self.steps[(w.config["curve"].name, b)]
                    got = self.guarded(w, lambda w=w, b=b, s=steps: w.sample_at(s, b))
                    if got is None:
                        continue
                    curve = w.config["curve"]
                    spec = curve.spec
                    rows.append({
                        "framework": curve.framework, "model": curve.model, "mode": curve.mode,
                        "optimizer": spec["optimizer"]["name"], "impl": spec["optimizer"]["impl"],
                        "batch_size": b, "n_train": w.config["n_train"], "process": process, "round": rnd,
                        "steps": got["steps"], "time_s": got["time_s"],
                        "time_per_step_s": got["time_s"] / got["steps"],
                        "samples_per_s": got["steps"] * b / got["time_s"] if got["time_s"] > 0 else math.nan,
                        "cpu_time_s": got["cpu_time_s"], "contention": got["contention"],
                        "dataset": spec["data"]["name"], "threads": spec["threads"], "device": spec["device"],
                        "pace_s": got.get("pace_s", math.nan)})
        return rows


def close(workers: Sequence[CurveWorker]) -> None:
    for w in workers:
        w.close()


def probe_modes(p: Pass, cfg: Mapping[str, Any], sample_s: float) -> tuple[dict[tuple[str, str], str], list[dict]]:
    """mode=best: every mode of each framework and model at batch 32, interleaved; the faster wins."""
    curves = [Curve(fw, model, mode, make_spec(cfg, fw, model, mode))
              for model in cfg["models"] for fw in cfg["frameworks"] for mode in frameworks.get(fw).modes]
    workers = p.start_workers(curves, process=1)
    try:
        batch = [min(PROBE_BATCH, int(workers[0].config["n_train"]))] if workers else []
        p.calibrate(workers, batch, sample_s)
        rows = p.rounds(workers, batch, PROBE_ROUNDS, process=0)
    finally:
        close(workers)
    chosen, evidence = {}, []
    for model in cfg["models"]:
        for fw in cfg["frameworks"]:
            medians = {}
            for mode in frameworks.get(fw).modes:
                times = [r["time_per_step_s"] for r in rows
                         if (r["framework"], r["model"], r["mode"]) == (fw, model, mode)]
                if times:
                    medians[mode] = float(np.median(times))
            if medians:
                chosen[(fw, model)] = min(medians, key=medians.get)
                evidence.append({"framework": fw, "model": model, "chosen": chosen[(fw, model)],
                                 "median_time_per_step_s": medians, "batch_size": batch[0] if batch else None,
                                 "rounds": PROBE_ROUNDS})
    return chosen, evidence


def matmul_gflops(threads: int, reps: int = 7) -> list[float]:
    """This machine's float32 matrix-product rate (GFLOP/s), one figure per rep, through numpy's BLAS."""
    from threadpoolctl import threadpool_limits

    rng = np.random.default_rng(0)
    a = rng.standard_normal((MATMUL_N, MATMUL_N), dtype=np.float32)
    b = rng.standard_normal((MATMUL_N, MATMUL_N), dtype=np.float32)
    flop = 2 * MATMUL_N**3
    out = []
    with threadpool_limits(limits=threads):
        a @ b
        for _ in range(reps):
            count, t0 = 0, time.perf_counter()
            while time.perf_counter() - t0 < 0.2:
                a @ b
                count += 1
            out.append(count * flop / (time.perf_counter() - t0) / 1e9)
    return out


def scaling_pass(cfg: dict[str, Any], command: str) -> int:
    out = Path(cfg["results_dir"]) / "scaling"
    (out / "logs").mkdir(parents=True, exist_ok=True)
    n_train = n_train_of(cfg)
    batches = resolve_batches(cfg["batch_sizes"], n_train)
    for model in cfg["models"]:
        for fw in cfg["frameworks"]:
            make_spec(cfg, fw, model, frameworks.get(fw).modes[0])  # BadInput before anything starts
    t0, started = time.perf_counter(), time.strftime("%Y-%m-%dT%H:%M:%S%z")
    n_curves = len(cfg["models"]) * len(cfg["frameworks"])
    samples = n_curves * len(batches) * cfg["processes"] * (cfg["rounds"] + 1)
    sample_s = max(cfg["min_sample_s"], cfg["budget_s"] / max(1, samples))
    print(f"[scaling] {n_curves} curve(s) x {len(batches)} batch sizes {batches}, {cfg['processes']} process(es) "
          f"x {cfg['rounds']} round(s), samples of {sample_s:.2g} s", flush=True)
    p = Pass(cfg, out)
    meta: dict[str, Any] = {}
    with CpuLock(exclusive=True, who="scaling pass"):
        meta["measure_start"] = time.time()
        if cfg["floor"]:
            meta["matmul_gflops"] = matmul_gflops(cfg["threads"])
        if cfg["mode"] == "best":
            chosen, meta["mode_probe"] = probe_modes(p, cfg, sample_s)
        else:
            chosen = {}
        curves = [Curve(fw, model, chosen.get((fw, model), cfg["mode"] if cfg["mode"] != "best"
                                                  else frameworks.get(fw).modes[-1]), {})
                  for model in cfg["models"] for fw in cfg["frameworks"]]
        for c in curves:
            c.spec = make_spec(cfg, c.framework, c.model, c.mode)
        for slot in range(1, cfg["processes"] + 1):
            workers = p.start_workers([c for c in curves if c.name not in p.errors], process=slot)
            try:
                p.calibrate(workers, batches, sample_s)  # the first slot measures; the next reuse its counts
                p.rows += p.rounds(workers, batches, cfg["rounds"], process=slot)
            finally:
                close(workers)
            print(f"[scaling] process slot {slot}/{cfg['processes']} done, {time.perf_counter() - t0:.0f} s",
                  flush=True)
        meta["measure_end"] = time.time()
    meta.update({
        "command": command, "started": started, "host": socket.gethostname(), "cpu": cpu_name(),
        "processes": cfg["processes"], "rounds": cfg["rounds"], "sample_s": sample_s, "budget_s": cfg["budget_s"],
        "batch_sizes": batches, "n_train": n_train, "dataset": str(cfg["data"]), "optimizer": cfg["optimizer"],
        "impl": cfg["impl"], "mode": cfg["mode"], "threads": cfg["threads"],
        "contention_threshold": cfg["contention_threshold"], "elapsed_s": time.perf_counter() - t0,
        "drift": {"time": cfg["drift_time"], "ratio": cfg["drift_ratio"]},
        "curves": [{"framework": c.framework, "model": c.model, "mode": c.mode, "error": p.errors.get(c.name)}
                   for c in curves],
        "flop_per_sample": {m: parse_model(model_group(model_file(cfg, m))).flops_per_sample() for m in cfg["models"]},
    })
    write_csv(out / "scaling.csv", p.rows, COLUMNS)
    write_json(out / "scaling.json", meta)
    points = summarise(p.rows, meta)
    print_table(points, meta)
    for model in cfg["models"]:
        for sentence in crossings(p.rows, model, cfg["frameworks"], float(cfg["contention_threshold"]),
                                  cfg["drift_ratio"]):
            print(sentence)
    print(f"[scaling] {meta['elapsed_s']:.0f} s; wrote {out / 'scaling.csv'}", flush=True)
    return 1 if p.errors else 0

"""``bench.perf``'s configuration, its cases, and the rows of ``perf.csv`` (framework-neutral).

Every time is the median of a case's timed epochs with a 95 % bootstrap interval
(:func:`bench.stats.median_ci`); every ratio (to a naive loop, to the FLOP floor, to torch)
is :func:`bench.stats.ratio_ci` of the two cases' samples, unpaired: the cases ran one after
the other, so rep i of one has nothing in common with rep i of the other.
"""
from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from typing import Any, NamedTuple

from bench import frameworks
from bench.data import DataError, load_dataset
from bench.exits import BadInput
from bench.machine import resolve_device
from bench.options import Option, Options, boolean, choice, integer, names, nullable, optional_pathname, pathname, text
from bench.perf.layers import gemm_floor
from bench.spec import FRAMEWORKS, MODES, build_spec, compose, conf_group
from bench.stats import Interval, median_ci, ratio_ci
from models.layers import DEFAULT_MODEL, parse_model

BASE_FRAMEWORK = frameworks.BASE  # ``vs_torch``: every case against the base framework's, same kind and mode
MEASURED = frameworks.NAMES  # measured by default


class Naive(NamedTuple):
    """A framework's loop as the tutorial writes it, the baseline of the ``vs_naive_*`` ratios."""

    case: str  # the ``case`` column
    column: str  # the ratio's column in perf.csv
    module: str  # its ``epoch_times(images, labels, batch_size, epochs, model, ...)``


NAIVE = {fw.name: Naive(fw.naive, fw.naive_column, fw.module("naive")) for fw in frameworks.FRAMEWORKS.values()}
NAIVE_KEYS = {fw: naive.column for fw, naive in NAIVE.items()}
# Figures that carry an interval: ``<key>_lo`` and ``<key>_hi`` columns follow the original ones.
INTERVAL_KEYS = ("epoch_time_s", "step_time_us", "samples_per_s", "cpu_time_s", *NAIVE_KEYS.values(), "x_floor",
                 *(f"cpu_{k}" for k in NAIVE_KEYS.values()), "cpu_x_floor", "vs_torch")
COLUMNS = (
    "case", "framework", "mode", "batch_size", "n_train", "steps", "reps", "epoch_time_s",
    "step_time_us", "samples_per_s", "cpu_time_s", *NAIVE_KEYS.values(),
    "floor_s", "x_floor", *(f"cpu_{k}" for k in NAIVE_KEYS.values()), "cpu_x_floor", "overhead_frac",
    "warmup_s", "threads", "device", "dataset", "error", "vs_torch",
    *(f"{key}_{end}" for key in INTERVAL_KEYS for end in ("lo", "hi")),
    "model", "flop_per_sample", "gemm_floor_s", "x_gemm", "x_gemm_lo", "x_gemm_hi",
)
QUICK = {"limit_train": 1024, "reps": 1, "cap_steps": 64}  # toy size for tests: one rep, no interval
MATMUL_REPS = 5


def _batches(key: str, raw: str) -> list[int | str]:
    out: list[int | str] = []
    for item in (text(key, raw) or "").split(","):
        item = item.strip()
        if item != "full" and (not item.isdigit() or int(item) < 1):
            raise BadInput(f"{key}: {item!r} is not a positive integer or 'full'")
        out.append(item if item == "full" else int(item))
    return out


OPTIONS = Options(
    "python -m bench.perf",
    """The harness's speed against the tutorial's naive loops and the FLOP floor: this machine's
    matrix-product rate, the tutorial's loops as written and the harness's runners in each mode,
    for each batch size, all with one model (the tutorial's MLP unless `model` says) and Adam, one
    case per child process. Every time is the
    median of `reps` epochs after a warm-up, with a 95 % bootstrap interval. Writes
    results_dir/perf/perf.csv and perf.json and prints the table.""",
    {
        "results_dir": Option("results", "the table goes to results_dir/perf/", pathname),
        "data": Option("fashion_mnist", "a conf/data/ name; without its files, mnist_embedded, loudly"),
        "model": Option(DEFAULT_MODEL, "the layer list every case trains: a conf/model/ name, or the path of "
                        "your own model file (DIR/model/mine.yaml)"),
        "device": Option("cpu", "cpu | cuda | auto (cuda where a GPU is visible)", choice("cpu", "cuda", "auto")),
        "threads": Option(1, "intra-op threads of each case", integer(1)),
        "reps": Option(5, "timed epochs per case (1: no interval)", integer(1)),
        "batches": Option([1, 32, "full"], "batch sizes, comma-separated (full = the whole set)", _batches),
        "cap_steps": Option(2000, "steps timed at batch 1", integer(1)),
        "frameworks": Option(list(MEASURED), "frameworks measured, comma-separated", names(FRAMEWORKS)),
        "modes": Option(list(MODES), "execution modes of the harness, comma-separated", names(MODES)),
        "xla": Option(False, "true: adds TensorFlow compiled + XLA", boolean),
        "naive": Option(True, "false: leaves out the tutorial's loops", boolean),
        "layers": Option(False, "true: adds where each harness step's time goes, layer by layer "
                         "(layers.csv; bench.perf.layers)", boolean),
        "limit_train": Option(None, "train on the first N images (null: all)", nullable(integer(2))),
        "quick": Option(False, f"toy size for tests: {', '.join(f'{k}={v}' for k, v in QUICK.items())} "
                        "unless given", boolean),
        "deterministic": Option(True, "ask the frameworks for deterministic kernels", boolean),
        "data_root": Option(None, "folder of the data files (null: the conf file's root)", optional_pathname),
    },
)


def parse_args(argv: Sequence[str]) -> dict[str, Any]:
    """``key=value`` arguments over :data:`OPTIONS` (QUICK first when quick=true); BadInput if wrong."""
    given = OPTIONS.given(argv)
    cfg = OPTIONS.defaults()
    if given.get("quick"):
        cfg.update(QUICK)
    cfg.update(given)
    cfg["device"] = resolve_device(cfg["device"])  # BadInput for cuda without a GPU
    conf_group("data", str(cfg["data"]))  # BadInput when there is no such data config
    compose(MEASURED[0], "adam", str(cfg["data"]), str(cfg["model"]))  # ... or no such model
    return cfg


def resolve_data(cfg: Mapping[str, Any]) -> tuple[dict[str, Any], str | None]:
    """The data config the children load, and a loud note if we fell back."""
    data = conf_group("data", str(cfg["data"]))
    data["download"] = False  # a benchmark must not wait on the network
    if cfg["data_root"]:
        data["root"] = str(cfg["data_root"])
    data["limit_train"] = cfg["limit_train"]
    try:
        load_dataset(data, log=lambda *_: None)
        return data, None
    except DataError as exc:
        fallback = {**conf_group("data", "mnist_embedded"), "limit_train": cfg["limit_train"]}
        note = (f"!!! {exc} -- measuring on mnist_embedded (4,000 training images) instead: "
                f"per-sample figures stay comparable, per-epoch figures are NOT 60k-epoch numbers")
        return fallback, note


def label(job: Mapping[str, Any]) -> str:
    """The ``case`` column: which loop, which framework, which mode."""
    if job["kind"] == "naive":
        return NAIVE[job["framework"]].case
    return f"harness {job['framework']} {_mode(job)}"


def _mode(job: Mapping[str, Any]) -> str:
    return job["mode"] + ("+xla" if job.get("xla") else "")


def plan(cfg: Mapping[str, Any], data: Mapping[str, Any]) -> list[dict[str, Any]]:
    """Every case of the run, in the order they execute; a harness case carries its run spec."""
    jobs = []
    base = {"device": cfg["device"], "threads": cfg["threads"], "reps": cfg["reps"]}
    for batch in cfg["batches"]:
        cap = cfg["cap_steps"] if batch == 1 else None
        case_data = {**data, "limit_train": cap or data.get("limit_train")}
        if cfg["naive"]:
            for fw in cfg["frameworks"]:
                if fw in NAIVE:
                    jobs.append({**base, "kind": "naive", "framework": fw, "mode": "naive", "batch": batch,
                                 "data": case_data, "deterministic": False,  # the tutorial's loop as written
                                 "model": compose(fw, "adam", str(data["name"]), str(cfg["model"]))["model"]})
        for fw in cfg["frameworks"]:
            variants = [(mode, False) for mode in cfg["modes"]]
            if fw == "tensorflow" and cfg["xla"]:
                variants.append(("compiled", True))
            for mode, xla in variants:
                spec = build_spec(compose(
                    fw, "adam", str(data["name"]), str(cfg["model"]), data=case_data,
                    framework={"jit_compile": True} if xla else {}, batch_size=batch, epochs=cfg["reps"],
                    device=cfg["device"], threads=cfg["threads"], mode=mode,
                    deterministic=bool(cfg["deterministic"]), progress="none"))
                jobs.append({**base, "kind": "harness", "framework": fw, "mode": mode, "xla": xla, "batch": batch,
                             "data": case_data, "deterministic": spec["deterministic"], "spec": spec,
                             "model": spec["model"]})
    return jobs


def _put(row: dict[str, Any], key: str, iv: Interval) -> None:
    row[key], row[f"{key}_lo"], row[f"{key}_hi"] = iv.est, iv.lo, iv.hi


def _scaled(iv: Interval, factor: float, invert: bool = False) -> Interval:
    """``factor * iv`` or ``factor / iv`` (the ends swap then)."""
    if invert:
        return Interval(factor / iv.est, factor / iv.hi, factor / iv.lo, iv.n)
    return Interval(factor * iv.est, factor * iv.lo, factor * iv.hi, iv.n)


def build_rows(results: Sequence[tuple[Mapping[str, Any], Mapping[str, Any]]], matmul: Mapping[str, Any],
               dataset: str, gemm: Mapping[tuple, Sequence[float]] | None = None) -> list[dict[str, Any]]:
    """One perf.csv row per case: its median time and the ratios, each with a 95 % interval.

    ``results`` pairs each job with its worker's result (``epoch_times``, ``cpu_times``...);
    ``matmul`` is the GEMM result (``gflop`` per product, ``times``, ``cpu_times``) that sets
    the floor: the time the model's FLOPs per sample (``models.layers``) would take at that rate.
    The cpu_* ratios use process CPU time instead of wall time: with threads=1 they
    are what the wall ratios would be on an idle machine, and other processes barely move them.
    ``gemm`` holds each of the models' matrix products' seconds, one per round
    (``bench.perf.layers.gemm_seconds``): the second floor, the step's products at their own
    shapes (``gemm_floor_s`` an epoch, ``x_gemm``); none for the full batch.
    """
    ok = [(job, res) for job, res in results if not res.get("error")]
    naive = {(job["framework"], job["batch"]): res for job, res in ok if job["kind"] == "naive"}
    same_kind = {(job["framework"], job["kind"], _mode(job), job["batch"]): res for job, res in ok}
    rows = []
    for job, res in results:
        steps, n = res.get("steps"), res.get("n_train")
        model = parse_model(job["model"])
        flops = model.flops_per_sample()
        row: dict[str, Any] = {
            "case": label(job), "framework": job["framework"], "mode": _mode(job), "batch_size": job["batch"],
            "n_train": n, "steps": steps, "reps": len(res.get("epoch_times") or []),
            "overhead_frac": res.get("overhead_frac"), "warmup_s": res.get("warmup_s"), "threads": job["threads"],
            "device": job["device"], "dataset": res.get("dataset", dataset), "error": res.get("error", ""),
            "model": model.name, "flop_per_sample": flops}
        times, cpu = res.get("epoch_times"), res.get("cpu_times")
        if not (times and steps and n):
            rows.append(row)
            continue
        samples = n if job["batch"] == "full" else min(n, steps * job["batch"])
        t = median_ci(times)
        _put(row, "epoch_time_s", t)
        _put(row, "step_time_us", _scaled(t, 1e6 / steps))
        _put(row, "samples_per_s", _scaled(t, samples, invert=True))
        for fw, key in NAIVE_KEYS.items():
            ref = naive.get((fw, job["batch"]), {})
            _put(row, key, Interval(1.0, 1.0, 1.0, t.n) if ref is res  # a loop against itself: 1 exactly
                 else ratio_ci(ref.get("epoch_times") or [], times, paired=False))
        if job["framework"] != BASE_FRAMEWORK:
            base = same_kind.get((BASE_FRAMEWORK, job["kind"], _mode(job), job["batch"]), {})
            _put(row, "vs_torch", ratio_ci(base.get("epoch_times") or [], times, paired=False))
        floor = [samples * flops * s / (matmul["gflop"] * 1e9) for s in matmul.get("times") or []]
        if floor:
            row["floor_s"] = median_ci(floor).est
            _put(row, "x_floor", ratio_ci(times, floor, paired=False))
        if job["batch"] != "full":
            # the epoch's steps, the last one counted whole: its products are timed at the full batch
            per_step = gemm_floor(gemm, [p for per_layer in model.gemms(job["batch"]) for p in per_layer])
            if per_step:
                epoch_floor = [steps * s for s in per_step]
                row["gemm_floor_s"] = median_ci(epoch_floor).est
                _put(row, "x_gemm", ratio_ci(times, epoch_floor, paired=False))
        if cpu:
            _put(row, "cpu_time_s", median_ci(cpu))
            for fw, key in NAIVE_KEYS.items():
                ref = naive.get((fw, job["batch"]), {})
                _put(row, f"cpu_{key}", Interval(1.0, 1.0, 1.0, len(cpu)) if ref is res
                     else ratio_ci(ref.get("cpu_times") or [], cpu, paired=False))
            cpu_floor = [samples * flops * s / (matmul["gflop"] * 1e9) for s in matmul.get("cpu_times") or []]
            if cpu_floor:
                _put(row, "cpu_x_floor", ratio_ci(cpu, cpu_floor, paired=False))
        rows.append(row)
    return rows


def fmt(value: Any, digits: int = 3) -> str:
    """A table cell: numbers to ``digits`` significant digits, '-' for nothing."""
    if value is None or value == "" or (isinstance(value, float) and math.isnan(value)):
        return "-"
    if isinstance(value, float):
        return f"{value:.{digits}g}"
    return str(value)

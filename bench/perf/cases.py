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

from bench.data import DataError, load_dataset
from bench.exits import BadInput
from bench.spec import FRAMEWORKS, MODES, build_spec, compose, conf_group, parse_scalar
from bench.stats import Interval, median_ci, ratio_ci
from models.init import LAYERS

# Multiply-adds per sample of one training step, x2 for FLOPs: forward (both layers),
# backward weight gradients (both layers) and the hidden-layer input gradient; the input
# layer's input gradient is never needed. 409,088 FLOP/sample: 24.5 GFLOP per 60k epoch.
FLOP_PER_SAMPLE = 2 * (2 * sum(i * o for i, o in LAYERS) + LAYERS[1][0] * LAYERS[1][1])
BASE_FRAMEWORK = "torch"  # ``vs_torch``: every case against torch's case of the same kind and mode
MEASURED = ("torch", "tensorflow", "jax")  # measured by default (any of bench.spec.FRAMEWORKS may be asked)


class Naive(NamedTuple):
    """A framework's loop as the tutorial writes it, the baseline of the ``vs_naive_*`` ratios."""

    case: str  # the ``case`` column
    column: str  # the ratio's column in perf.csv
    module: str  # its ``epoch_times(images, labels, batch_size, epochs, ...)``


NAIVE = {
    "torch": Naive("naive torch DataLoader", "vs_naive_torch", "bench.frameworks.torch.naive"),
    "tensorflow": Naive("naive keras fit", "vs_naive_tf", "bench.frameworks.tf.naive"),
    "jax": Naive("naive jax loop", "vs_naive_jax", "bench.frameworks.jax.naive"),
}
NAIVE_KEYS = {fw: naive.column for fw, naive in NAIVE.items()}
# Figures that carry an interval: ``<key>_lo`` and ``<key>_hi`` columns follow the original ones.
INTERVAL_KEYS = ("epoch_time_s", "step_time_us", "samples_per_s", "cpu_time_s", *NAIVE_KEYS.values(), "x_floor",
                 *(f"cpu_{k}" for k in NAIVE_KEYS.values()), "cpu_x_floor", "vs_torch")
COLUMNS = (
    "case", "framework", "mode", "batch_size", "n_train", "steps", "reps", "epoch_time_s",
    "step_time_us", "samples_per_s", "cpu_time_s", "vs_naive_torch", "vs_naive_tf",
    "floor_s", "x_floor", "cpu_vs_naive_torch", "cpu_vs_naive_tf", "cpu_x_floor", "overhead_frac",
    "warmup_s", "threads", "device", "dataset", "error", "vs_torch", "vs_naive_jax", "cpu_vs_naive_jax",
    *(f"{key}_{end}" for key in INTERVAL_KEYS for end in ("lo", "hi")),
)
DEFAULTS: dict[str, Any] = {
    "results_dir": "results", "data": "fashion_mnist", "device": "cpu", "threads": 1, "reps": 5,
    "batches": "1,32,full", "cap_steps": 2000, "frameworks": ",".join(MEASURED),
    "modes": ",".join(MODES), "xla": False, "naive": True, "limit_train": None, "quick": False,
    "deterministic": True, "data_root": None,
}
QUICK = {"limit_train": 1024, "reps": 1, "cap_steps": 64}  # toy size for tests: one rep, no interval
MATMUL_REPS = 5


def parse_args(argv: Sequence[str]) -> dict[str, Any]:
    """``key=value`` arguments over DEFAULTS (QUICK first when quick=true); BadInput if wrong."""
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
    cfg["frameworks"] = _choices("frameworks", cfg["frameworks"], FRAMEWORKS)
    cfg["modes"] = _choices("modes", cfg["modes"], MODES)
    conf_group("data", str(cfg["data"]))  # BadInput when there is no such data config
    return cfg


def _batch(text: str) -> int | str:
    text = text.strip()
    if text == "full":
        return "full"
    if not text.isdigit() or int(text) < 1:
        raise BadInput(f"batches: {text!r} is not a positive integer or 'full'")
    return int(text)


def _choices(key: str, value: Any, allowed: Sequence[str]) -> list[str]:
    items = [v.strip() for v in str(value).split(",") if v.strip()]
    bad = [v for v in items if v not in allowed]
    if bad or not items:
        raise BadInput(f"{key}={value!r}: choose from {', '.join(allowed)}")
    return items


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
                                 "data": case_data, "deterministic": False})  # the tutorial's loop as written
        for fw in cfg["frameworks"]:
            variants = [(mode, False) for mode in cfg["modes"]]
            if fw == "tensorflow" and cfg["xla"]:
                variants.append(("compiled", True))
            for mode, xla in variants:
                spec = build_spec(compose(
                    fw, "adam", str(data["name"]), data=case_data, framework={"jit_compile": True} if xla else {},
                    batch_size=batch, epochs=cfg["reps"], device=cfg["device"], threads=cfg["threads"], mode=mode,
                    deterministic=bool(cfg["deterministic"]), progress="none"))
                jobs.append({**base, "kind": "harness", "framework": fw, "mode": mode, "xla": xla, "batch": batch,
                             "data": case_data, "deterministic": spec["deterministic"], "spec": spec})
    return jobs


def _put(row: dict[str, Any], key: str, iv: Interval) -> None:
    row[key], row[f"{key}_lo"], row[f"{key}_hi"] = iv.est, iv.lo, iv.hi


def _scaled(iv: Interval, factor: float, invert: bool = False) -> Interval:
    """``factor * iv`` or ``factor / iv`` (the ends swap then)."""
    if invert:
        return Interval(factor / iv.est, factor / iv.hi, factor / iv.lo, iv.n)
    return Interval(factor * iv.est, factor * iv.lo, factor * iv.hi, iv.n)


def build_rows(results: Sequence[tuple[Mapping[str, Any], Mapping[str, Any]]], matmul: Mapping[str, Any],
               dataset: str) -> list[dict[str, Any]]:
    """One perf.csv row per case: its median time and the ratios, each with a 95 % interval.

    ``results`` pairs each job with its worker's result (``epoch_times``, ``cpu_times``...);
    ``matmul`` is the GEMM result (``gflop`` per product, ``times``, ``cpu_times``) that sets
    the floor. The cpu_* ratios use process CPU time instead of wall time: with threads=1 they
    are what the wall ratios would be on an idle machine, and other processes barely move them.
    """
    ok = [(job, res) for job, res in results if not res.get("error")]
    naive = {(job["framework"], job["batch"]): res for job, res in ok if job["kind"] == "naive"}
    same_kind = {(job["framework"], job["kind"], _mode(job), job["batch"]): res for job, res in ok}
    rows = []
    for job, res in results:
        steps, n = res.get("steps"), res.get("n_train")
        row: dict[str, Any] = {
            "case": label(job), "framework": job["framework"], "mode": _mode(job), "batch_size": job["batch"],
            "n_train": n, "steps": steps, "reps": len(res.get("epoch_times") or []),
            "overhead_frac": res.get("overhead_frac"), "warmup_s": res.get("warmup_s"), "threads": job["threads"],
            "device": job["device"], "dataset": res.get("dataset", dataset), "error": res.get("error", "")}
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
        floor = [samples * FLOP_PER_SAMPLE * s / (matmul["gflop"] * 1e9) for s in matmul.get("times") or []]
        if floor:
            row["floor_s"] = median_ci(floor).est
            _put(row, "x_floor", ratio_ci(times, floor, paired=False))
        if cpu:
            _put(row, "cpu_time_s", median_ci(cpu))
            for fw, key in NAIVE_KEYS.items():
                ref = naive.get((fw, job["batch"]), {})
                _put(row, f"cpu_{key}", Interval(1.0, 1.0, 1.0, len(cpu)) if ref is res
                     else ratio_ci(ref.get("cpu_times") or [], cpu, paired=False))
            cpu_floor = [samples * FLOP_PER_SAMPLE * s / (matmul["gflop"] * 1e9) for s in matmul.get("cpu_times") or []]
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

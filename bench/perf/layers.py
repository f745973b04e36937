"""Where a training step's time goes, layer by layer: ``python -m bench.perf layers=true``.

A block is one layer, but the first runs up to the first layer with parameters (``models.layers``
``Model.blocks``: the MLPs' first is flatten → dense; alone, flatten has no gradient to take). For
each framework,
mode and batch size (not the full batch), one child builds with the framework's own builder the
model cut before its first block (no layers: one scalar weight, what every pass pays for the call
and the gradient machinery), after its first block, after its second, …, and the whole model, and
times one forward
and backward pass of each (the value and gradient of ``sum(output · g)`` for a fixed random ``g``:
the forward, every weight gradient and every input gradient but the model's input, as in a
training step; each framework's ``profile.prefix_pass``), the prefixes interleaved round by round.
Block k's time is prefix k's minus prefix k−1's, paired by round, so the call and the blocks
add up to the whole pass exactly. It is the block's marginal cost: its forward, its weight gradients and, but
for the first, its input gradient, plus whatever adding it changes in how the framework computes
the blocks before it (a layout, a fusion, a kernel choice).

The harness's own step time at that batch (the same bench.perf run) less the whole pass is the
rest of a step: the loss, the optimizer's update and the loop around them, and what running
inside that loop changes in the layers (a compiled epoch's own layouts). Each block's rate is
its FLOPs (``Model.step_flops``) over its time, and its ratio to the floor its time over what those
FLOPs take at the run's matrix-product rate (2048², the best case). A second floor knows the shapes:
each layer's products as they are (``Model.gemms``: a convolution as its im2col product, 25 × 6
for LeNet-5's first; a weight gradient reading its stored input transposed), each timed with the
machine's own GEMM in one more child, the one ``perf.csv``'s ``x_gemm`` reads too
(``gemm_floor_us``, ``x_gemm``): what a framework that spent nothing beyond its matrix products
would take. Written to
``results_dir/perf/layers.csv``.

Framework-neutral: the framework's code is the one function its child imports through the registry.
"""
from __future__ import annotations

import math
import statistics
import time
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path
from typing import Any

from bench.results import cell_number as _num  # a CSV row's figure, NaN when missing
from bench.stats import NAN_INTERVAL, Interval, median_ci
from models.layers import Model, Product, parse_model

COLUMNS = ("framework", "mode", "model", "batch_size", "block", "layers", "flop_per_sample", "time_us",
           "time_us_lo", "time_us_hi", "share_of_step", "gflops", "x_floor", "gemm_floor_us", "x_gemm", "rounds",
           "error")
ROUNDS = 7  # interleaved rounds of every prefix (at least: bench.perf's reps when more)
SAMPLE_S = 0.1  # seconds of back-to-back passes per sample, well past a scheduler tick
QUICK_SAMPLE_S = 0.005  # quick=true: the tests' toy size
CALL, WHOLE, REST, STEP = "the call", "all layers", "rest of the step", "harness step"


def jobs(harness_jobs: Sequence[Mapping[str, Any]], quick: bool, reps: int) -> list[dict[str, Any]]:
    """One ``layers`` job per harness case that trains in mini-batches (the full batch is left out:
    a 60,000-image pass of a CNN holds gigabytes of activations)."""
    return [{**job, "kind": "layers", "rounds": max(ROUNDS, reps),
             "sample_s": QUICK_SAMPLE_S if quick else SAMPLE_S}
            for job in harness_jobs if job["kind"] == "harness" and job["batch"] != "full"]


def gemm_job(cases: Sequence[Mapping[str, Any]], device: str, threads: int, quick: bool, reps: int
             ) -> dict[str, Any]:
    """The one child that times every matrix product the cases' models make at their batch sizes
    (``Model.gemms``; the full batch is left out, as in :func:`jobs`), round by round."""
    shapes = sorted({tuple(product) for job in cases if job["batch"] != "full"
                     for per_layer in parse_model(job["model"]).gemms(int(job["batch"])) for product in per_layer})
    return {"kind": "gemms", "framework": "torch", "device": device, "threads": threads,
            "shapes": [list(s) for s in shapes], "rounds": max(ROUNDS, reps),
            "sample_s": QUICK_SAMPLE_S if quick else SAMPLE_S}


def gemm_seconds(result: Mapping[str, Any]) -> dict[tuple, list[float]]:
    """``gemm_job``'s result as each product's seconds, one per round, by ``Product``."""
    if result.get("error"):
        return {}
    return {tuple(shape): list(t) for shape, t in zip(result["shapes"], result["times"])}


def gemm_floor(gemm: Mapping[tuple, Sequence[float]] | None, products: Sequence[Product]) -> list[float]:
    """Seconds the products take together at their own shapes, one sum per round (the products were
    timed interleaved, so a round's sum is one sample of the whole); empty when one is missing."""
    if not gemm or not products or any(p not in gemm for p in products):
        return []
    return [sum(r) for r in zip(*(gemm[p] for p in products))]


def time_passes(passes: Sequence[Callable[[], None]], rounds: int, sample_s: float) -> list[list[float]]:
    """Seconds per call of each pass, one sample per round, the passes interleaved in every round.

    Each pass runs twice first (tracing, compiling, first allocations), then a sample is as many
    back-to-back calls as fill ``sample_s``, sized by a third call.
    """
    calls = []
    for one in passes:
        one()
        one()
        t0 = time.perf_counter()
        one()
        calls.append(max(1, math.ceil(sample_s / max(time.perf_counter() - t0, 1e-7))))
    out: list[list[float]] = [[] for _ in passes]
    for _ in range(rounds):
        for k, (one, n) in enumerate(zip(passes, calls)):
            t0 = time.perf_counter()
            for _ in range(n):
                one()
            out[k].append((time.perf_counter() - t0) / n)
    return out


def profile(job: Mapping[str, Any], prefix_pass: Callable[[dict[str, Any], Model, int], Callable[[], None]]
            ) -> dict[str, Any]:
    """Inside the framework's child: the pass times of every prefix (``pass_times[k][round]``)."""
    model = parse_model(job["model"])
    ends = [0] + [end for _, end in model.blocks()]  # 0: no layers, what every pass pays
    passes = [prefix_pass(job["spec"], model.prefix(end), int(job["batch"])) for end in ends]
    return {"pass_times": time_passes(passes, int(job["rounds"]), float(job["sample_s"]))}


def rows(job: Mapping[str, Any], result: Mapping[str, Any], harness: Mapping[str, Any],
         matmul: Mapping[str, Any], gemm: Mapping[tuple, Sequence[float]] | None = None
         ) -> list[dict[str, Any]]:
    """layers.csv's rows of one case: each block, all layers, the rest of the step and the step.

    ``harness`` is the harness case's result at the same framework, mode and batch (its epoch times
    and steps), ``matmul`` the run's matrix-product result, ``gemm`` seconds per product shape
    (:func:`gemm_seconds`; none: no shape-aware floor).
    """
    model = parse_model(job["model"])
    batch = int(job["batch"])
    base = {"framework": job["framework"], "mode": job["mode"] + ("+xla" if job.get("xla") else ""),
            "model": model.name, "batch_size": batch}
    if result.get("error"):
        return [{**base, "block": WHOLE, "error": result["error"]}]
    times = result["pass_times"]
    rate = (matmul.get("gflops") or math.nan) * 1e9  # the 2048² product's rate: the FLOP floor
    steps = harness.get("steps")
    step = median_ci([t / steps for t in harness.get("epoch_times") or []]) if steps else NAN_INTERVAL

    products = model.gemms(batch)

    def floor_of(start: int, end: int) -> float:
        sums = gemm_floor(gemm, [p for per_layer in products[start:end] for p in per_layer])
        return statistics.median(sums) if sums else math.nan

    def row(block: Any, layers: str, flops: int, iv: Interval, gemm_s: float = math.nan) -> dict[str, Any]:
        floor = flops * batch / rate
        return {**base, "block": block, "layers": layers, "flop_per_sample": flops, "time_us": iv.est * 1e6,
                "time_us_lo": iv.lo * 1e6, "time_us_hi": iv.hi * 1e6, "share_of_step": iv.est / step.est,
                "gflops": flops * batch / iv.est / 1e9 if flops and iv.est > 0 else math.nan,
                "x_floor": iv.est / floor if flops else math.nan, "gemm_floor_us": gemm_s * 1e6,
                "x_gemm": iv.est / gemm_s, "rounds": iv.n, "error": ""}

    out = [row(CALL, "a pass with no layers: one scalar weight", 0, median_ci(times[0]))]
    previous = times[0]
    per_layer = model.step_flops()
    for k, ((start, end), samples) in enumerate(zip(model.blocks(), times[1:])):
        flops = sum(per_layer[start:end])
        diffs = [a - b for a, b in zip(samples, previous)]
        out.append(row(k + 1, Model(model.name, model.layers[start:end]).describe(), flops, median_ci(diffs),
                       floor_of(start, end)))
        previous = samples
    whole = median_ci(times[-1])
    everything = floor_of(0, len(model.layers))
    out.append(row(WHOLE, model.describe(), model.flops_per_sample(), whole, everything))
    if math.isfinite(step.est) and math.isfinite(whole.est):  # timed apart: each end takes the other's far end
        rest = Interval(step.est - whole.est, step.lo - whole.hi, step.hi - whole.lo, min(step.n, whole.n))
        out.append(row(REST, "loss, optimizer update, loop", 0, rest))
    if not math.isnan(step.est):
        out.append(row(STEP, "the harness's training step (bench.loop)", model.flops_per_sample(), step, everything))
    return out


def table(rows_: Sequence[Mapping[str, Any]]) -> list[str]:
    """The printed table: one line per row, grouped by case."""
    from bench.perf.cases import fmt

    lines = []
    last = None
    for r in rows_:
        case = (r["framework"], r["mode"], r["batch_size"])
        if case != last:
            lines.append(f"\n{r['framework']} {r['mode']}, batch {r['batch_size']}, {r['model']}:"
                         + (f"  ERROR: {r['error']}" if r.get("error") else ""))
            last = case
        if r.get("error"):
            continue
        lines.append(f"  {str(r['block']):17s} {fmt(r['time_us']):>7s} µs [{fmt(r['time_us_lo'])}, "
                     f"{fmt(r['time_us_hi'])}]  {r['share_of_step']:6.1%} of the step  "
                     f"{fmt(r['gflops']):>6s} GFLOP/s  {fmt(r['x_floor']):>6s}× floor  {fmt(r['x_gemm']):>6s}× GEMM  "
                     f"{r['layers']}")
    return lines


def summary(rows_: Sequence[Mapping[str, Any]]) -> list[str]:
    """One sentence per model and batch for the report: each framework's fastest mode, its step
    against both floors, its three costliest layers and what the call and the rest take."""
    from bench.perf.cases import fmt

    cases: dict[tuple, dict[str, list[Mapping[str, Any]]]] = {}
    for r in rows_:
        if not r.get("error"):
            key = (str(r["model"]), str(r["batch_size"]), str(r["framework"]))
            cases.setdefault(key, {}).setdefault(str(r["mode"]), []).append(r)
    lines: dict[tuple[str, str], list[str]] = {}
    for (model, batch, fw), modes in cases.items():
        def step_of(rs: list[Mapping[str, Any]]) -> float:
            return next((_num(r, "time_us") for r in rs if r["block"] == STEP), math.inf)

        mode, rs = min(modes.items(), key=lambda kv: step_of(kv[1]))
        step = next((r for r in rs if r["block"] == STEP), None)
        if step is None:
            continue
        by = {str(r["block"]): r for r in rs}
        layer_rows = sorted((r for r in rs if str(r["block"]).isdigit()), key=lambda r: -_num(r, "share_of_step"))
        costly = ", ".join(f"{r['layers']} {_num(r, 'share_of_step'):.0%}" for r in layer_rows[:3])
        text = (f"{fw} {mode}: {_num(step, 'time_us'):,.0f} µs a step, {fmt(_num(step, 'x_gemm'))}× the floor "
                f"its products' shapes allow ({fmt(_num(step, 'x_floor'))}× the FLOP floor); costliest: {costly}")
        if CALL in by and REST in by:
            text += (f"; the call {_num(by[CALL], 'share_of_step'):.0%}, the rest of the step "
                     f"{_num(by[REST], 'share_of_step'):.0%}")
        lines.setdefault((model, batch), []).append(text)
    return [f"Where the step goes ({model}, batch {batch}; bench.perf.layers): " + "; ".join(t) + "."
            for (model, batch), t in lines.items()]


# The figure's parts of a step, in the order they are stacked, with their colours.
PARTS = (("the call", "#adb5bd"), ("convolutions", "#5c7cfa"), ("dense layers", "#20c997"),
         ("activations, pooling, reshapes", "#fcc419"), ("loss, update, loop", "#ff8787"))


def parts(case_rows: Sequence[Mapping[str, Any]]) -> dict[str, float]:
    """One case's step in :data:`PARTS`, µs each (a part's negative sum, which compiled modes can
    give, counts as 0: see the module's note on marginal costs)."""
    out = dict.fromkeys((name for name, _ in PARTS), 0.0)
    for r in case_rows:
        block, t = str(r["block"]), _num(r, "time_us")
        if not math.isfinite(t):
            continue
        if block == CALL:
            out["the call"] += t
        elif block == REST:
            out["loss, update, loop"] += t
        elif block.isdigit():
            flops = _num(r, "flop_per_sample") > 0  # NaN (missing) counts as none, like 0
            kind = "convolutions" if flops and "conv2d" in str(r["layers"]) else "dense layers" if flops \
                else "activations, pooling, reshapes"
            out[kind] += t
    return {k: max(v, 0.0) for k, v in out.items()}


def figure(rows_: Sequence[Mapping[str, Any]], out: Path) -> list[Path]:
    """One PNG per model and batch size: each case's step as stacked parts, fastest first, with the
    FLOP floor (dashed) and the floor of the products at their own shapes (dotted)."""
    import matplotlib

    matplotlib.use("Agg")
    from matplotlib.figure import Figure

    groups: dict[tuple[str, str], dict[str, list[Mapping[str, Any]]]] = {}
    for r in rows_:
        if not r.get("error"):
            groups.setdefault((str(r["model"]), str(r["batch_size"])), {}).setdefault(
                f"{r['framework']} {r['mode']}", []).append(r)
    paths = []
    for (model, batch), cases in groups.items():
        steps = {name: next((r for r in rs if r["block"] == STEP), None) for name, rs in cases.items()}
        names = sorted((n for n in cases if steps[n] is not None), key=lambda n: _num(steps[n], "time_us"),
                       reverse=True)  # barh draws bottom-up: the fastest ends on top
        if not names:
            continue
        fig = Figure(figsize=(8.5, 0.5 * len(names) + 2.2), layout="constrained")
        ax = fig.subplots()
        left = [0.0] * len(names)
        split = [parts(cases[n]) for n in names]
        for label, colour in PARTS:
            widths = [s[label] for s in split]
            ax.barh(names, widths, left=left, color=colour, label=label, height=0.6)
            left = [a + b for a, b in zip(left, widths)]
        step = steps[names[-1]]
        x_floor = _num(step, "x_floor")
        floor = _num(step, "time_us") / x_floor if x_floor > 0 else math.nan
        gemm = _num(step, "gemm_floor_us")
        if math.isfinite(floor):
            ax.axvline(floor, color="#212529", linestyle="--", linewidth=1.0, label="FLOP floor (2048² rate)")
        if math.isfinite(gemm):
            ax.axvline(gemm, color="#212529", linestyle=":", linewidth=1.2, label="its products at their shapes")
        ax.set_xlabel("µs per training step (medians; the parts are marginal costs)")
        ax.set_title(f"{model}, batch {batch}: where each step goes")
        ax.grid(True, axis="x", alpha=0.25)
        fig.legend(*ax.get_legend_handles_labels(), fontsize=7, loc="outside lower center", ncol=4)
        path = out / f"layers_{model}_bs{batch}.png"
        fig.savefig(path, dpi=110)
        paths.append(path)
    return paths

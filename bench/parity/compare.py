"""What ``bench.parity`` measures: per-step differences between two frameworks, and the verdict.

* ``loss_rel_diff``      |ℓ_torch − ℓ_tf| / |ℓ_torch|; the loss of step k is computed from the
                         parameters after k − 1 steps, so step 1 compares the forward passes.
* ``param_max_rel_diff`` the largest, over the model's tensors (w1, b1, w2, b2, ...), of
                         max|θ_torch − θ_tf| / max(max|θ_torch|, max|θ_tf|): the worst
                         element difference measured against the tensor's own scale. An
                         element-wise ratio would be dominated by weights that sit near zero.
* ``param_rel_to_moved`` the same difference against how far the tensor moved from its start,
                         max|θ_torch − θ_tf| / max(max|θ_torch − θ₀|, max|θ_tf − θ₀|): the share
                         of the training progress the frameworks disagree on. It is the stricter
                         number after few steps, when the weights have hardly moved.
* ``params_over_bound``  how many weights differ by more than TOLERANCE of their tensor's scale.
* ``param_torch_vs_f64``, ``param_tf_vs_f64``  each framework against a float64 numpy run of the
                         rule it is meant to compute (``computed_rule``; same model, start and
                         batches, ``bench.parity.exact``): its float32 rounding, or its formula if
                         that is not the one it should be.
* ``param_forms_diff``   the float64 runs of the two frameworks' formulas against each other:
                         0 when both compute the same formula (reference, SGD, momentum), the
                         effect of the formula alone for native RMSProp/Adam (Keras' ε).
* ``kink_*``             on step N's row of a pair that parts with the same formula: the first step
                         where either framework's weights decide a ReLU side or a max pool's element
                         differently from its float64 run's (:func:`kink`), and how far apart the
                         pair was just before; "agree until a kink" when :func:`kinked` says the pair
                         agreed to float32 rounding until then and the decision sat near its kink.
"""
from __future__ import annotations

import itertools
import math
from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np
from threadpoolctl import threadpool_limits

from bench.data import FLOATS, Dataset, as_float
from bench.optimizers import METHODS, RESIDUAL, computed_rule
from bench.parity.exact import first_kink, float64_trajectory
from bench.parity.run import batch_plan, job_model, label, lead_spec, member_framework, member_version
from bench.results import cell_number

TOLERANCE = 1e-4  # the claim: reference implementations agree to this after N steps (float32)
BOUND = f"{TOLERANCE:.0e}".replace("e-0", "e-")  # "1e-4", for tables and messages
PAIR = ("torch", "tensorflow")  # the first pair a check compares; every other pair is compared the same way
SHORT = {"tensorflow": "tf"}  # short names in the per-framework columns (param_tf_vs_f64)


def loss_key(fw: str) -> str:
    return f"loss_{fw}"


def f64_key(fw: str) -> str:
    return f"param_{SHORT.get(fw, fw)}_vs_f64"


COLUMNS = (
    "optimizer", "impl", "framework_a", "framework_b", "batch_size", "seed", "steps", "dataset",
    "n_train", "init", "mode", "device", "precision", "lr", "step", loss_key(PAIR[0]), loss_key(PAIR[1]),
    "loss_rel_diff", "param_max_abs_diff", "param_max_rel_diff", "params_over_bound", "param_rel_to_moved",
    f64_key(PAIR[0]), f64_key(PAIR[1]), "param_forms_diff", loss_key("jax"), f64_key("jax"),
    "model", "n_params",  # appended later: a file without them is the tutorial's MLP
    "param_f64_ulp_start",  # with sensitivity=true: float64 from the start against float64 from a nudged one
    # Each side's version, and its loss and distance to float64 under the side's letter: two versions
    # of one framework have no columns of their own (the framework's own columns hold its project version).
    "version_a", "version_b", "loss_a", "loss_b", "param_a_vs_f64", "param_b_vs_f64",
    *(KINK_COLUMNS := ("kink_step", "kink_framework", "kink_layer", "kink_decisions", "kink_margin_f64",
                       "kink_margin_fw", "kink_scale", "kink_gap_before", "kink_over_before")),  # see kink()
)
LATER_COLUMNS = ("model", "n_params", "param_f64_ulp_start", "version_a", "version_b", "loss_a", "loss_b",
                 "param_a_vs_f64", "param_b_vs_f64", *KINK_COLUMNS)
ULP_KEY = "float64 from a start one float32 rounding away"  # its float64 run in ``exact``
KINK_NEAR = 1e-3  # a decision's margin under this share of its layer's scale is one rounding can tip


# A precision's relative rounding (half its machine epsilon): 2⁻²⁴ for float32, 2⁻⁵³ for float64.
ROUNDING = {precision: float(np.finfo(dtype).eps) / 2 for precision, dtype in FLOATS.items()}


def nudged(start: Mapping[str, np.ndarray], seed: int = 1, precision: str = "fp32") -> dict[str, np.ndarray]:
    """``start`` with every weight moved by one rounding of ``precision`` (relative 2⁻²⁴ for float32,
    2⁻⁵³ for float64), up or down at random: the smallest difference two implementations in that
    precision can have, as a float64 start."""
    rng = np.random.default_rng(seed)
    return {name: np.asarray(w, np.float64) * (1 + rng.choice([-1.0, 1.0], np.shape(w)) * ROUNDING[precision])
            for name, w in start.items()}


def isolated(n_params: int) -> int:
    """Rounding shows in isolated weights (a gradient that cancels to float32 noise); a wrong formula
    moves nearly all of them. Beyond this many of a model's weights over the bound, a difference is
    not rounding."""
    return n_params // 1000


def _max_abs(x: np.ndarray) -> float:
    return float(np.max(np.abs(x))) if x.size else 0.0


def _ratio(num: float, den: float) -> float:
    if den > 0:
        return num / den
    return 0.0 if num == 0 else math.inf


def param_diff(x: Mapping[str, np.ndarray], y: Mapping[str, np.ndarray]) -> tuple[float, float, int]:
    """(max abs difference, max relative difference, elements over TOLERANCE) of two parameter sets
    (every tensor of ``x``, by name).

    Relative = per tensor max|x − y| / max(max|x|, max|y|), the largest over the tensors; an
    element counts as over when |x − y| exceeds TOLERANCE times its tensor's scale.
    """
    abs_diff = rel = 0.0
    over = 0
    for name in x:
        tx, ty = np.asarray(x[name], np.float64), np.asarray(y[name], np.float64)
        diff = np.abs(tx - ty)
        scale = max(_max_abs(tx), _max_abs(ty))
        abs_diff = max(abs_diff, _max_abs(diff))
        rel = max(rel, _ratio(_max_abs(diff), scale))
        over += int(np.count_nonzero(diff > TOLERANCE * scale))
    return abs_diff, rel, over


def _at(params: Mapping[str, np.ndarray], i: int, names: Sequence[str]) -> dict[str, np.ndarray]:
    return {name: params[name][i] for name in names}


def pairs(frameworks: Sequence[str]) -> list[tuple[str, str]]:
    """Every pair of the frameworks a check ran, in their order: torch–tf, torch–jax, tf–jax."""
    return list(itertools.combinations(frameworks, 2))


def _rule(job: Mapping[str, Any], rule: str, member: str) -> str:
    """The rule a member's framework computes for ``rule`` with the job's impl."""
    return computed_rule(rule, member_framework(job, member), lead_spec(job)["optimizer"]["impl"])


def compare(job: Mapping[str, Any], result: Mapping[str, Any], data: Dataset,
            pair: Sequence[str] = PAIR, exact: dict[str, Any] | None = None) -> list[dict[str, float]]:
    """Per-step differences of one job's results (step 0 = the start); see the module docstring.

    Besides framework a vs framework b, each is measured against a float64 run of the model with
    the rule it is meant to compute (``param_torch_vs_f64``, ``param_tf_vs_f64``), and the two rules'
    float64 runs against each other (``param_forms_diff``: 0 when both compute the same one).
    ``exact`` (framework -> float64 run), shared by the calls for a check's pairs, computes each once.
    """
    fa, fb = pair
    a, b = result[fa], result[fb]
    spec = lead_spec(job)
    opt = spec["optimizer"]
    rule = METHODS[opt["name"]].rule
    model = job_model(job)
    names = model.param_names
    saved = [int(s) for s in a["param_steps"]]
    batches = batch_plan(spec["seed"], data.n_train, job["batch_size"], job["steps"])
    x = as_float(data.x_train, spec["precision"])
    exact = {} if exact is None else exact
    # numpy's BLAS gets the frameworks' thread budget: many threads on a busy machine cost more than they give
    with threadpool_limits(limits=int(spec["threads"])):
        for fw in (fw for fw in pair if fw not in exact):
            computes, start = _rule(job, rule, fw), _at(result[fw], 0, names)
            same = [other for other in exact if other != ULP_KEY and _rule(job, rule, other) == computes
                    and all(np.array_equal(start[n], result[other][n][0]) for n in names)]
            exact[fw] = exact[same[0]] if same else float64_trajectory(
                start, x, data.y_train, batches, computes, opt, saved, model)
        if job.get("sensitivity") and ULP_KEY not in exact:  # how much the problem itself amplifies rounding
            one_off = nudged(_at(a, 0, names), precision=spec["precision"])
            exact[ULP_KEY] = float64_trajectory(one_off, x, data.y_train, batches, _rule(job, rule, fa), opt, saved,
                                                model)
    index = {step: i for i, step in enumerate(saved)}
    rows = []
    for step in range(job["steps"] + 1):
        row: dict[str, float] = {"step": step}
        if step:
            la, lb = float(a["loss"][step - 1]), float(b["loss"][step - 1])
            row.update({loss_key(fa): la, loss_key(fb): lb, "loss_a": la, "loss_b": lb,
                        "loss_rel_diff": _ratio(abs(la - lb), abs(la))})
        if step in index:
            i = index[step]
            pa, pb = _at(a, i, names), _at(b, i, names)
            abs_diff, rel, over = param_diff(pa, pb)
            moved = math.nan
            if step:
                travel = {name: max(_max_abs(pa[name] - a[name][0]), _max_abs(pb[name] - b[name][0]))
                          for name in names}
                moved = max(_ratio(_max_abs(pa[n].astype(np.float64) - pb[n]), travel[n]) for n in names)
            a_f64, b_f64 = param_diff(pa, _at(exact[fa], i, names))[1], param_diff(pb, _at(exact[fb], i, names))[1]
            row.update({"param_max_abs_diff": abs_diff, "param_max_rel_diff": rel, "params_over_bound": over,
                        "param_rel_to_moved": moved, f64_key(fa): a_f64, f64_key(fb): b_f64,
                        "param_a_vs_f64": a_f64, "param_b_vs_f64": b_f64,
                        "param_forms_diff": param_diff(_at(exact[fa], i, names), _at(exact[fb], i, names))[1]})
            if ULP_KEY in exact:
                row["param_f64_ulp_start"] = param_diff(_at(exact[fa], i, names), _at(exact[ULP_KEY], i, names))[1]
        rows.append(row)
    last = rows[-1]
    if (last.get("param_max_rel_diff", 0) > TOLERANCE and last.get("param_forms_diff", 1) <= TOLERANCE
            and rows[0].get("param_max_rel_diff") == 0):  # the same formula from the same start, and they part
        last.update(kink(job, pair, result, exact, saved, x, batches, rows))
    return rows


def kink(job: Mapping[str, Any], pair: Sequence[str], result: Mapping[str, Any], exact: Mapping[str, Any],
         saved: Sequence[int], x: np.ndarray, batches: Sequence[np.ndarray],
         rows: Sequence[Mapping[str, float]]) -> dict[str, Any]:
    """The first step at which either framework's forward pass takes a decision (a ReLU's side, a
    max pool's element) that its float64 run takes the other way (``exact.first_kink``), and how far
    apart the pair was just before it: columns ``kink_*`` of step N's row, empty if there is none."""
    model = job_model(job)
    found = [(hit["step"], fw, hit) for fw in pair
             if (hit := first_kink(model, result[fw], exact[fw], saved, x, batches)) is not None]
    if not found:
        return {}
    step, fw, hit = min(found, key=lambda f: f[0])
    where = f"{model.layers[hit['layer']].type} at layer {hit['layer'] + 1}"
    before = rows[step - 1]
    return {"kink_step": step, "kink_framework": label(job, fw), "kink_layer": where,
            "kink_decisions": hit["count"], "kink_margin_f64": hit["margin_ref"], "kink_margin_fw": hit["margin_run"],
            "kink_scale": hit["scale"], "kink_gap_before": before.get("param_max_rel_diff", math.nan),
            "kink_over_before": before.get("params_over_bound", math.nan)}


def kinked(last: Mapping[str, Any], n_params: int) -> bool:
    """Step N's row says: until the kink the pair agreed to float32 rounding (no more weights over the
    bound than rounding's isolated steps make), and the decision sat within KINK_NEAR of its layer's
    scale from float64's weights, where rounding can tip it."""
    over, margin, scale = (cell_number(last, k) for k in ("kink_over_before", "kink_margin_f64", "kink_scale"))
    return over <= isolated(n_params) and abs(margin) <= KINK_NEAR * scale


def result_rows(job: Mapping[str, Any], diffs: Sequence[Mapping[str, float]],
                pair: Sequence[str] = PAIR) -> list[dict[str, Any]]:
    """The CSV rows of a check: its settings, then each step's differences."""
    spec, model = lead_spec(job), job_model(job)
    base = {"optimizer": spec["optimizer"]["name"], "impl": spec["optimizer"]["impl"],
            "framework_a": member_framework(job, pair[0]), "framework_b": member_framework(job, pair[1]),
            "version_a": member_version(job, pair[0]), "version_b": member_version(job, pair[1]),
            "batch_size": job["batch_size"],
            "seed": spec["seed"], "steps": job["steps"], "dataset": job["dataset"], "n_train": job["n_train"],
            "init": spec["init"], "mode": spec["mode"], "device": spec["device"],
            "precision": spec["precision"], "lr": spec["optimizer"]["lr"], "model": model.name,
            "n_params": model.n_params}
    return [{**base, **row} for row in diffs]


def report_steps(steps: int) -> list[int]:
    return sorted({1, min(10, steps), steps})


def _fmt(x: Any, spec: str = ".1e") -> str:
    return "-" if x is None or (isinstance(x, float) and math.isnan(x)) else format(x, spec)


def verdict(job: Mapping[str, Any], diffs: Sequence[Mapping[str, float]], pair: Sequence[str] = PAIR) -> str:
    """One line on the comparison after the last step, worded from the numbers."""
    fa, fb = pair
    last, spec = diffs[-1], lead_spec(job)
    n, rel, over = job["steps"], last["param_max_rel_diff"], int(last["params_over_bound"])
    n_params = job_model(job).n_params
    va, vb = (last.get(f"param_{side}_vs_f64", last.get(f64_key(m))) for side, m in (("a", fa), ("b", fb)))
    rule = METHODS[spec["optimizer"]["name"]].rule
    residuals = " ".join(RESIDUAL.get((rule, member_framework(job, m)), "") for m in pair).strip()
    fa, fb = label(job, fa), label(job, fb)
    if diffs[0]["param_max_rel_diff"] > 0:
        return (f"differ from the start (init={spec['init']}): {diffs[0]['param_max_rel_diff']:.1e} "
                f"apart before the first step, {rel:.1e} after {n}; each framework is within "
                f"{max(va, vb):.1e} of float64 from its own start")
    exact = f"float64 arithmetic of the same formula is {va:.1e} from {fa} and {vb:.1e} from {fb}"
    if rel <= TOLERANCE:
        return f"agree: parameters within {rel:.1e} of their scale after {n} steps (bound {BOUND})"
    if last["param_forms_diff"] > TOLERANCE:
        return (f"differ by formula: {rel:.1e} apart after {n} steps, {over} of {n_params} weights beyond the "
                f"bound; float64 runs of the two frameworks' formulas are {last['param_forms_diff']:.1e} apart "
                f"({fa} {va:.1e}, {fb} {vb:.1e} from their own). " + residuals)
    chaos = last.get("param_f64_ulp_start", math.nan)
    if chaos >= 0.1 * rel:
        return (f"differ as rounding allows here: {rel:.1e} apart after {n} steps in {over} of {n_params} weights; "
                f"float64 runs from starts one float32 rounding apart are {chaos:.1e} apart after as many steps, "
                f"so no float32 implementation can agree closer; {exact}")
    if over <= isolated(n_params):
        return (f"agree to float32 rounding: {rel:.1e} apart after {n} steps, in {over} of {n_params} weights "
                f"beyond the bound; {exact}: rounding in gradients that cancel to almost zero, which the "
                f"per-weight scaling of {rule} turns into full-size steps")
    if kinked(last, n_params):
        what = "input" if "relu" in str(last["kink_layer"]) else "lead of the window's maximum"
        return (f"agree until a kink: to float32 rounding ({last['kink_gap_before']:.1e} apart, "
                f"{int(last['kink_over_before'])} weights beyond the bound) until step {int(last['kink_step'])}, "
                f"where {last['kink_framework']}'s weights put {int(last['kink_decisions'])} decision(s) of the "
                f"{last['kink_layer']} on the other side from float64's (the closest: {what} "
                f"{last['kink_margin_f64']:.1e} from float64's weights, {last['kink_margin_fw']:.1e} from "
                f"{last['kink_framework']}'s, in a layer whose inputs reach {last['kink_scale']:.1e}); rounding "
                f"decided it, and the steps after it part: {rel:.1e} apart after {n} steps in {over} of "
                f"{n_params} weights; {exact}")
    return (f"DIFFER beyond rounding: {rel:.1e} apart after {n} steps in {over} of {n_params} weights, with the "
            f"same formula on both sides; {exact}")


def short_verdict(job: Mapping[str, Any], diffs: Sequence[Mapping[str, float]], pair: Sequence[str] = PAIR) -> str:
    """:func:`verdict`'s words and its first figure: ``agree (2.1e-07)``, ``differ by formula (3.4e-03)``."""
    words, _, rest = verdict(job, diffs, pair).partition(":")
    words = words.split(" (")[0]
    return f"{words} ({diffs[-1]['param_max_rel_diff']:.1e})"


def print_table(job: Mapping[str, Any], diffs: Sequence[Mapping[str, float]], pair: Sequence[str] = PAIR) -> None:
    """The comparison at steps 0, 1, 10 and N, and the verdict, on stdout."""
    fa, fb = pair
    spec = lead_spec(job)
    opt = spec["optimizer"]
    print(f"parity {opt['name']} impl={opt['impl']} {job_model(job).name}: {label(job, fa)} vs {label(job, fb)}, "
          f"{job['steps']} steps of batch "
          f"{job['batch_size']} on {job['dataset']} ({job['n_train']} train), seed {spec['seed']}, "
          f"init {spec['init']}, {spec['mode']}, {spec['device']}")
    sa, sb = (SHORT.get(m, m) if not job.get("versions") else label(job, m).split()[-1] for m in (fa, fb))
    head = ("step", f"loss {sa}", f"loss {sb}", "loss rel", "param rel", "rel to moved", f"{sa} vs f64",
            f"{sb} vs f64", "formulas")
    keys = ("loss_a", "loss_b", "loss_rel_diff", "param_max_rel_diff", "param_rel_to_moved",
            "param_a_vs_f64", "param_b_vs_f64", "param_forms_diff")
    print(f"{head[0]:>5} {head[1]:>10} {head[2]:>10}" + "".join(f" {h:>12}" for h in head[3:]))
    for step in [0] + report_steps(job["steps"]):
        r = diffs[step]
        print(f"{step:>5} {_fmt(r.get(keys[0]), '.6f'):>10} {_fmt(r.get(keys[1]), '.6f'):>10}"
              + "".join(f" {_fmt(r.get(k)):>12}" for k in keys[2:]))
    print(verdict(job, diffs, pair))

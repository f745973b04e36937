"""The report's section "Do the frameworks agree?": every parity CSV under ``results_dir/parity``."""
from __future__ import annotations

from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

from bench import envs
from bench.frameworks import BASE, FRAMEWORKS, NAMES
from bench.optimizers import METHODS, RESIDUAL
from bench.parity.compare import (
    BOUND,
    COLUMNS,
    KINK_COLUMNS,
    LATER_COLUMNS,
    PAIR,
    TOLERANCE,
    f64_key,
    isolated,
    kinked,
    pairs,
)
from bench.report.groups import method_rank
from bench.report.sections import ReportSection
from bench.spec import conf_group
from models.layers import DEFAULT_MODEL, parse_model


def _default_n_params() -> int:
    """Weights of the tutorial's MLP: what a parity CSV written before models were selectable trained."""
    return parse_model(conf_group("model", DEFAULT_MODEL)).n_params


def _model_tag(r: Mapping[str, Any]) -> str:
    """', lenet5' after a check's seed and pair where it is not the tutorial's MLP."""
    return "" if r["model"] == DEFAULT_MODEL else f", {r['model']}"


def _summary(csv_path: Path) -> dict[str, Any] | None:
    """The numbers of one parity CSV at steps 0, 1, 10 and N (None if it is not one)."""
    import pandas as pd

    try:
        df = pd.read_csv(csv_path, dtype={"version_a": str, "version_b": str})  # releases are text, never 2.2
    except (OSError, ValueError):
        return None
    if set(COLUMNS) - set(LATER_COLUMNS) - set(df.columns) or df.empty:
        return None
    first = df.iloc[0]
    n = int(first["steps"])
    at = df.set_index("step")
    out = {key: first[key] for key in ("optimizer", "impl", "init", "mode", "device", "precision", "dataset")}
    has_model = "model" in df.columns and isinstance(first["model"], str)
    out["model"] = first["model"] if has_model else DEFAULT_MODEL
    out["n_params"] = int(first["n_params"]) if has_model else _default_n_params()
    out.update(batch=int(first["batch_size"]), seed=int(first["seed"]), n=n, start=at.at[0, "param_max_rel_diff"])
    for label, step in (("1", 1), ("10", min(10, n)), ("N", n)):
        out[f"loss@{label}"] = at.at[step, "loss_rel_diff"]
        out[f"param@{label}"] = at.at[step, "param_max_rel_diff"]
    for key in ("params_over_bound", "param_rel_to_moved", "param_torch_vs_f64", "param_tf_vs_f64",
                "param_jax_vs_f64", "param_forms_diff"):
        out[key] = at.at[n, key]
    for key in KINK_COLUMNS:  # written since kinks are looked for; NaN/None before, or without one
        out[key] = at.at[n, key] if key in at.columns else None
    out.update(pair=pair_label(first), a_vs_f64=_side(at, n, "a", first["framework_a"]),
               b_vs_f64=_side(at, n, "b", first["framework_b"]))
    out.update({k: first.get(k) if isinstance(first.get(k), str) else None
                for k in ("framework_a", "framework_b", "version_a", "version_b")})
    return out


def pair_label(first: Mapping[str, Any]) -> str:
    """``torch–tensorflow``; two versions of one framework: ``jax 0.10.2–jax 0.9.2``."""
    fa, fb = first["framework_a"], first["framework_b"]
    va, vb = first.get("version_a"), first.get("version_b")
    if fa == fb and isinstance(va, str) and isinstance(vb, str):
        return f"{fa} {va}–{fb} {vb}"
    return f"{fa}–{fb}"


def _side(at: Any, n: int, side: str, framework: str) -> float:
    """One side's distance to float64 after N steps: its letter's column, or, in a CSV written
    before those columns, its framework's."""
    column = f"param_{side}_vs_f64"
    return at.at[n, column] if column in at.columns else at.at[n, f64_key(framework)]


def _display(summary) -> Any:
    """The report's table: one row per check, the differences at steps 1, 10 and N."""
    def setup(r: Mapping[str, Any]) -> str:
        extra = [f"init {r['init']}" if r["init"] != "shared" else "", r["mode"] if r["mode"] != "eager" else "",
                 r["device"] if r["device"] != "cpu" else "", r["precision"] if r["precision"] != "fp32" else ""]
        model = [r["model"]] if r["model"] != DEFAULT_MODEL else []
        return " · ".join(model + [f"bs {r['batch']}", f"seed {r['seed']}", f"N {r['n']}", r["dataset"]]
                          + [e for e in extra if e])

    def agree(r: Mapping[str, Any]) -> str:
        if r["param@N"] <= TOLERANCE:
            return "yes"
        return f"until a kink (step {int(r['kink_step'])})" if _kinked(r) else "no"

    return summary.assign(setup=summary.apply(setup, axis=1), agree=summary.apply(agree, axis=1))[
        ["optimizer", "impl", "pair", "setup", "loss@1", "loss@10", "loss@N", "param@1", "param@10", "param@N",
         "params_over_bound", "param_torch_vs_f64", "param_tf_vs_f64", "param_jax_vs_f64", "param_forms_diff",
         "agree"]
    ].rename(columns={
        "optimizer": "method", "pair": "frameworks", "loss@1": "loss @1", "loss@10": "loss @10", "loss@N": "loss @N",
        "param@1": "params @1", "param@10": "params @10", "param@N": "params @N",
        "params_over_bound": f"weights over {BOUND} @N", "param_torch_vs_f64": "torch vs float64 @N",
        "param_tf_vs_f64": "tf vs float64 @N", "param_jax_vs_f64": "jax vs float64 @N",
        "param_forms_diff": "formulas apart @N",
        "agree": f"agree (≤{BOUND})"})


def _figure(csv_paths: Sequence[Path], out: Path) -> Path | None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    import pandas as pd

    fig, ax = plt.subplots(figsize=(7, 4))
    drawn = 0
    for path in csv_paths:
        df = pd.read_csv(path).dropna(subset=["param_max_rel_diff"])
        df = df[(df["step"] > 0) & (df["param_max_rel_diff"] > 0)]
        if df.empty:
            continue
        first = df.iloc[0]
        style = "-" if first["impl"] == "reference" else "--"  # colour = method, line = impl
        colour = f"C{list(METHODS).index(first['optimizer'])}" if first["optimizer"] in METHODS else None
        label = f"{first['optimizer']} {first['impl']}"
        if (first["framework_a"], first["framework_b"]) != PAIR:
            label += f" {pair_label(first)}"
        if first["init"] != "shared":
            label += f" init {first['init']}"
        if first["seed"] != 0:
            label += f" seed {first['seed']}"
        if "model" in first and isinstance(first["model"], str) and first["model"] != DEFAULT_MODEL:
            label += f" {first['model']}"
        ax.plot(df["step"], df["param_max_rel_diff"], style, color=colour, label=label,
                lw=0.8 if first["init"] != "shared" else 1.5)
        drawn += 1
    if not drawn:
        plt.close(fig)
        return None
    ax.axhline(TOLERANCE, color="grey", lw=0.8)
    ax.set(yscale="log", xlabel="step", ylabel="max |θ_a − θ_b| / tensor scale",
           title="Parameters, each pair of frameworks (same start, same batches)")
    ax.legend(fontsize=7, ncol=2)
    fig.tight_layout()
    out.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(out, dpi=120)
    plt.close(fig)
    return out


def _kinked(r: Mapping[str, Any]) -> bool:
    """The pair agreed to rounding until a decision rounding could tip (``compare.kinked``)."""
    return kinked(r, int(r["n_params"]))


def _kink_words(r: Mapping[str, Any]) -> str:
    what = ("put a ReLU input on the other side of zero" if "relu" in str(r["kink_layer"])
            else "made a max pool choose another element")
    return (f"They agree to float32 rounding ({float(r['kink_gap_before']):.1e} apart, "
            f"{int(float(r['kink_over_before']))} weights beyond the bound) until step {int(r['kink_step'])}, where "
            f"{r['kink_framework']}'s rounding {what} (the {r['kink_layer']}; its margin from float64's weights: "
            f"{float(r['kink_margin_f64']):.1e}): a kink decided by rounding, after which the steps part. No "
            "float32 implementation is safe from that; it is not a different computation.")


def _words(summary) -> str:
    """The explanation, worded from the numbers in ``summary`` (one row per parity CSV)."""
    paras = [
        "Each check trains the same model (the tutorial's MLP where the setup names no other) for N steps in "
        "PyTorch, TensorFlow and JAX, in separate processes, from the same initial weights on the same "
        "batches (the first N of a real run). *loss* is the "
        "relative difference of the step's training loss between the pair of frameworks; *params* the largest "
        "element difference in any "
        "weight tensor divided by that tensor's largest magnitude; "
        f"*weights over* counts the elements beyond {BOUND} of their tensor's scale. *torch/tf/jax vs "
        "float64* measure each framework against exact arithmetic (the model's forward and backward passes "
        "written by hand in float64 numpy) of the formula it is meant "
        "to compute, *formulas apart* the exact runs of the two frameworks' formulas against each other "
        f"(0 when both compute the same one). The bound is {BOUND} (float32)."
    ]
    shared = summary[summary["init"] == "shared"]
    ref = shared[shared["impl"] == "reference"]
    if len(ref):
        inside = ref[ref["param@N"] <= TOLERANCE]
        worst = inside.loc[inside["param@N"].idxmax()] if len(inside) else None
        text = (f"With impl=reference (the tutorial's formulas, written once per framework) {len(inside)} of "
                f"{len(ref)} checks agree within the bound")
        if worst is not None:
            text += (f"; the largest difference among them is {worst['param@N']:.1e} "
                     f"({worst['optimizer']}{_model_tag(worst)})")
        paras.append(text + ".")
        for _, r in ref[ref["param@N"] > TOLERANCE].iterrows():
            paras.append(
                f"Reference {r['optimizer']} (seed {r['seed']}, {r['pair']}{_model_tag(r)}) is {r['param@N']:.1e} "
                f"apart after {r['n']} steps, in {int(r['params_over_bound'])} of {r['n_params']} weights, with the "
                f"same formula on both sides and the loss {r['loss@N']:.1e} apart; exact arithmetic is "
                f"{r['a_vs_f64']:.1e} from "
                f"the first and {r['b_vs_f64']:.1e} from the second. "
                + ("That is float32 rounding: such a weight's gradient is a sum that cancels to almost zero, so "
                   "rounding changes it by percents, and the per-weight scaling of RMSProp/Adam turns that into "
                   "a full-size step. The bound holds for most seeds, not for every one."
                   if r["params_over_bound"] <= isolated(r["n_params"])
                   else _kink_words(r) if _kinked(r) else "That is more than rounding: look for a bug."))
    native = shared[shared["impl"] == "native"]
    for _, r in native.iterrows():
        rule = METHODS[r["optimizer"]].rule if r["optimizer"] in METHODS else ""
        residual = " ".join(RESIDUAL.get((rule, fw), "") for fw in r["pair"].split("–")).strip()
        same = ref[(ref["optimizer"] == r["optimizer"]) & (ref["seed"] == r["seed"]) & (ref["pair"] == r["pair"])
                   & (ref["model"] == r["model"])]
        versus = f" (reference: {same['param@N'].max():.1e})" if len(same) else ""
        if residual and r["param_forms_diff"] > TOLERANCE:
            paras.append(
                f"Native {r['optimizer']} ({r['pair']}{_model_tag(r)}): {r['param@N']:.1e} apart after {r['n']} "
                f"steps{versus}, in {int(r['params_over_bound'])} of {r['n_params']} weights; the loss "
                f"{r['loss@N']:.1e} apart. "
                f"Not a bug: {residual}. Exact arithmetic of the tutorial's formula and of Keras' formula "
                f"gives runs {r['param_forms_diff']:.1e} apart, while each framework is within "
                f"{max(r['a_vs_f64'], r['b_vs_f64']):.1e} of its own formula: the difference is "
                f"the ε placement, largest for weights whose gradients are tiny (√s or √v̂ comparable to ε).")
        else:
            how = " (with lr·(1−β) for the tutorial's EMA momentum)" if rule == "momentum" else ""
            paras.append(f"Native {r['optimizer']} ({r['pair']}{_model_tag(r)}): {r['param@N']:.1e} apart after "
                         f"{r['n']} steps{versus}; the built-in optimizers compute the tutorial's update here{how}."
                         + (" " + _kink_words(r) if r["param@N"] > TOLERANCE and _kinked(r) else ""))
    for _, r in summary[summary["init"] == "native"].iterrows():
        paras.append(
            f"init=native ({r['optimizer']}, {r['impl']}): each framework's own default initialisation; the "
            f"parameters start {r['start']:.2f} of their scale apart (torch: U(±1/√fan_in) weights and biases; "
            f"Keras: Glorot-uniform kernels, zero biases), so curves from native inits differ from the start.")
    return "\n\n".join(paras)


def _pinned(runs: Any) -> Any:
    """Rows of runs at the project's own framework versions (a run from before the column counts as one):
    frameworks are compared at the versions the project pins, versions of one framework by parity."""
    import pandas as pd

    if "framework_version" not in runs.columns:
        return pd.Series(True, index=runs.index)
    pinned = {fw.name: envs.project_version(fw) for fw in FRAMEWORKS.values()}
    return runs["framework_version"].isna() | pd.Series(
        [envs.public(str(v)) == pinned.get(fw) for fw, v in zip(runs["framework"], runs["framework_version"])],
        index=runs.index)


def epoch_agreement(results_dir: Path) -> Any:
    """Full runs with impl=reference in torch and in another framework: the largest relative
    difference of the per-epoch training loss, per method, model and pair (a DataFrame; empty when
    no such pair exists; a metrics file without a model column is the tutorial's MLP)."""
    import pandas as pd

    frames = []
    for path in sorted((Path(results_dir) / "runs").glob("*/metrics.csv")):
        try:
            frames.append(pd.read_csv(path))
        except (OSError, ValueError):
            continue
    columns = ["optimizer", "model", "frameworks", "batch_size", "seed", "dataset", "n_train", "lr", "epochs",
               "max rel diff"]
    if not frames:
        return pd.DataFrame(columns=columns)
    runs = pd.concat(frames, ignore_index=True)
    runs["model"] = runs["model"].astype(object).fillna(DEFAULT_MODEL) if "model" in runs.columns else DEFAULT_MODEL
    key = ["optimizer", "model", "batch_size", "seed", "dataset", "n_train", "lr", "mode", "device", "epoch"]
    if not set(key + ["impl", "framework", "train_loss"]) <= set(runs.columns):
        return pd.DataFrame(columns=columns)
    runs = runs[(runs["impl"] == "reference") & (runs["epoch"] > 0) & runs["train_loss"].notna() & _pinned(runs)]
    wide = runs.pivot_table(index=key, columns="framework", values="train_loss", aggfunc="last")
    parts = []
    for other in (fw for fw in NAMES if fw != BASE and {BASE, fw} <= set(wide.columns)):
        both = wide.dropna(subset=[BASE, other])
        rel = ((both[BASE] - both[other]).abs() / both[BASE].abs()).rename("rel").reset_index()
        parts.append(rel.groupby(key[:-1], as_index=False).agg(epochs=("epoch", "max"), rel=("rel", "max"))
                     .assign(frameworks=f"{BASE}–{other}"))
    if not parts:
        return pd.DataFrame(columns=columns)
    return pd.concat(parts, ignore_index=True).rename(columns={"rel": "max rel diff"})[columns]


def version_checks(results_dir: Path) -> Any:
    """The parity checks under ``results_dir/parity`` that compare two releases of one framework (a
    DataFrame, one row per check: framework, both releases, method, impl, model, seed, the steps N and the
    parameter and loss differences after N; empty when there is none). The report's section Versions
    reads them: neutral, no framework is imported."""
    import pandas as pd

    columns = ["framework", "version_a", "version_b", "optimizer", "impl", "model", "seed", "n", "param@N", "loss@N"]
    rows = [r for r in map(_summary, sorted((Path(results_dir) / "parity").glob("*.csv")))
            if r is not None and r["framework_a"] == r["framework_b"] and r["version_a"] and r["version_b"]
            and envs.public(r["version_a"]) != envs.public(r["version_b"])]
    return pd.DataFrame([{**r, "framework": r["framework_a"]} for r in rows], columns=columns)


def report_section(results_dir: Path) -> ReportSection | None:
    """'Do the frameworks agree?': every parity CSV under ``results_dir/parity``, or None."""
    import pandas as pd

    summaries = {p: _summary(p) for p in sorted((Path(results_dir) / "parity").glob("*.csv"))}
    rows = [r for r in summaries.values() if r is not None]
    if not rows:
        return None
    epochs = epoch_agreement(Path(results_dir))
    pair_order = {f"{a}–{b}": i for i, (a, b) in enumerate(pairs(NAMES))}
    sort_keys = {"optimizer": method_rank, "pair": pair_order}
    summary = pd.DataFrame(rows).sort_values(  # the tutorial's MLP first, then the other models by name
        ["init", "impl", "model", "optimizer", "seed", "pair"], ascending=[False, False, True, True, True, True],
        ignore_index=True, key=lambda col: col.map(sort_keys[col.name]) if col.name in sort_keys
        else col.map(lambda m: "" if m == DEFAULT_MODEL else m) if col.name == "model" else col)
    figure = _figure([p for p, r in summaries.items() if r is not None], Path(results_dir) / "parity" / "parity.png")
    text = _words(summary)
    if len(epochs):
        worst = epochs.loc[epochs["max rel diff"].idxmax()]
        text += (f"\n\nFull runs with impl=reference in torch and another framework ({len(epochs)} pairs, "
                 f"{', '.join(dict.fromkeys(epochs['optimizer']))}): the per-epoch training losses agree to "
                 f"{worst['max rel diff']:.1e} relative at worst ({worst['optimizer']}{_model_tag(worst)}, "
                 f"{worst['frameworks']}, {int(worst['epochs'])} epoch(s)); the target is 1e-3.")
    return ReportSection(title="Do the frameworks agree?", text=text, table=_display(summary),
                         figures=[figure] if figure else [])

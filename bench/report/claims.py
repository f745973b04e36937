"""The tutorial's closing pros/cons table, claim by claim, judged with 95 % intervals (pure).

Every claim is one or more comparisons of a method with another, each one a statistic with a
95 % interval and a threshold the claim says it passes:

* time comparisons are ratios of time per step (or per sample) from the timing pass, paired by
  round (``bench.stats.ratio_ci``); without a timing pass they are inconclusive;
* accuracy, step-loss spread and the like are differences between the two methods, paired by
  seed (same seed, same initial weights and data order), averaged over the seeds both ran with
  ``bench.stats.mean_ci``. One seed gives no interval, so such a comparison cannot decide.

A comparison is *supported* when its whole interval lies on the claim's side of the threshold,
*not supported* when the whole interval lies on the other side, *inconclusive* otherwise. A
claim of several comparisons is supported when all are, not supported when any is not, and
inconclusive otherwise.

The claims are the tutorial's, about its six methods (``TUTORIAL_METHODS``): methods beyond the
tutorial never enter them. A framework that ran at several releases is judged at its default one
(the pinned release where it ran). With several models in the results, every claim is judged for each
model separately, from that model's runs only (the tutorial made its claims on its MLP; whether
they hold on another model is a separate question, answered separately).
"""
from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import dataclass

import pandas as pd

from bench.optimizers import TUTORIAL_METHODS
from bench.report.aggregate import reference_rows, same_config
from bench.report.groups import at_default, framework_order, model_order
from bench.report.speed import BASELINE, config_key, interval_text, time_ratio
from bench.stats import NAN_INTERVAL, Interval, mean_ci
from models.layers import DEFAULT_MODEL

VERDICTS = ("supported", "not supported", "inconclusive")
TIME_MEASURES = {"time_per_step": "time per step", "time_per_sample": "time per sample"}
RUN_MEASURES = {"final_acc": "final test acc", "acc_epoch1": "test acc after epoch 1",
                "step_loss_std": "step-loss spread"}


@dataclass(frozen=True)
class Compare:
    """``a`` against ``b`` on ``measure``: the claim says the statistic is ``side`` ("<" or ">") ``threshold``.

    Time measures: the statistic is the ratio a/b (threshold 1 = as fast). Others: the paired
    difference a − b over seeds (threshold 0 = equal).
    """

    a: str
    b: str
    measure: str
    side: str
    threshold: float | None = None

    @property
    def is_time(self) -> bool:
        return self.measure in TIME_MEASURES

    @property
    def limit(self) -> float:
        return self.threshold if self.threshold is not None else (1.0 if self.is_time else 0.0)

    def describe(self) -> str:
        name = TIME_MEASURES.get(self.measure) or RUN_MEASURES.get(self.measure, self.measure)
        stat = f"{self.a}/{self.b} {name}" if self.is_time else f"{name} {self.a} − {self.b}"
        return f"{stat} {self.side} {self.limit:g}"


@dataclass(frozen=True)
class ClaimSpec:
    method: str
    claim: str  # the tutorial's closing-table statement, paraphrased
    measure: str  # what is compared, in words
    compares: tuple[Compare, ...]
    direct: bool = True  # False: the measure bears on the claim only indirectly


@dataclass
class Claim:
    """A claim judged for one framework."""

    method: str
    claim: str
    framework: str
    measure: str
    verdict: str  # one of VERDICTS
    interval: str  # each comparison's statistic with its 95 % interval
    n: str  # how many rounds or seeds each interval stands on
    lr: str  # the lr each method's numbers come from
    evidence: str  # generated from the numbers
    model: str = DEFAULT_MODEL  # the model whose runs judged it


C = Compare
CLAIMS: tuple[ClaimSpec, ...] = (
    ClaimSpec("bgd", "converges stably", "step-loss spread (last quarter) vs minibatch and sgd",
              (C("bgd", "minibatch", "step_loss_std", "<"), C("bgd", "sgd", "step_loss_std", "<"))),
    ClaimSpec("bgd", "each iteration is expensive, so it is slow", "time per step; accuracy after equal epochs",
              (C("bgd", "minibatch", "time_per_step", ">"), C("bgd", "minibatch", "final_acc", "<"))),
    ClaimSpec("sgd", "fast iterations", "time per step vs minibatch", (C("sgd", "minibatch", "time_per_step", "<"),)),
    ClaimSpec("sgd", "computationally efficient", "time per training sample vs minibatch",
              (C("sgd", "minibatch", "time_per_sample", "<"),)),
    ClaimSpec("sgd", "unstable path, large fluctuations", "step-loss spread vs minibatch and bgd",
              (C("sgd", "minibatch", "step_loss_std", ">"), C("sgd", "bgd", "step_loss_std", ">"))),
    ClaimSpec("minibatch", "balances efficiency and stability",
              "time per sample and spread vs sgd; accuracy vs bgd",
              (C("minibatch", "sgd", "time_per_sample", "<"), C("minibatch", "sgd", "step_loss_std", "<"),
               C("minibatch", "bgd", "final_acc", ">"))),
    ClaimSpec("momentum", "accelerates convergence", "test acc after epoch 1 vs minibatch",
              (C("momentum", "minibatch", "acc_epoch1", ">"),)),
    ClaimSpec("momentum", "reduces oscillation", "step-loss spread vs minibatch",
              (C("momentum", "minibatch", "step_loss_std", "<"),)),
    ClaimSpec("rmsprop", "adapts the learning rate", "test acc after epoch 1 vs minibatch",
              (C("rmsprop", "minibatch", "acc_epoch1", ">"),), direct=False),
    ClaimSpec("adam", "converges fast", "test acc after epoch 1 vs minibatch",
              (C("adam", "minibatch", "acc_epoch1", ">"),)),
    ClaimSpec("adam", "computationally more complex", "time per step vs minibatch, threshold +10%",
              (C("adam", "minibatch", "time_per_step", ">", 1.10),)),
)


def verdict(ci: Interval, side: str, threshold: float) -> str:
    """supported | not supported | inconclusive: where the 95 % interval lies against ``threshold``."""
    if not ci.known:
        return "inconclusive"
    claim_side, other_side = (ci.clears, ci.below) if side == ">" else (ci.below, ci.clears)
    if claim_side(threshold):
        return "supported"
    if other_side(threshold):
        return "not supported"
    return "inconclusive"


def combine(verdicts: list[str]) -> str:
    """All supported → supported; any not supported → not supported; else inconclusive."""
    if verdicts and all(v == "supported" for v in verdicts):
        return "supported"
    return "not supported" if "not supported" in verdicts else "inconclusive"


def seed_values(stats: pd.DataFrame, row: pd.Series, column: str) -> pd.Series:
    """A configuration's per-seed values of ``column`` (diverged seeds hold NaN and drop out)."""
    # every key, the model and the release too: seeds of another model or release are never paired with these
    return stats[same_config(stats, row)].set_index("seed")[column].dropna()


def paired_difference(a: pd.Series, b: pd.Series) -> Interval:
    """Mean over the seeds both have of a − b, with its interval."""
    both = a.index.intersection(b.index)
    if len(both) == 0:
        return NAN_INTERVAL
    return mean_ci((a[both] - b[both]).to_numpy(float))


def _judge(cmp: Compare, rows: Mapping[str, pd.Series], stats: pd.DataFrame,
           rounds: Mapping[tuple, pd.Series]) -> tuple[str, str, str, str]:
    """(verdict, interval text, n text, evidence) of one comparison."""
    ra, rb = rows[cmp.a], rows[cmp.b]
    if cmp.is_time:
        scale = rb["batch_size"] / ra["batch_size"] if cmp.measure == "time_per_sample" else 1.0
        ci = time_ratio(rounds, config_key(ra), config_key(rb), scale)
        sweep = ra["time_per_step_s_mean"] / rb["time_per_step_s_mean"] * scale
        if not rounds:
            why = "inconclusive: no timing pass"
        elif not math.isfinite(ci.est):
            why = "inconclusive: no clean timing rounds of both"
        else:
            why = ""
        evidence = (f"{why}; " if why else "") + (
            f"sweep wall time (runs shared the cores) gives {sweep:.3g}" if math.isfinite(sweep) else "")
        n = f"{ci.n} rounds" if ci.n else "0 rounds"
    else:
        a, b = seed_values(stats, ra, cmp.measure), seed_values(stats, rb, cmp.measure)
        ci = paired_difference(a, b)
        ia, ib = mean_ci(a.to_numpy(float)), mean_ci(b.to_numpy(float))
        name = RUN_MEASURES.get(cmp.measure, cmp.measure)
        evidence = (f"{name}: {cmp.a} {interval_text(ia)} vs {cmp.b} {interval_text(ib)} "
                    f"(mean over {ia.n} vs {ib.n} seeds)")
        if ci.n == 1:
            evidence = "single seed, no interval: " + evidence
        diverged = [m for m, r in ((cmp.a, ra), (cmp.b, rb)) if r["diverged"]]
        if diverged:
            evidence += "; diverged seeds left out: " + ", ".join(
                f"{m} {rows[m]['diverged']}/{rows[m]['runs']}" for m in diverged)
        n = f"{ci.n} seed{'s' if ci.n != 1 else ''}"
    return verdict(ci, cmp.side, cmp.limit), f"{cmp.describe()}: {interval_text(ci)}", n, evidence


def _lr_text(used: Mapping[str, str]) -> str:
    """Which lr each method's numbers come from; "default lr (no grid)" said once when it holds for all."""
    default = ": default lr (no grid)"
    if all(u.endswith(default) for u in used.values()):
        return "default lr (no grid): " + ", ".join(f"{m} {u.removesuffix(default)}" for m, u in used.items())
    return "; ".join(f"{m} {u}" for m, u in used.items())


def check_claims(summary: pd.DataFrame, stats: pd.DataFrame, rounds: Mapping[tuple, pd.Series] | None = None,
                 default_lr: Mapping[str, float] | None = None, baseline: str = BASELINE) -> list[Claim]:
    """The tutorial's closing table, claim by claim and framework by framework, from one dataset.

    ``stats`` holds one row per run (``aggregate.run_stats``), ``rounds`` the timing pass's clean
    rounds (``speed.round_times``; empty = no timing pass), ``default_lr`` each method's
    configured lr (to say "default lr (no grid)"). Only the tutorial's six methods are read; with
    several models, each model's claims are judged from its own runs (``Claim.model``).
    """
    # Each framework at its default release (the pinned one where it ran): its other releases are compared
    # with it in the report's section Versions, not judged again.
    default = summary["fw_default"].astype(bool) if "fw_default" in summary.columns else at_default(summary)
    summary = summary[summary["optimizer"].isin(TUTORIAL_METHODS) & default]
    summary = summary.drop(columns="fw_label", errors="ignore")  # one release each: named by the framework
    if "model" not in summary.columns:
        summary = summary.assign(model=DEFAULT_MODEL)
    models = model_order(summary["model"]) if len(summary) else [DEFAULT_MODEL]
    out = []
    for model in models:
        out += _check_model(summary[summary["model"] == model], stats, rounds or {}, default_lr, baseline, model)
    return out


def _check_model(summary: pd.DataFrame, stats: pd.DataFrame, rounds: Mapping[tuple, pd.Series],
                 default_lr: Mapping[str, float] | None, baseline: str, model: str) -> list[Claim]:
    refs = reference_rows(summary, dict(default_lr or {}))
    frameworks = framework_order(refs, baseline)
    out = []
    for spec in CLAIMS:
        needs = list(dict.fromkeys(m for c in spec.compares for m in (c.a, c.b)))
        measure = spec.measure if spec.direct else f"{spec.measure} (indirect evidence)"
        judged = False
        for fw in frameworks:
            rows = {m: refs[fw][m] for m in needs if m in refs[fw]}
            if len(rows) < len(needs):
                continue
            judged = True
            parts = [_judge(c, rows, stats, rounds) for c in spec.compares]
            out.append(Claim(
                spec.method, spec.claim, fw, measure, combine([p[0] for p in parts]),
                "; ".join(p[1] for p in parts), "; ".join(dict.fromkeys(p[2] for p in parts)),
                _lr_text({m: rows[m]["lr_used"] for m in needs}),
                "; ".join(p[3] for p in parts if p[3]), model))
        if not judged:
            out.append(Claim(spec.method, spec.claim, "—", measure, "inconclusive", "n/a", "0", "—",
                             f"not measured: needs runs of {', '.join(needs)} in one framework", model))
    return out

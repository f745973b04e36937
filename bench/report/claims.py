"""The tutorial's closing pros/cons table, claim by claim, judged from the summary (pure)."""
from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass

import numpy as np
import pandas as pd

from bench.optimizers import METHODS
from bench.report.aggregate import reference_rows
from bench.report.tables import fmt as _f


@dataclass
class Claim:
    method: str
    claim: str  # the seed's closing-table statement, paraphrased
    measure: str  # what we compare
    verdict: str  # supported | not supported | mixed | not measured (+ "(indirect)")
    evidence: str  # generated from the numbers



def _epochs(row: pd.Series) -> float:
    """Epochs to target, with 'never' as infinity so that comparisons still work."""
    v = row["epochs_to_target_mean"]
    return v if np.isfinite(v) else math.inf


def _reach(row: pd.Series) -> str:
    if not np.isfinite(row["epochs_to_target_mean"]):
        return f"not within {row['epochs']} epochs"
    return f"{_f(row['epochs_to_target_mean'])} epochs"


def _bgd_stable(r):
    b, m, s = r["bgd"], r["minibatch"], r["sgd"]
    ok = b["step_loss_std_mean"] < min(m["step_loss_std_mean"], s["step_loss_std_mean"])
    return ok, (f"step-loss spread bgd {_f(b['step_loss_std_mean'])} vs minibatch "
                f"{_f(m['step_loss_std_mean'])}, sgd {_f(s['step_loss_std_mean'])}; bgd loss rose on "
                f"{100 * b['loss_up_share_mean']:.0f}% of steps")


def _bgd_slow(r):
    b, m = r["bgd"], r["minibatch"]
    ok = b["time_per_step_s_mean"] > m["time_per_step_s_mean"] and b["final_acc_mean"] < m["final_acc_mean"]
    return ok, (f"one bgd step {_f(b['time_per_step_s_mean'] * 1e3)} ms vs {_f(m['time_per_step_s_mean'] * 1e3)} ms "
                f"for minibatch; after {b['epochs']} epochs test acc {_f(b['final_acc_mean'])} vs "
                f"{_f(m['final_acc_mean'])}")


def _sgd_fast_steps(r):
    s, m = r["sgd"], r["minibatch"]
    return s["time_per_step_s_mean"] < m["time_per_step_s_mean"], (
        f"one sgd step {_f(s['time_per_step_s_mean'] * 1e3)} ms vs {_f(m['time_per_step_s_mean'] * 1e3)} ms for minibatch")


def _sgd_efficient(r):
    s, m = r["sgd"], r["minibatch"]
    return s["samples_per_s_mean"] >= m["samples_per_s_mean"], (
        f"sgd {_f(s['samples_per_s_mean'])} samples/s vs minibatch {_f(m['samples_per_s_mean'])} "
        f"({_f(s['epoch_time_s_mean'])} s vs {_f(m['epoch_time_s_mean'])} s per epoch)")


def _sgd_jitter(r):
    s, m, b = r["sgd"], r["minibatch"], r["bgd"]
    ok = s["step_loss_std_mean"] > max(m["step_loss_std_mean"], b["step_loss_std_mean"])
    return ok, (f"step-loss spread sgd {_f(s['step_loss_std_mean'])} vs minibatch "
                f"{_f(m['step_loss_std_mean'])}, bgd {_f(b['step_loss_std_mean'])}; sgd loss rose on "
                f"{100 * s['loss_up_share_mean']:.0f}% of logged steps")


def _minibatch_balance(r):
    s, m, b = r["sgd"], r["minibatch"], r["bgd"]
    ok = (m["samples_per_s_mean"] > s["samples_per_s_mean"] and m["step_loss_std_mean"] < s["step_loss_std_mean"]
          and m["final_acc_mean"] > b["final_acc_mean"])
    return ok, (f"minibatch {_f(m['samples_per_s_mean'])} samples/s (sgd {_f(s['samples_per_s_mean'])}), "
                f"spread {_f(m['step_loss_std_mean'])} (sgd {_f(s['step_loss_std_mean'])}), "
                f"final acc {_f(m['final_acc_mean'])} (bgd {_f(b['final_acc_mean'])}, sgd {_f(s['final_acc_mean'])})")


def _momentum_faster(r):
    mo, m = r["momentum"], r["minibatch"]
    ok = (_epochs(mo), -mo["acc_epoch1_mean"]) < (_epochs(m), -m["acc_epoch1_mean"])
    text = (f"target {_f(mo['target_acc'])} reached in {_reach(mo)} vs {_reach(m)} for minibatch; "
            f"acc after epoch 1 {_f(mo['acc_epoch1_mean'])} vs {_f(m['acc_epoch1_mean'])}")
    if mo["lr"] == m["lr"]:
        return ok, text
    return ok, text, (f"η {_f(mo['lr'])} for momentum vs {_f(m['lr'])} for minibatch: the seed's EMA momentum settles at "
                f"a step of η·g, {_f(mo['lr'] / m['lr'])}× minibatch's, so the speed-up is not momentum's alone")


def _momentum_less_osc(r):
    mo, m = r["momentum"], r["minibatch"]
    return mo["step_loss_std_mean"] < m["step_loss_std_mean"], (
        f"step-loss spread momentum {_f(mo['step_loss_std_mean'])} vs minibatch {_f(m['step_loss_std_mean'])} "
        f"(mean step loss {_f(mo['step_loss_last_mean'])} vs {_f(m['step_loss_last_mean'])})")


def _rmsprop_adaptive(r):
    rp, m = r["rmsprop"], r["minibatch"]
    ok = rp["acc_epoch1_mean"] > m["acc_epoch1_mean"]
    return ok, (f"with a {_f(m['lr'] / rp['lr'])}× smaller η ({_f(rp['lr'])} vs {_f(m['lr'])}) rmsprop "
                f"reached acc {_f(rp['acc_epoch1_mean'])} after epoch 1 vs {_f(m['acc_epoch1_mean'])} for "
                f"minibatch SGD: its per-weight step scaling, not η, sets the step")


def _rank(rows: dict[str, pd.Series], method: str, col: str) -> int:
    """1 + how many methods did strictly better (ties share a rank; never reached = infinity)."""
    value = lambda name: rows[name][col] if np.isfinite(rows[name][col]) else math.inf  # noqa: E731
    return 1 + sum(value(name) < value(method) for name in rows)


def _adam_fast(r):
    a = r["adam"]
    by_epochs, by_time = _rank(r, "adam", "epochs_to_target_mean"), _rank(r, "adam", "seconds_to_target_mean")
    if not np.isfinite(a["epochs_to_target_mean"]):  # nobody's target: rank by final accuracy instead
        by_epochs = by_time = 1 + sum(r[m]["final_acc_mean"] > a["final_acc_mean"] for m in r)
        return by_epochs <= 2, (f"adam did not reach {_f(a['target_acc'])}; #{by_epochs} of {len(r)} by final "
                                f"accuracy ({_f(a['final_acc_mean'])})")
    fastest = min(r, key=lambda m: (_epochs(r[m]), -r[m]["acc_epoch1_mean"]))
    return max(by_epochs, by_time) <= 2, (
        f"adam reached {_f(a['target_acc'])} in {_reach(a)} and {_f(a['seconds_to_target_mean'])} s: "
        f"#{by_epochs} of {len(r)} by epochs, #{by_time} by seconds (ties share a rank; fewest epochs: "
        f"{fastest}, {_reach(r[fastest])})")


def _adam_costly(r):
    a, m = r["adam"], r["minibatch"]
    ratio = a["epoch_time_s_mean"] / m["epoch_time_s_mean"]
    return ratio > 1.10, (f"adam {_f(a['epoch_time_s_mean'])} s per epoch vs minibatch SGD "
                          f"{_f(m['epoch_time_s_mean'])} s ({100 * (ratio - 1):+.0f}%; threshold +10%)")


# (method, the seed's claim, what is compared, methods needed, evaluator, direct evidence?)
CLAIMS: tuple[tuple[str, str, str, tuple[str, ...], Callable, bool], ...] = (
    ("bgd", "converges stably", "step-loss spread, last quarter", ("bgd", "minibatch", "sgd"), _bgd_stable, True),
    ("bgd", "each iteration is expensive, so it is slow", "time per step; accuracy after equal epochs",
     ("bgd", "minibatch"), _bgd_slow, True),
    ("sgd", "fast iterations", "time per step", ("sgd", "minibatch"), _sgd_fast_steps, True),
    ("sgd", "computationally efficient", "samples per second", ("sgd", "minibatch"), _sgd_efficient, True),
    ("sgd", "unstable path, large fluctuations", "step-loss spread", ("sgd", "minibatch", "bgd"), _sgd_jitter, True),
    ("minibatch", "balances efficiency and stability", "samples/s, spread, accuracy vs sgd and bgd",
     ("minibatch", "sgd", "bgd"), _minibatch_balance, True),
    ("momentum", "accelerates convergence", "epochs to target vs minibatch", ("momentum", "minibatch"),
     _momentum_faster, True),
    ("momentum", "reduces oscillation", "step-loss spread vs minibatch", ("momentum", "minibatch"),
     _momentum_less_osc, True),
    ("rmsprop", "adapts the learning rate", "progress with a smaller η than minibatch SGD",
     ("rmsprop", "minibatch"), _rmsprop_adaptive, False),
    ("adam", "converges fast", "rank by epochs and seconds to target", tuple(METHODS), _adam_fast, True),
    ("adam", "computationally more complex", "time per epoch vs minibatch SGD", ("adam", "minibatch"),
     _adam_costly, True),
)


def check_claims(summary: pd.DataFrame) -> list[Claim]:
    """The seed's closing table, claim by claim, judged per framework from one dataset's summary."""
    rows = reference_rows(summary)
    claims = []
    for method, claim, measure, needs, judge, direct in CLAIMS:
        results, evidence, notes = [], [], []
        for fw in sorted(rows, key=lambda f: (f != "torch", f)):
            have = {m: rows[fw][m] for m in needs if m in rows[fw]}
            if len(have) < len(needs):
                continue
            # A method whose every seed diverged has no final accuracy to compare with.
            if any(row["runs"] == row["diverged"] for row in have.values()):
                evidence.append(f"{fw}: {', '.join(m for m, r in have.items() if r['runs'] == r['diverged'])} diverged")
                results.append(False)
                continue
            ok, text, *note = judge(have)
            results.append(bool(ok))
            evidence.append(f"{fw}: {text}")
            notes.extend(note)
        if not results:
            verdict = "not measured"
            evidence = [f"needs runs of {', '.join(needs)}"]
        elif all(results):
            verdict = "supported"
        elif not any(results):
            verdict = "not supported"
        else:
            verdict = "mixed (" + ", ".join(
                f"{fw} {'yes' if ok else 'no'}" for fw, ok in zip(sorted(rows, key=lambda f: (f != "torch", f)), results)) + ")"
        if not direct and results:
            verdict += " (indirect)"
        claims.append(Claim(method, claim, measure, verdict, "; ".join(evidence + list(dict.fromkeys(notes)))))
    return claims


"""Learning-rate tuning: the lr that won on the validation split, and whether it beats the default.

The protocol of DeepOBS and of the Crowded Valley study, per framework x method:

1. tune ``optimizer.lr`` on a validation split carved from the training set
   (``data.val_size > 0``; ``hydra/sweeper=tune_lr`` with ``objective=val_acc``, or the grid
   ``hydra/sweeper=grid_lr``); the test set is never used to choose;
2. re-run the best lr and the method's default lr with several seeds and compare their
   *test* accuracy.

``make tune`` runs both steps. Everything here is read back from ``runs/*/metrics.csv`` and
``run.json``, so Optuna trials, grid runs and re-runs are all just runs; re-running the best lr
with seed 0 reuses the tuning trial itself. This module imports neither framework.

``python -m bench.tuning lrs results_dir=<dir> framework=<fw> optimizer=<method>`` (or the three
values in this order, without their names) prints ``best,default`` (the values for the re-run's
``optimizer.lr=`` sweep); ``--help`` lists the keys. An empty ``results_dir=`` is refused (exit 2),
never read as the default.

A finished run whose ``metrics.csv`` or ``run.json`` is damaged (unreadable, a column missing, a cell
that is not a number, a truncated last row) is skipped with a warning that names the file, as the
report skips it (``bench.report.load.read_metrics`` reads both): ``lrs`` prints each warning on stderr
and answers from the other runs; the report's section lists them under its table.
"""
from __future__ import annotations

import math
import sys
from pathlib import Path

import pandas as pd

from bench.cli import entry
from bench.exits import BadInput
from bench.options import Option, Options, choice, pathname
from bench.report.load import read_metrics
from bench.report.sections import ReportSection
from bench.results import FINISHED, read_json
from bench.spec import conf_group

TUNE_KEYS = ("dataset", "framework", "optimizer", "impl", "batch_size")  # one tuning problem each


def default_lr(optimizer: str) -> float:
    """The method's lr in ``conf/optimizer/<name>.yaml`` (the tutorial's API defaults)."""
    return float(conf_group("optimizer", optimizer)["lr"])


def final_rows(results_dir: Path, warnings: list[str] | None = None) -> pd.DataFrame:
    """One row per finished run that measured a validation split: its last epoch.

    A diverged run scores 0 validation accuracy (it is a result, and the worst one) and NaN
    test accuracy, so it can win no comparison and is never averaged in as a number. A damaged
    run is skipped; ``warnings`` (when given) gets a line naming its file and what is wrong.
    """
    said = [] if warnings is None else warnings
    rows = []
    for folder in sorted((Path(results_dir) / "runs").glob("*/")):
        info = read_json(folder / "run.json")
        if info is None:
            if (folder / "run.json").exists():
                said.append(f"skipped {folder / 'run.json'}: unreadable JSON")
            continue
        if info.get("status") not in FINISHED or not (folder / "metrics.csv").is_file():
            continue
        df, why = read_metrics(folder / "metrics.csv")  # the report's reader: typed, partial files refused
        if df is None:
            said.append(f"skipped {folder / 'metrics.csv'}: {why}")
            continue
        if "val_acc" not in df or not pd.notna(df["val_acc"].iloc[0]):
            continue  # no validation split: not a tuning run
        last = df.iloc[-1]
        diverged = info["status"] == "diverged"
        unreadable = [k for k in ("lr", "seed", "batch_size", *(() if diverged else ("val_acc",)))
                      if not math.isfinite(last[k])]
        if unreadable:
            said.append(f"skipped {folder / 'metrics.csv'}: partial (last epoch's {', '.join(unreadable)} "
                        "not a number)")
            continue
        rows.append({
            **{k: last[k] for k in TUNE_KEYS}, "lr": float(last["lr"]), "seed": int(last["seed"]),
            "status": info["status"], "epochs": int(df["epoch"].max()),
            "val_acc": 0.0 if diverged else float(last["val_acc"]),
            "test_acc": math.nan if diverged else float(last["test_acc"]),
        })
    return pd.DataFrame(rows)


def _same_lr(series: pd.Series, lr: float) -> pd.Series:
    return series.apply(lambda x: math.isclose(x, lr, rel_tol=1e-9))


def best_lrs(final: pd.DataFrame) -> pd.DataFrame:
    """Per tuning problem: the lr with the highest validation accuracy, and how many were tried.

    Chosen on the first seed's runs only (the tuning trials), so the re-runs with more seeds
    that follow do not change the choice.
    """
    rows = []
    for key, grp in final.groupby(list(TUNE_KEYS), sort=True):
        trials = grp[grp["seed"] == grp["seed"].min()].sort_values(["val_acc", "lr"], ascending=[False, True])
        best = trials.iloc[0]
        rows.append({**dict(zip(TUNE_KEYS, key)), "lrs_tried": len(trials), "best_lr": float(best["lr"]),
                     "best_val_acc": float(best["val_acc"]), "default_lr": default_lr(str(key[2]))})
    return pd.DataFrame(rows)


def _test_acc(grp: pd.DataFrame, lr: float) -> tuple[float, float, int]:
    runs = grp[_same_lr(grp["lr"], lr)]
    accs = runs["test_acc"].dropna()
    std = float(accs.std(ddof=1)) if len(accs) > 1 else math.nan
    return (float(accs.mean()) if len(accs) else math.nan), std, len(runs)


def tuned_vs_default(final: pd.DataFrame) -> pd.DataFrame:
    """The "tuned vs default" table: test accuracy over seeds at the best and at the default lr."""
    rows = []
    for _, best in best_lrs(final).iterrows():
        grp = final
        for k in TUNE_KEYS:
            grp = grp[grp[k] == best[k]]
        tuned = _test_acc(grp, best["best_lr"])
        default = _test_acc(grp, best["default_lr"])
        rows.append({
            **{k: best[k] for k in TUNE_KEYS}, "lrs_tried": best["lrs_tried"],
            "default_lr": best["default_lr"], "best_lr": best["best_lr"], "best_val_acc": best["best_val_acc"],
            "test_acc_default_mean": default[0], "test_acc_default_std": default[1], "seeds_default": default[2],
            "test_acc_tuned_mean": tuned[0], "test_acc_tuned_std": tuned[1], "seeds_tuned": tuned[2],
            "gain": tuned[0] - default[0],
        })
    return pd.DataFrame(rows)


def report_section(results_dir: Path) -> ReportSection | None:
    """The report's "Tuned vs default" section; None when no run measured a validation split."""
    skipped: list[str] = []
    final = final_rows(results_dir, skipped)
    if final.empty:
        return None
    table = tuned_vs_default(final)
    text = (
        "Learning rate tuned per framework x method on a validation split carved from the training "
        "set (never the test set); the best lr is the one with the highest validation accuracy after "
        "the run's epochs, chosen on the first seed's trials. The test accuracy columns are the mean "
        "and standard deviation over the seeds re-run at that lr and at the method's default lr "
        "(`make tune`). Diverged runs count as 0 validation accuracy and are left out of test means."
    )
    missing = table[(table["seeds_tuned"] < 2) | (table["seeds_default"] < 2)]
    if len(missing):
        text += (f"\n\n{len(missing)} row(s) lack re-runs with several seeds at the best or the default lr: "
                 "run `make tune` (or the re-run step) to fill them in.")
    if skipped:
        text += f"\n\n{len(skipped)} damaged run(s) left out: " + "; ".join(skipped) + "."
    return ReportSection("Tuned vs default learning rate", text, table)


OPTIONS = Options(
    "python -m bench.tuning",
    """Learning-rate tuning, read back from a results_dir's runs (make tune): `lrs` prints the lr
    that won on the validation split and the method's default lr, as "best,default", for one
    framework x method: the values of the re-run's optimizer.lr= sweep.""",
    {
        "command": Option("lrs", "what to print: lrs (the only one)", choice("lrs")),
        "results_dir": Option("results", "the folder whose runs/ hold the tuning runs (a damaged run is "
                              "skipped with a warning on stderr)", pathname),
        "framework": Option(None, "the framework tuned (torch, tensorflow, jax)", required=True),
        "optimizer": Option(None, "the method tuned (a conf/optimizer/ name)", required=True),
    },
    positional=("command", "results_dir", "framework", "optimizer"),
)


def main(argv: list[str] | None = None) -> int:
    args = OPTIONS.parse(sys.argv[1:] if argv is None else argv)
    framework, optimizer, results_dir = args["framework"], args["optimizer"], Path(args["results_dir"])
    skipped: list[str] = []
    final = final_rows(results_dir, skipped)
    for line in skipped:
        print(f"warning: {line}", file=sys.stderr, flush=True)
    best = best_lrs(final) if not final.empty else final
    if not best.empty:
        best = best[(best["framework"] == framework) & (best["optimizer"] == optimizer)]
    if best.empty:
        raise BadInput(f"no tuning runs for {framework} {optimizer} in {results_dir}/runs "
                       "(runs with data.val_size > 0)")
    if len(best) > 1:
        raise BadInput(f"{len(best)} tuning problems for {framework} {optimizer} "
                       "(datasets or batch sizes differ); use a results_dir per tuning")
    row = best.iloc[0]
    values = dict.fromkeys([repr(float(row["best_lr"])), repr(float(row["default_lr"]))])  # unique, best first
    print(",".join(values))
    return 0


if __name__ == "__main__":
    sys.exit(entry(main))

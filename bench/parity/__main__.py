"""``python -m bench.parity <overrides>``: do the frameworks agree, step by step?

Runs the first N training steps of a run in PyTorch, TensorFlow and JAX, each in its own child
process (torch and TensorFlow cannot share one), from the same initial weights on the same batches, saves
every step's loss and the parameters at about ``param_points`` steps, and compares them
(``bench.parity.compare`` says how), each framework also against exact float64 arithmetic of
its formula (``bench.parity.exact``). ``frameworks.<fw>.version=<release>`` compares two versions of
one framework instead, the project's and that release (in its own venv, ``bench.envs``), the same way.

Writes, per pair of frameworks, ``results_dir/parity/<optimizer>-<impl>-bs<bs>-s<seed>[-tags].csv``
(one row per step, each side's version in it; a tag names a pair other than torch–tensorflow, and
two versions: ``-jax0.10.2-jax0.9.2``)
and a ``.json`` beside it (versions, devices, date), and prints the comparison at steps 1, 10
and N. ``bench.parity.section`` summarises every parity CSV for ``bench.report``.

Exit codes: 0 compared (whether or not the frameworks agree: a difference is a result),
1 a framework's process failed, 2 bad input (one line on stderr).
"""
from __future__ import annotations

import contextlib
import json
import sys
import tempfile
import time
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

from bench.cli import check_hydra_argv, entry, error
from bench.exits import BadInput
from bench.parity.compare import COLUMNS, compare, print_table, result_rows, short_verdict
from bench.parity.run import (
    ParityError,
    job_data,
    job_model,
    job_pairs,
    label,
    lead_spec,
    make_job,
    result_name,
    run_jobs,
)
from bench.results import write_csv, write_json


def _process_key(job: Mapping[str, Any]) -> str:
    """Jobs that can share one child process per member: same interpreters, versions and environment."""
    return json.dumps({fw: [spec["framework"].get("python"), spec["framework"].get("version"), spec["threads"],
                            spec["device"], spec["deterministic"], spec["precision"]]
                       for fw, spec in job["specs"].items()}, sort_keys=True)


def check(items: Sequence[tuple[dict[str, Any], Mapping[str, Any]]]) -> int:
    """Every (job, config) of this command: one child per framework runs all jobs that can
    share it (a sweep of twelve checks imports each framework once, not twelve times), then
    each job is compared pair by pair and written. Returns the exit code."""
    groups: dict[str, list[tuple[dict[str, Any], Mapping[str, Any]]]] = {}
    for item in items:
        groups.setdefault(_process_key(item[0]), []).append(item)
    for group in groups.values():
        cfg = group[0][1]
        out_dir = Path(str(cfg["results_dir"])) / "parity"
        with contextlib.ExitStack() as stack:
            workdir = (out_dir / "arrays" if cfg["keep_arrays"]
                       else Path(stack.enter_context(tempfile.TemporaryDirectory(prefix="parity-"))))
            results = run_jobs([job for job, _ in group], workdir)
        for job, cfg in group:
            _compare_and_write(job, results[job["key"]], Path(str(cfg["results_dir"])) / "parity",
                               brief=len(items) > 1)
    return 0


def _compare_and_write(job: Mapping[str, Any], result: Mapping[str, Any], out_dir: Path, brief: bool = False) -> None:
    """Compare every pair of the check and write its CSV and JSON. One check prints each pair's
    table; a sweep of checks prints one line per check (the tables are in the CSVs, and the report
    shows them), so ``make bench``'s log stays readable."""
    exact: dict[str, Any] = {}  # each framework's float64 run, shared by its pairs
    said = []
    for pair in job_pairs(job):
        name = result_name(job, pair)
        diffs = compare(job, result, job_data(job), pair, exact)
        write_csv(out_dir / f"{name}.csv", result_rows(job, diffs, pair), COLUMNS)
        write_json(out_dir / f"{name}.json", {
            "date": time.strftime("%Y-%m-%dT%H:%M:%S%z"), "job": job,
            "frameworks": {fw: result["describe"][fw] for fw in pair}})
        if brief:
            said.append(f"{' vs '.join(label(job, m) for m in pair)} {short_verdict(job, diffs, pair)}")
            continue
        print_table(job, diffs, pair)
        print(f"per-step results: {out_dir / (name + '.csv')}")
    if brief:
        opt = lead_spec(job)["optimizer"]
        print(f"parity {opt['name']}/{opt['impl']} {job_model(job).name}, {job['steps']} steps: " + "; ".join(said),
              flush=True)


def main() -> int:
    import hydra
    from hydra.core.hydra_config import HydraConfig
    from hydra.types import RunMode
    from omegaconf import DictConfig, OmegaConf

    from bench.options import conf_help

    # --help (conf/hydra/help/parity.yaml) lists the groups and keys from conf/parity.yaml's comments.
    OmegaConf.register_new_resolver("optbench_conf", conf_help, replace=True)
    codes: list[int] = []
    items: list[tuple[dict[str, Any], Mapping[str, Any]]] = []

    @hydra.main(version_base="1.3", config_path="../../conf", config_name="parity")
    def _main(cfg: DictConfig) -> None:
        # With -m, Hydra calls this once per check: collect them, run them together below.
        plain = OmegaConf.to_container(cfg, resolve=True)
        try:
            job = make_job("check", plain, HydraConfig.get().overrides.task)
            job["key"] = result_name(job)  # unique per check; names its arrays with keep_arrays=true
            items.append((job, plain))
        except BadInput as exc:  # in a sweep, name the check: the others are not run either
            multirun = HydraConfig.get().mode == RunMode.MULTIRUN
            codes.append(error(f"{' '.join(HydraConfig.get().overrides.task)}: {exc}" if multirun else str(exc)))

    def _checks() -> int:
        check_hydra_argv(sys.argv[1:])
        _main()
        if items and not codes:  # one bad check is bad input for the whole sweep: none is run
            try:
                codes.append(check(items))
            except ParityError as exc:  # a framework's process failed: a failed run, not bad input
                print(f"error: {exc}", file=sys.stderr, flush=True)
                codes.append(1)
        return max(codes, default=0)  # with -m, the worst of the checks

    return entry(_checks)


if __name__ == "__main__":
    sys.exit(main())

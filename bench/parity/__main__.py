"""``python -m bench.parity <overrides>``: do the frameworks agree, step by step?

Runs the first N training steps of a run in PyTorch, TensorFlow and JAX, each in its own child
process (torch and TensorFlow cannot share one), from the same initial weights on the same batches, saves
every step's loss and the parameters at about ``param_points`` steps, and compares them
(``bench.parity.compare`` says how), each framework also against exact float64 arithmetic of
its formula (``bench.parity.exact``).

Writes, per pair of frameworks, ``results_dir/parity/<optimizer>-<impl>-bs<bs>-s<seed>[-tags].csv``
(one row per step; a tag names a pair other than torch–tensorflow)
and a ``.json`` beside it (versions, devices, date), and prints the comparison at steps 1, 10
and N. ``bench.parity.section`` summarises every parity CSV for ``bench.report``.

Exit codes: 0 compared (whether or not the frameworks agree: a difference is a result),
1 a framework's process failed, 2 bad input (one line on stderr).
"""
from __future__ import annotations

import contextlib
import sys
import tempfile
import time
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

from bench.cli import entry, error
from bench.exits import BadInput
from bench.parity.compare import COLUMNS, compare, pairs, print_table, result_rows
from bench.parity.run import ParityError, job_data, make_job, result_name, run_jobs
from bench.results import write_csv, write_json


def check(cfg: Mapping[str, Any], overrides: Sequence[str] = ()) -> int:
    """The whole check for one composed parity config; returns the exit code."""
    job = make_job("parity", cfg, overrides)
    out_dir = Path(str(cfg["results_dir"])) / "parity"
    with contextlib.ExitStack() as stack:
        workdir = (out_dir / result_name(job) if cfg["keep_arrays"]
                   else Path(stack.enter_context(tempfile.TemporaryDirectory(prefix="parity-"))))
        result = run_jobs([job], workdir)["parity"]
    exact: dict[str, Any] = {}  # each framework's float64 run, shared by its pairs
    for pair in pairs(list(job["specs"])):
        name = result_name(job, pair)
        diffs = compare(job, result, job_data(job), pair, exact)
        write_csv(out_dir / f"{name}.csv", result_rows(job, diffs, pair), COLUMNS)
        write_json(out_dir / f"{name}.json", {
            "date": time.strftime("%Y-%m-%dT%H:%M:%S%z"), "job": job,
            "frameworks": {fw: result["describe"][fw] for fw in pair}})
        print_table(job, diffs, pair)
        print(f"per-step results: {out_dir / (name + '.csv')}")
    return 0


def main() -> int:
    import hydra
    from hydra.core.hydra_config import HydraConfig
    from omegaconf import DictConfig, OmegaConf

    codes: list[int] = []

    @hydra.main(version_base="1.3", config_path="../../conf", config_name="parity")
    def _main(cfg: DictConfig) -> None:
        try:
            codes.append(check(OmegaConf.to_container(cfg, resolve=True), HydraConfig.get().overrides.task))
        except BadInput as exc:
            codes.append(error(str(exc)))
        except ParityError as exc:  # a framework's process failed: a failed run, not bad input
            print(f"error: {exc}", file=sys.stderr, flush=True)
            codes.append(1)

    def _checks() -> int:
        _main()
        return max(codes, default=0)  # with -m, the worst of the checks

    return entry(_checks)


if __name__ == "__main__":
    sys.exit(main())

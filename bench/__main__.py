"""``python -m bench <overrides>`` runs one training run; ``-m`` runs a sweep.

Exit codes: 0 all runs completed (or diverged, which is a result), 1 some run failed,
2 bad input (one line on stderr), 130 interrupted (Ctrl-C or SIGTERM).

``seeds=N`` is shorthand for the sweep ``-m seed=range(N)``.
"""
from __future__ import annotations

import errno
import os
import re
import sys

import hydra
from omegaconf import DictConfig, OmegaConf

from bench.cli import check_hydra_argv, entry, one_line
from bench.exits import EXIT_BAD_INPUT, BadInput
from bench.options import conf_help
from bench.run.launch import SWEEP_PID_ENV, objective_value, run_job, stop_sweep_processes
from bench.run.slurm import UncompletedJobError, lost_job_line
from bench.run.sweep import SweepProgress, apply_tuning_defaults, current_sweeper, is_tuning, mark_interrupted
from bench.spec import BOOKKEEPING

_result: list[int] = []
# --help (conf/hydra/help/optbench.yaml) lists the groups and keys from conf/config.yaml's comments.
OmegaConf.register_new_resolver(
    "optbench_conf", lambda name: conf_help(name, BOOKKEEPING, "[bookkeeping]"), replace=True)


@hydra.main(version_base="1.3", config_path="../conf", config_name="config")
def _main(cfg: DictConfig) -> int | float:
    apply_tuning_defaults(cfg, current_sweeper())  # hydra/sweeper=tune_lr implies objective=val_acc
    # Only a tuning sweep's trial raises bad input (Optuna must stop); elsewhere it is one line.
    outcome = run_job(cfg, raise_errors=is_tuning(current_sweeper()))
    code = EXIT_BAD_INPUT if outcome is None else outcome.code
    _result.append(code)
    if outcome is not None and cfg.get("objective"):  # a tuning sweep: the sweeper (Optuna) reads it
        return objective_value(outcome, cfg.objective)
    return code


def expand_seeds(argv: list[str]) -> list[str]:
    """``seeds=N`` -> ``seed=range(N)`` in a sweep (``-m`` added if missing); N is at least 1."""
    out, sweep = [], False
    for arg in argv:
        key, eq, value = arg.partition("=")
        if eq and key == "seeds":
            if not re.fullmatch(r"\d+", value.strip()) or int(value) < 1:
                raise BadInput(f"seeds={value}: give how many seeds to run, a whole number >= 1 "
                               "(seeds=3 runs seeds 0, 1, 2; seed=a,b runs chosen ones)")
            out.append(f"seed=range({int(value)})")
            sweep = True
        else:
            out.append(arg)
    if sweep and not {"-m", "--multirun"} & set(out):
        out.insert(0, "-m")
    return out


def _marked_and_rerun() -> str:
    """Mark the stopped sweep's unfinished runs interrupted; the end of the line that says so."""
    marked = mark_interrupted(SweepProgress.results_dir) if SweepProgress.results_dir else []
    said = f"; {len(marked)} run(s) marked interrupted" if marked else ""
    return f"{said}; run the same command again to finish the rest"


def _interrupted() -> str:
    """Ctrl-C or SIGTERM: end every process of the sweep, mark its unfinished runs."""
    stop_sweep_processes(os.getpid())
    return f"interrupted{_marked_and_rerun()}"


def _lost_job(exc: UncompletedJobError) -> int:
    """The sweep stops on a Slurm job that ended without its result: the final counts, runs it
    left ``running`` marked interrupted, one line, exit code 1."""
    SweepProgress.stop_reporter()
    print(f"error: {lost_job_line(exc)}{_marked_and_rerun()}", file=sys.stderr, flush=True)
    return 1


def _raised_by_hydra(exc: BaseException) -> bool:
    """Hydra raised it (bad input), not our code: told by the innermost frame's module, never by
    its file's path, which a checkout inside a folder named ``hydra`` would match too."""
    tb = exc.__traceback__
    while tb is not None and tb.tb_next is not None:
        tb = tb.tb_next
    module = tb.tb_frame.f_globals.get("__name__", "") if tb is not None else ""
    return module == "hydra" or module.startswith("hydra.")


def _run() -> int:
    os.environ[SWEEP_PID_ENV] = str(os.getpid())  # local sweep workers (joblib, submitit_local) die with us
    sys.argv[1:] = expand_seeds(sys.argv[1:])
    check_hydra_argv(sys.argv[1:])
    try:
        _main()
    except ValueError as exc:
        if not _raised_by_hydra(exc):
            raise
        raise BadInput(one_line(exc)) from None  # e.g. `data=null`: Hydra says so as a ValueError
    except OSError as exc:  # Hydra's own files of a sweep (multirun.yaml) on a full disk
        if exc.errno != errno.ENOSPC:
            raise
        where = SweepProgress.results_dir or exc.filename or "results_dir"
        print(f"error: {where}: no space left on device", file=sys.stderr, flush=True)
        return 1
    except UncompletedJobError as exc:  # a Slurm job ended without its result; the others have ended
        return _lost_job(exc)
    if SweepProgress.failed is not None:  # a sweep: the jobs ran in workers
        if SweepProgress.failed:
            print(f"error: {SweepProgress.failed} run(s) failed; see run.json of each", file=sys.stderr)
            return 1
        return 0
    return _result[0] if _result else 0


def main() -> int:
    return entry(_run, on_interrupt=_interrupted)


if __name__ == "__main__":
    sys.exit(main())

"""``python -m bench <overrides>`` runs one training run; ``-m`` runs a sweep.

Exit codes: 0 all runs completed (or diverged, which is a result), 1 some run failed,
2 bad input (one line on stderr), 130 interrupted (Ctrl-C or SIGTERM).

``seeds=N`` is shorthand for the sweep ``-m seed=range(N)``.
"""
from __future__ import annotations

import os
import re
import signal
import sys

import hydra
from hydra.errors import HydraException
from omegaconf import DictConfig
from omegaconf.errors import OmegaConfBaseException

from bench.exits import EXIT_BAD_INPUT, EXIT_INTERRUPTED, sigterm_as_interrupt
from bench.run.launch import (SWEEP_PID_ENV, SweepProgress, mark_interrupted,
                          objective_value, run_job, stop_sweep_processes)
from bench.spec import ConfigError

_result: list[int] = []


@hydra.main(version_base="1.3", config_path="../conf", config_name="config")
def _main(cfg: DictConfig) -> int | float:
    outcome = run_job(cfg, raise_errors=cfg.get("objective") is not None)
    code = EXIT_BAD_INPUT if outcome is None else outcome.code
    _result.append(code)
    if cfg.get("objective"):  # a tuning sweep: the sweeper (Optuna) reads the return value
        return objective_value(outcome, cfg.objective)
    return code


def expand_seeds(argv: list[str]) -> list[str]:
    """``seeds=N`` -> ``seed=range(N)`` in a sweep (``-m`` added if missing)."""
    out, sweep = [], False
    for arg in argv:
        match = re.fullmatch(r"seeds=(\d+)", arg)
        if match:
            out.append(f"seed=range({int(match.group(1))})")
            sweep = True
        else:
            out.append(arg)
    if sweep and not {"-m", "--multirun"} & set(out):
        out.insert(0, "-m")
    return out


def one_line(exc: BaseException) -> str:
    """Hydra's and OmegaConf's multi-line messages as one line (choices kept, search path dropped)."""
    parts: list[str] = []
    for err in (exc, exc.__cause__):
        if err is None:
            continue
        lines = [ln.strip() for ln in str(err).splitlines() if ln.strip()]
        for i, line in enumerate(lines):
            if line.startswith(("Config search path", "full_key:", "object_type=", "Set the environment")):
                break
            if line.startswith("Available options in"):
                options = [ln for ln in lines[i + 1:] if not ln.startswith(("Config search path", "provider="))]
                parts.append(f"choose one of: {', '.join(options)}")
                break
            if line not in parts and not line.startswith("To append to your config"):  # we refuse new keys
                parts.append(line.rstrip("."))
    return "; ".join(parts)


def main() -> int:
    sigterm_as_interrupt()
    # Hydra prints its errors as multi-line text and exits 1; with HYDRA_FULL_ERROR it raises,
    # and the errors are turned into one line and exit code 2 here.
    os.environ["HYDRA_FULL_ERROR"] = "1"
    os.environ[SWEEP_PID_ENV] = str(os.getpid())  # local sweep workers (joblib, submitit_local) die with us
    sys.argv[1:] = expand_seeds(sys.argv[1:])
    try:
        _main()
    except (HydraException, OmegaConfBaseException) as exc:
        print(f"error: {one_line(exc)}", file=sys.stderr)
        return EXIT_BAD_INPUT
    except ConfigError as exc:  # a tuning trial's bad input, re-raised by the Optuna sweeper
        print(f"error: {exc}", file=sys.stderr)
        return EXIT_BAD_INPUT
    except OSError as exc:  # Hydra creating its output folder under results_dir
        print(f"error: cannot write {exc.filename or ''}: {exc.strerror or exc}; choose a writable results_dir",
              file=sys.stderr)
        return EXIT_BAD_INPUT
    except KeyboardInterrupt:
        signal.signal(signal.SIGTERM, signal.SIG_IGN)  # a second SIGTERM must not cut the cleanup short
        stop_sweep_processes(os.getpid())
        marked = mark_interrupted(SweepProgress.results_dir) if SweepProgress.results_dir else []
        print(f"interrupted{f'; {len(marked)} run(s) marked interrupted' if marked else ''}; "
              "run the same command again to finish the rest", file=sys.stderr)
        return EXIT_INTERRUPTED
    if SweepProgress.failed is not None:  # a sweep: the jobs ran in workers
        if SweepProgress.failed:
            print(f"error: {SweepProgress.failed} run(s) failed; see run.json of each", file=sys.stderr)
            return 1
        return 0
    return _result[0] if _result else 0


if __name__ == "__main__":
    sys.exit(main())

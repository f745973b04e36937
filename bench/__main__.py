"""``python -m bench <overrides>`` runs one training run; ``-m`` runs a sweep.

Exit codes: 0 all runs completed (or diverged, which is a result), 1 some run failed,
2 bad input (one line on stderr), 130 interrupted.
"""
from __future__ import annotations

import sys

import hydra
from omegaconf import DictConfig

from bench.launch import EXIT_BAD_INPUT, SweepProgress, run_job

_result: list[int] = []


@hydra.main(version_base="1.3", config_path="../conf", config_name="config")
def _main(cfg: DictConfig) -> int:
    code = run_job(cfg)
    _result.append(code)
    return code


def main() -> int:
    try:
        _main()
    except SystemExit as exc:  # Hydra reports config errors (unknown choice, bad override) and exits 1
        if exc.code not in (0, None):
            return EXIT_BAD_INPUT
    except KeyboardInterrupt:
        print("interrupted", file=sys.stderr)
        return 130
    if SweepProgress.failed is not None:  # a sweep: the jobs ran in workers
        if SweepProgress.failed:
            print(f"error: {SweepProgress.failed} run(s) failed; see run.json of each", file=sys.stderr)
            return 1
        return 0
    return _result[0] if _result else 0


if __name__ == "__main__":
    sys.exit(main())

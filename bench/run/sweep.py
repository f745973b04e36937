"""Sweep-level bookkeeping: the Hydra callback that counts a sweep's runs, the checks made once
before its first run, and stale ``running`` runs (what Slurm says of a job: ``bench.run.slurm``).

Framework-neutral and light: imported by ``python -m bench`` and by every sweep worker.
"""
from __future__ import annotations

import errno
import fcntl
import os
import sys
import time
from pathlib import Path
from typing import Any

from hydra.core.hydra_config import HydraConfig
from hydra.experimental.callback import Callback
from omegaconf import DictConfig, OmegaConf, open_dict

from bench import envs, frameworks
from bench.exits import EXIT_BAD_INPUT, BadInput
from bench.machine import resolve_device
from bench.results import run_status, update_run_json, write_json
from bench.run.progress import SweepReporter
from bench.run.slurm import watch_jobs
from bench.spec import build_spec, check_int, conf_group, unknown_keys

OBJECTIVES = ("val_acc",)  # what a tuning sweep (hydra/sweeper=tune_lr) maximises
# The validation split a tuning sweep carves from the training set when the user sets none:
# 1000 images fit every dataset here (mnist_embedded has 4000 training images, MNIST 60000).
TUNE_VAL_SIZE = 1000


# ------------------------------------------------------------------ checks before the first run
def is_tuning(sweeper: str) -> bool:
    return sweeper.endswith("OptunaSweeper")


def apply_tuning_defaults(cfg: DictConfig, sweeper: str) -> None:
    """``hydra/sweeper=tune_lr`` in one word: objective=val_acc and a validation split unless set.

    A split of 0 is no split, so it counts as unset here.
    """
    if not is_tuning(sweeper):
        return
    with open_dict(cfg):
        if cfg.get("objective") is None:
            cfg.objective = OBJECTIVES[0]
        if "data" in cfg and not cfg.data.get("val_size"):
            cfg.data.val_size = TUNE_VAL_SIZE


def check_task_config(cfg: dict[str, Any]) -> None:
    """Refuse keys no conf file declares, and an objective that cannot be measured."""
    extra = unknown_keys(cfg)
    if extra:
        raise BadInput(f"unknown key(s) {', '.join(extra)}: no config file in conf/ declares them")
    objective = cfg.get("objective")
    if objective is not None:
        if objective not in OBJECTIVES:
            raise BadInput(f"objective={objective!r} is not one of {', '.join(OBJECTIVES)}")
        if not cfg["data"].get("val_size"):
            raise BadInput(f"objective={objective} is measured on a validation split: set data.val_size > 0")


def check_jobs(config: DictConfig, jobs: list[list[str]]) -> None:
    """Every job of a sweep composed and checked as its run will check it (``build_spec``), before any
    lane starts: ``batch_size=0,32`` is bad input for the whole sweep, not one failed run among
    good ones."""
    from hydra import compose

    for job in jobs:
        cfg = compose(config_name=str(config.hydra.job.config_name), overrides=list(job))
        try:
            build_spec(OmegaConf.to_container(cfg, resolve=True))
        except BadInput as exc:
            raise BadInput(f"{' '.join(job)}: {exc}") from None


def current_sweeper() -> str:
    try:
        return str(HydraConfig.get().sweeper.get("_target_", ""))
    except ValueError:  # not under Hydra
        return ""


def sweep_envs(config: DictConfig, jobs: list[list[str]]) -> list[envs.Env]:
    """The version venvs a sweep's jobs train in (each job: its list of overrides), in order, once each.

    Read from each job's own overrides on top of the sweep's config, the way Hydra composes the job:
    a ``framework=`` choice first (its conf file's version and python), then ``framework.version``,
    ``framework.python`` and ``device``. A bad version is BadInput here; any other bad value is left
    to the job's own checks.
    """
    from hydra.core.override_parser.overrides_parser import OverridesParser

    parser = OverridesParser.create()
    wanted: dict[envs.Env, None] = {}
    for job in jobs:
        values = {o.key_or_group.lstrip("+~"): o.value() for o in parser.parse_overrides(job)}
        name = values.get("framework", config.framework.get("name"))
        node = conf_group("framework", name) if "framework" in values and name in frameworks.NAMES else config.framework
        version = values.get("framework.version", node.get("version"))
        python = values.get("framework.python", node.get("python"))
        try:
            device = resolve_device(str(values.get("device", config.get("device"))))
        except BadInput:
            continue
        if name in frameworks.NAMES:
            env = envs.env_for(name, version, device, python)
            if env is not None:
                wanted[env] = None
    return list(wanted)


# ------------------------------------------------------------------ stale runs
def mark_interrupted(results_dir: str | os.PathLike) -> list[str]:
    """Runs left ``running`` that no live process owns (their ``.lock`` is free) become ``interrupted``.

    Called when a sweep is stopped (joblib kills its workers outright, so they cannot record
    the end of their runs themselves) and when a sweep or a run starts (a ``kill -9`` of a
    sweep leaves its runs ``running``). Runs owned by another live sweep keep their status.
    """
    runs = Path(results_dir) / "runs"
    marked: list[str] = []
    if not runs.is_dir():
        return marked
    for out in sorted(runs.iterdir()):
        if run_status(out) != "running":
            continue
        with open(out / ".lock", "a") as lock:
            try:
                fcntl.flock(lock, fcntl.LOCK_EX | fcntl.LOCK_NB)
            except BlockingIOError:
                continue
            if run_status(out) == "running":  # its owner may have finished it since the first look
                update_run_json(out, status="interrupted", end_time=time.time(),
                                exit_reason="left running by a process that is gone")
                marked.append(out.name)
    return marked


# ------------------------------------------------------------------ progress
def progress_dir() -> Path | None:
    """``<sweep dir>/.progress`` in a sweep's job, None in a single run."""
    try:
        hc = HydraConfig.get()
    except ValueError:
        return None
    if hc.mode is None or hc.mode.name != "MULTIRUN":
        return None
    return Path(hc.sweep.dir) / ".progress"


class SweepProgress(Callback):
    """Knows the sweep's size up front, prints its progress while it runs, and counts its failures at the end."""

    failed: int | None = None
    results_dir: str | None = None  # where to mark runs interrupted if the sweep is stopped
    # Prints the progress line while the sweep runs. A class attribute, like the two above: the
    # launcher pickles this callback into every job, and a thread cannot be pickled.
    reporter: SweepReporter | None = None

    @staticmethod
    def stop_reporter() -> None:
        """Print the progress line's final counts and stop its thread (none before the first run)."""
        if SweepProgress.reporter is not None:
            SweepProgress.reporter.finish()
            SweepProgress.reporter = None

    def on_multirun_start(self, config: DictConfig, **kwargs: Any) -> None:
        try:
            self._start(config)
        except BadInput as exc:
            # Hydra turns a callback's exceptions into warnings and sweeps on; SystemExit gets through.
            print(f"error: {exc}", file=sys.stderr, flush=True)
            raise SystemExit(EXIT_BAD_INPUT) from None
        except OSError as exc:
            if exc.errno != errno.ENOSPC:
                raise
            print(f"error: results_dir={config.results_dir}: no space left on device; no run started",
                  file=sys.stderr, flush=True)
            raise SystemExit(1) from None

    def _start(self, config: DictConfig) -> None:
        from hydra._internal.core_plugins.basic_sweeper import BasicSweeper
        from hydra.core.override_parser.overrides_parser import OverridesParser

        launcher = str(config.hydra.launcher.get("_target_", ""))
        lanes, threads = check_int("jobs", config.get("jobs", 1), 1), check_int("threads", config.get("threads", 1), 1)
        cores = os.cpu_count() or 1
        local = "Joblib" in launcher
        on_gpu = local and config.get("device") != "cpu" and resolve_device(str(config.get("device"))) == "cuda"
        if local and not on_gpu and lanes * threads > cores:
            # Oversubscribed lanes distort every timing (measured here: batch 32 went from 5 s to
            # 151 s per epoch with 2 threads on a loaded 2-core CPU), so refuse rather than warn.
            # GPU lanes are bounded by runs_per_gpu instead.
            raise BadInput(f"jobs={lanes} x threads={threads} = {lanes * threads} threads on {cores} cores "
                           f"would oversubscribe them: lower jobs or threads")
        if "Slurm" in launcher:
            watch_jobs()
        # A tuning sweep's trials would all fail the same way: say it once, before the first one.
        sweeper = str(config.hydra.sweeper.get("_target_", ""))
        task = OmegaConf.create({k: v for k, v in OmegaConf.to_container(config, resolve=False).items()
                                 if k != "hydra"})
        apply_tuning_defaults(task, sweeper)
        check_task_config(OmegaConf.to_container(task, resolve=False))
        overrides = list(config.hydra.overrides.task)
        overrides += [f"{k}={v}" for k, v in (config.hydra.sweeper.get("params") or {}).items()]
        total = None
        if sweeper.endswith("BasicSweeper"):
            parsed = OverridesParser.create().parse_overrides(overrides)
            jobs = [job for batch in BasicSweeper.split_arguments(parsed, None) for job in batch]
            total = len(jobs)
            check_jobs(config, jobs)
            # Every framework.version's venv now, once, before any lane starts: a version pip cannot
            # install stops the sweep here with one line, and no lane waits on a build.
            for env in sweep_envs(config, jobs):
                envs.ensure(env)
        pdir = Path(config.hydra.sweep.dir) / ".progress"
        pdir.mkdir(parents=True, exist_ok=True)
        if total is not None:
            (pdir / "total").write_text(str(total))
        SweepProgress.reporter = SweepReporter(pdir)
        SweepProgress.reporter.run_in_background()
        SweepProgress.results_dir = str(config.results_dir)
        stale = mark_interrupted(config.results_dir)  # before anything decides what to redo
        if stale:
            print(f"[sweep] {len(stale)} run(s) left running by a stopped sweep: marked interrupted, "
                  "redone if this sweep includes them", flush=True)

    def on_multirun_end(self, config: DictConfig, **kwargs: Any) -> None:
        sweep_dir = Path(config.hydra.sweep.dir)
        pdir = sweep_dir / ".progress"
        SweepProgress.stop_reporter()
        count = {s: len(list(pdir.glob(f"*{s}"))) if pdir.is_dir() else 0 for s in (".done", ".skipped", ".failed")}
        SweepProgress.failed = count[".failed"]
        print(f"[sweep] finished: {count['.done']} ran, {count['.skipped']} skipped (already done), "
              f"{count['.failed']} failed", flush=True)
        write_json(sweep_dir / "sweep.json", {"ok": count[".done"], "skipped": count[".skipped"],
                                              "failed": count[".failed"]})
        best = sweep_dir / "optimization_results.yaml"  # written by the Optuna sweeper
        if best.is_file():
            print(f"[tune] best parameters: {best}", flush=True)

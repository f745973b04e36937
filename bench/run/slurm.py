"""What a Slurm cluster says about a stopped or warned job, and quieter submitit polling.

Framework-neutral and light: imported by the sweep callback and by every run's parent. Asks
Slurm's ``scontrol`` (a tool, not a python child) only inside a Slurm job.
"""
from __future__ import annotations

import logging
import os
import re
import shutil
import subprocess
import sys

from submitit.core.utils import UncompletedJobError

# Slurm job states (squeue/scontrol) -> the reason recorded in run.json of a run it stopped.
SLURM_REASONS = {
    "CANCELLED": "cancelled by Slurm (scancel)",
    "TIMEOUT": "Slurm time limit reached (timeout)",
    "PREEMPTED": "preempted by Slurm",
    "NODE_FAIL": "Slurm node failure",
    "OUT_OF_MEMORY": "Slurm memory limit reached (out of memory)",
}


def slurm_stop_reason() -> str | None:
    """Why Slurm is stopping the job this process runs in (None: not in a job, or not stopping)."""
    job = os.environ.get("SLURM_JOB_ID")
    scontrol = shutil.which("scontrol")
    if not job or not scontrol:
        return None
    try:
        out = subprocess.run([scontrol, "show", "job", "-o", job], capture_output=True, text=True, timeout=20)
    except (OSError, subprocess.SubprocessError):
        return None
    fields = dict(re.findall(r"\b(JobState|RunTime|TimeLimit)=(\S+)", out.stdout))
    state = fields.get("JobState")
    if state == "COMPLETING":  # how Slurm shows a job it is ending, whatever the cause
        limit, ran = _seconds(fields.get("TimeLimit", "")), _seconds(fields.get("RunTime", ""))
        state = "TIMEOUT" if limit is not None and ran is not None and ran >= limit else "CANCELLED"
    return SLURM_REASONS.get(state or "")


def scheduler_reason(exc: BaseException) -> str | None:
    """What submitit's UncompletedJobError means inside a Slurm job: Slurm's warning (SIGUSR2)
    ahead of the time limit, or a preemption."""
    if not isinstance(exc, UncompletedJobError):
        return None
    return SLURM_REASONS["TIMEOUT" if "timed-out" in str(exc) else "PREEMPTED"]


def _seconds(text: str) -> int | None:
    """Slurm's ``[days-]hours:minutes:seconds`` (or ``minutes:seconds``) in seconds."""
    days, _, clock = text.rpartition("-")
    try:
        parts = [int(p) for p in clock.split(":")]
        return int(days or 0) * 86400 + sum(v * 60**i for i, v in enumerate(reversed(parts)))
    except ValueError:
        return None  # UNLIMITED, or a format this version does not write


class _OnceSacct(logging.Filter):
    """submitit polls ``sacct`` and warns each time it fails (a cluster without accounting):
    the first warning is said once, in plain words; the rest are dropped."""

    def __init__(self) -> None:
        super().__init__()
        self.seen = False

    def filter(self, record: logging.LogRecord) -> bool:
        if "Bypassing sacct error" not in record.getMessage():
            return True
        if not self.seen:  # printed here: submitit's logger has several handlers, each would repeat it
            print("[slurm] sacct cannot read job states (no Slurm accounting on this cluster?); the sweep "
                  "goes on from submitit's own files (said once)", file=sys.stderr, flush=True)
            self.seen = True
        return False


def quiet_sacct() -> None:
    """Install the filter, and keep sacct's own stderr line out of the terminal (the warning says it)."""
    log = logging.getLogger("submitit")
    if not any(isinstance(f, _OnceSacct) for f in log.filters):
        log.addFilter(_OnceSacct())
    from submitit.slurm.slurm import SlurmInfoWatcher, SlurmJob

    class _Watcher(SlurmInfoWatcher):
        def _make_command(self) -> list[str] | None:
            cmd = super()._make_command()
            return None if cmd is None else ["sh", "-c", 'exec "$0" "$@" 2>/dev/null', *cmd]

    if type(SlurmJob.watcher) is SlurmInfoWatcher:
        SlurmJob.watcher = _Watcher(delay_s=SlurmJob.watcher._delay_s)

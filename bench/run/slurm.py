"""What a Slurm cluster says about a stopped or warned job, and how a sweep follows its jobs.

Framework-neutral and light: imported by the sweep callback and by every run's parent. Asks
Slurm's tools, not python children: ``scontrol`` inside a Slurm job, ``sacct`` or ``squeue`` in
the parent of a Slurm sweep.
"""
from __future__ import annotations

import os
import re
import shutil
import signal
import subprocess
import sys
import threading
import time
from typing import Any

from omegaconf import OmegaConf
from submitit.core.utils import UncompletedJobError
from submitit.slurm.slurm import SlurmInfoWatcher, SlurmJob

WARNING_S = 120  # submitit's warning before the time limit (SIGUSR2), for limits of 3.5 minutes and more
EARLY_S = 90  # how much earlier than asked Slurm may warn (its checks: about 60 s), with 30 s to start Python


def warning_s(timeout_min: float) -> int:
    """Seconds before the limit that Slurm is asked to warn a job: ``WARNING_S``, or less for short
    limits, so that the warning never comes before Python has set its handler; 0 (no warning)
    under ``EARLY_S``.

    Slurm sends the warning up to about a minute earlier than asked (``sbatch --signal``), and
    SIGUSR2 ends a process that has no handler yet: measured here with a 1-minute limit, the
    warning came 8 and 27 s after the job started whether 120 or 30 s were asked. A job warned
    that early ends without a result and without a run.json.
    """
    return int(max(0, min(WARNING_S, float(timeout_min) * 60 - EARLY_S)))


# conf/hydra/launcher/slurm.yaml: signal_delay_s: ${optbench_slurm_warning_s:${.timeout_min}}
OmegaConf.register_new_resolver("optbench_slurm_warning_s", warning_s, replace=True)

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


class WarningNoted:
    """Slurm's warning (SIGUSR2) caught where it arrives, not where submitit's exception lands.

    submitit's SIGUSR2 handler raises UncompletedJobError into whatever Python is doing at that
    instant; if that is another signal handler's logging call (Slurm sends SIGCONT alongside),
    ``logging`` swallows it as a "Logging error" and the warning is lost. Inside the block, the
    handler is wrapped so the reason is kept in ``reason`` and nothing is raised; a preemption's
    requeue (SystemExit) still goes up. Outside the main thread, or with no Python handler for
    SIGUSR2 (not a submitit job), it changes nothing and ``active`` is False.
    """

    def __init__(self) -> None:
        self.reason: str | None = None
        self.active = False
        self._original: Any = None

    def __enter__(self) -> WarningNoted:
        original = signal.getsignal(signal.SIGUSR2)
        if callable(original) and threading.current_thread() is threading.main_thread():
            self._original, self.active = original, True

            def noted(signum: int, frame: Any) -> None:
                try:
                    original(signum, frame)
                except UncompletedJobError as exc:
                    self.reason = self.reason or scheduler_reason(exc)

            signal.signal(signal.SIGUSR2, noted)
        return self

    def __exit__(self, *exc: object) -> None:
        if self.active:
            signal.signal(signal.SIGUSR2, self._original)


def _seconds(text: str) -> int | None:
    """Slurm's ``[days-]hours:minutes:seconds`` (or ``minutes:seconds``) in seconds."""
    days, _, clock = text.rpartition("-")
    try:
        parts = [int(p) for p in clock.split(":")]
        return int(days or 0) * 86400 + sum(v * 60**i for i, v in enumerate(reversed(parts)))
    except ValueError:
        return None  # UNLIMITED, or a format this version does not write


# Not listed by squeue any more: the job ended (over MinJobAge ago, or a pending array task
# cancelled on its own), and how is not known here.
GONE = "GONE"
PENDING_SAY_S = 120.0  # a job pending this long gets one line with Slurm's reason


class SweepWatcher(SlurmInfoWatcher):
    """submitit's poller of job states, for clusters with or without accounting.

    submitit asks ``sacct``, and on a cluster without accounting it gets nothing: a job that
    ended without writing its result (cancelled before it started, killed at its time limit
    before Python ran, lost with its node) then looks unfinished forever and the sweep hangs.
    Here ``squeue -t all`` answers instead (the controller remembers ended jobs for MinJobAge;
    a job it no longer lists has ended). sacct's failure is said once, in plain words.

    A job that ended without its result is reported done only once every other job of the
    sweep has ended too, so they all finish before the sweep stops on it. A job pending for
    ``PENDING_SAY_S`` gets one line with Slurm's reason (held, a node down, no resources).
    """

    def __init__(self, delay_s: int) -> None:
        super().__init__(delay_s=delay_s)
        self.sacct: bool | None = None  # None until tried
        self._pending_since: dict[str, float] = {}
        self._said: set[str] = set()

    def update(self) -> None:
        command = self._make_command()  # submitit's sacct call for the unfinished jobs; None: nothing to ask
        if command is None:
            return
        ids = sorted({job.split("_")[0] for job in self._registered - self._finished})
        self._num_calls += 1
        info = self._from_sacct(command) if self.sacct is not False else None
        if info is None:
            info = self._from_squeue(ids)
        self._info_dict.update(info or {})
        self._last_status_check = time.time()
        for job in self._registered - self._finished:
            if self.is_done(job, mode="cache"):
                self._finished.add(job)
        self._say_pending()

    def is_done(self, job_id: str, mode: str = "standard") -> bool:
        # submitit asks only while the job's result file is missing: an ended job here has none.
        if not super().is_done(job_id, mode=mode):
            return False
        return all(super(SweepWatcher, self).is_done(job, mode="cache") for job in self._registered)

    def _from_sacct(self, command: list[str]) -> dict[str, dict[str, str]] | None:
        out = _ask(command)
        if out is None or out.returncode != 0:
            if self.sacct is None:
                print("[slurm] sacct cannot read job states (no Slurm accounting on this cluster?); the sweep "
                      "follows its jobs with squeue instead (said once)", file=sys.stderr, flush=True)
            self.sacct = False
            return None
        self.sacct = True
        return self.read_info(out.stdout)

    def _from_squeue(self, ids: list[str]) -> dict[str, dict[str, str]] | None:
        out = _ask(["squeue", "-h", "-t", "all", "-r", "-j", ",".join(ids), "-o", "%i|%T|%r"])
        if out is None or (out.returncode != 0 and "Invalid job id" not in out.stderr):
            return None  # the controller did not answer: keep what was known
        info: dict[str, dict[str, str]] = {}
        for line in out.stdout.splitlines():
            job, state, reason = (line.strip().split("|") + ["", ""])[:3]
            info[job] = {"JobID": job, "State": state, "Reason": reason}
        for job in self._registered - self._finished:
            if job not in info and job.split("_")[0] in ids:
                info[job] = {"JobID": job, "State": GONE}
        return info

    def _say_pending(self) -> None:
        now = time.time()
        long_pending: dict[str, list[str]] = {}
        for job in sorted(self._registered - self._finished):
            info = self._info_dict.get(job, {})
            if info.get("State") != "PENDING":
                self._pending_since.pop(job, None)
                continue
            if now - self._pending_since.setdefault(job, now) >= PENDING_SAY_S:
                long_pending.setdefault(info.get("Reason") or "no reason given", []).append(job)
        for reason, jobs in long_pending.items():
            if reason not in self._said:
                self._said.add(reason)
                print(f"[slurm] {len(jobs)} job(s) pending for over {PENDING_SAY_S:.0f} s ({jobs[0]} first), "
                      f"Slurm's reason: {reason}", file=sys.stderr, flush=True)


def _ask(command: list[str]) -> subprocess.CompletedProcess | None:
    """A Slurm client command's answer; None when it could not run or did not answer in a minute."""
    try:
        return subprocess.run(command, capture_output=True, text=True, timeout=60)
    except (OSError, subprocess.SubprocessError):
        return None


POLL_S = 60  # at most this long between two questions to Slurm (submitit's own: 600 s)


def watch_jobs() -> None:
    """Make :class:`SweepWatcher` the poller of every Slurm job submitit follows in this process.

    submitit asks at 2, 4, 8 … s after the last submission, then every half of the time since,
    up to ``POLL_S``: a job that ends without its result is seen within a minute.
    """
    if not isinstance(SlurmJob.watcher, SweepWatcher):
        SlurmJob.watcher = SweepWatcher(delay_s=min(SlurmJob.watcher._delay_s, POLL_S))


def lost_job_line(exc: UncompletedJobError) -> str:
    """One line for a job that ended without a result (submitit's several-line message)."""
    text = str(exc)
    job = re.search(r"Job (\S+) \(task", text)
    found = re.search(r"state: ([^)]+)\)", text)
    state = found.group(1) if found else "unknown"
    said = "no longer in Slurm's queue" if state == GONE else f"state {state}"
    return (f"Slurm job {job.group(1) if job else '?'} ended without a result ({said}); "
            "the sweep's other jobs have ended")

"""How a Slurm sweep follows its jobs without a cluster: Slurm's answers are played back.

A cluster without accounting makes sacct fail; submitit alone would then wait forever on a job
that ended without its result. The real cluster's version of this is in test_slurm.py.
"""
from __future__ import annotations

import subprocess

import pytest
from submitit.core.utils import UncompletedJobError

from bench.run import slurm
from bench.run.slurm import GONE, SweepWatcher, lost_job_line


class Cluster:
    """Answers sacct and squeue as a cluster would; records what was asked."""

    def __init__(self, sacct_works: bool, queue: dict[str, tuple[str, str]]) -> None:
        self.sacct_works, self.queue, self.asked = sacct_works, queue, []

    def __call__(self, command: list[str]) -> subprocess.CompletedProcess:
        self.asked.append(command[0])
        if command[0] == "sacct":
            if not self.sacct_works:
                return subprocess.CompletedProcess(command, 1, "", "sacct: error: accounting storage is disabled\n")
            rows = [f"{job}|{state}|node" for job, (state, _) in self.queue.items()]
            return subprocess.CompletedProcess(command, 0, "\n".join(["JobID|State|NodeList", *rows]) + "\n", "")
        rows = [f"{job}|{state}|{reason}" for job, (state, reason) in self.queue.items()]
        return subprocess.CompletedProcess(command, 0, "\n".join(rows) + "\n", "")


@pytest.fixture
def cluster(monkeypatch: pytest.MonkeyPatch) -> Cluster:
    answers = Cluster(sacct_works=False, queue={})
    monkeypatch.setattr(slurm, "_ask", answers)
    return answers


def watching(*jobs: str) -> SweepWatcher:
    watcher = SweepWatcher(delay_s=60)
    for job in jobs:
        watcher.register_job(job)
    return watcher


def test_without_accounting_squeue_answers_and_sacct_is_said_once(cluster: Cluster, capsys) -> None:
    cluster.queue = {"7_0": ("COMPLETED", "None"), "7_1": ("RUNNING", "None")}
    watcher = watching("7_0", "7_1")
    watcher.update()
    watcher.update()
    assert cluster.asked == ["sacct", "squeue", "squeue"]  # sacct is not asked again once it failed
    assert watcher.get_state("7_0", mode="cache") == "COMPLETED"
    assert watcher.get_state("7_1", mode="cache") == "RUNNING"
    err = capsys.readouterr().err
    assert err.count("sacct cannot read job states") == 1 and "Bypassing" not in err


def test_with_accounting_sacct_answers_and_squeue_is_not_asked(cluster: Cluster) -> None:
    cluster.sacct_works, cluster.queue = True, {"7_0": ("TIMEOUT", "")}
    watcher = watching("7_0")
    watcher.update()
    assert cluster.asked == ["sacct"] and watcher.get_state("7_0", mode="cache") == "TIMEOUT"


def test_a_job_slurm_no_longer_lists_has_ended(cluster: Cluster) -> None:
    """A pending array task cancelled on its own leaves the queue at once: without this, its sweep
    waited forever (submitit reads 'no answer' as 'still running')."""
    cluster.queue = {"7_0": ("COMPLETED", "None")}
    watcher = watching("7_0", "7_1")
    watcher.update()
    assert watcher.get_state("7_1", mode="cache") == GONE
    assert watcher.is_done("7_1", mode="cache")


def test_a_lost_job_is_done_only_once_the_other_jobs_have_ended(cluster: Cluster) -> None:
    """The sweep stops on the first job without a result; the others must have finished by then."""
    cluster.queue = {"7_0": ("CANCELLED", "None"), "7_1": ("RUNNING", "None")}
    watcher = watching("7_0", "7_1")
    watcher.update()
    assert not watcher.is_done("7_0", mode="cache")
    cluster.queue["7_1"] = ("COMPLETED", "None")
    watcher.update()
    assert watcher.is_done("7_0", mode="cache") and watcher.is_done("7_1", mode="cache")


def test_a_silent_controller_changes_nothing(cluster: Cluster, monkeypatch: pytest.MonkeyPatch) -> None:
    cluster.queue = {"7_0": ("RUNNING", "None")}
    watcher = watching("7_0")
    watcher.update()
    monkeypatch.setattr(slurm, "_ask", lambda command: None)  # squeue timed out
    watcher.update()
    assert watcher.get_state("7_0", mode="cache") == "RUNNING" and not watcher.is_done("7_0", mode="cache")


def test_a_long_pending_job_gets_one_line_with_slurms_reason(cluster: Cluster, capsys,
                                                             monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(slurm, "PENDING_SAY_S", 0.0)
    cluster.queue = {"7_0": ("PENDING", "ReqNodeNotAvail"), "7_1": ("PENDING", "ReqNodeNotAvail")}
    watcher = watching("7_0", "7_1")
    for _ in range(3):
        watcher.update()
    lines = [line for line in capsys.readouterr().err.splitlines() if "pending" in line]
    assert len(lines) == 1 and "2 job(s)" in lines[0] and "ReqNodeNotAvail" in lines[0], lines


def test_a_short_wait_in_the_queue_is_not_worth_a_line(cluster: Cluster, capsys) -> None:
    cluster.queue = {"7_0": ("PENDING", "Priority")}
    watching("7_0").update()
    assert "pending" not in capsys.readouterr().err


@pytest.mark.parametrize(("state", "said"), [("CANCELLED", "state CANCELLED"),
                                              (GONE, "no longer in Slurm's queue")])
def test_a_lost_job_is_one_line(state: str, said: str) -> None:
    exc = UncompletedJobError(f"Job 7_1 (task: 0) with path /r/.submitit/7_1/7_1_0_result.pkl\n"
                              f"has not produced any output (state: {state})\nError stream produced:\n---\nlog\n")
    line = lost_job_line(exc)
    assert line.startswith("Slurm job 7_1 ended without a result") and said in line and "\n" not in line


# ------------------------------------------------------------------ Slurm's warning, wherever it lands
def _submitit_like(signum, frame) -> None:
    """What submitit's SIGUSR2 handler does when a job may not be requeued: raise into the main thread."""
    raise UncompletedJobError("Job not requeued because: timed-out too many times.")


def test_the_time_limit_warning_is_noted_even_where_its_exception_would_be_swallowed(capsys) -> None:
    """Slurm sends SIGCONT with the warning; if submitit's exception lands inside another handler's
    logging call, logging swallows it. The run must still say it was warned, and wait on."""
    import signal
    import threading

    from bench.run.launch import _wait

    before = signal.signal(signal.SIGUSR2, _submitit_like)
    try:
        with slurm.WarningNoted() as noted:
            assert noted.active
            try:  # as logging's emit does with an error in it: whatever is raised here is lost
                signal.raise_signal(signal.SIGUSR2)
            except Exception:  # noqa: BLE001
                pass
            assert noted.reason == "Slurm time limit reached (timeout)"
        assert signal.getsignal(signal.SIGUSR2) is _submitit_like  # put back
        proc = subprocess.Popen(["sleep", "1.5"])
        threading.Timer(0.3, signal.raise_signal, (signal.SIGUSR2,)).start()
        assert _wait(proc) == (0, "Slurm time limit reached (timeout)")  # it waited on, to the end
        assert "[slurm] the job is warned (Slurm time limit reached (timeout))" in capsys.readouterr().out
    finally:
        signal.signal(signal.SIGUSR2, before)

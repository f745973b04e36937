"""The timing protocol, run: configurations in, timed samples out (:func:`time_configs`).

Any pass that times steps of a runner (the timing pass; a pass over batch sizes) hands this a
list of configurations, each a row of fields to copy into its samples and the spec a worker
builds its runner from, and gets back one row per configuration, worker process and round.
What happens in between (:mod:`bench.timing.schedule`): the processes of every configuration are
started slot by slot, each pinned to its own core(s) (optional), optionally without address-space
randomisation (``setarch -R``, where the kernel permits it), warmed up and timed in
interleaved rounds while the machine-wide CPU lock is held exclusively (no run of ours trains).
Worker start-up is never timed; the first slot's start-up is measured and the budget is planned
from it (:func:`bench.timing.schedule.plan`).

A worker that does not answer in time (:data:`START_TIMEOUT_S`, :data:`REPLY_TIMEOUT_S`) is
killed and its configuration reported failed; it is not started again, the others are timed on.
Imports no framework: each worker imports its own.
"""
from __future__ import annotations

import json
import math
import os
import platform
import queue
import sys
import threading
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from subprocess import PIPE, Popen, SubprocessError, TimeoutExpired
from typing import IO, Any

from bench.envs import interpreter
from bench.run.cpulock import CpuLock
from bench.run.proc import child_env, last_line, run, spec_env, start
from bench.timing.schedule import Plan, Step, cpus_for, plan, slot
from bench.timing.worker import TAG

CALIBRATE_S = 0.1  # the steps of a sample are estimated from a stretch at least this long (or a quarter sample)
# A worker that says nothing this long is stuck (a hung framework call, a deadlock): it is
# killed and its configuration reported failed, and the pass goes on with the others.
START_TIMEOUT_S = 900.0  # import, data, build and warm-up
REPLY_TIMEOUT_S = 300.0  # one sample; raised to 10 samples' length for long samples
ASLR = ("on", "off")


@dataclass(frozen=True)
class Settings:
    """How to time: ``processes`` per configuration, ``rounds`` timed rounds per process after
    ``warmup_rounds``, the whole pass in about ``budget_s`` with samples of at least
    ``min_sample_s``; ``pin`` each worker to its own core(s); ``aslr="off"`` runs each worker
    under ``setarch -R`` where that is permitted."""

    processes: int = 3
    rounds: int = 5
    warmup_rounds: int = 1
    budget_s: float = 300.0
    min_sample_s: float = 0.2
    pin: bool = True
    aslr: str = "on"
    host: bool = True  # one worker process per framework (and environment) per slot hosts its configurations

    @classmethod
    def from_options(cls, opts: Mapping[str, Any]) -> Settings:
        return cls(**{k: opts[k] for k in cls.__dataclass_fields__ if k in opts})


@dataclass
class Measured:
    """What :func:`time_configs` gives back: the samples and the pass's account of itself."""

    rows: list[dict[str, Any]]  # one per configuration, process and round
    processes: list[dict[str, Any]]  # one per started worker: config, process, pid, cpus, aslr_off, start_up_s, error
    plan: Plan | None
    steps: dict[int, int]  # configuration index -> steps per sample
    errors: dict[int, str]  # configuration index -> why it failed
    start_up_s: float = math.nan  # the first slot's start-up (every configuration's worker, together)
    measure_start: float = math.nan  # time.time() when the lock was held and timing began
    measure_end: float = math.nan
    aslr: dict[str, Any] = field(default_factory=dict)


# ------------------------------------------------------------------ one worker process
@dataclass
class Worker:
    """One configuration's worker process and what it has said so far."""

    config: dict[str, Any]
    log: IO[str]
    proc: Popen | None = None
    error: str | None = None
    steps: int = 0
    samples: list[dict[str, Any]] = field(default_factory=list)
    reply_timeout_s: float = REPLY_TIMEOUT_S
    replies: queue.Queue = field(default_factory=queue.Queue)
    cpus: list[int] | None = None  # pinned to these CPUs (None: not pinned)
    wrapper: Sequence[str] = ()  # the command it runs under (setarch -R)
    ready_info: dict[str, Any] = field(default_factory=dict)
    host: Host | None = None  # the process it shares with other configurations (None: its own)
    index: int = 0  # its place in the host's list

    def begin(self) -> None:
        if self.host is not None:
            self.host.begin()
            return
        self._start(self.config["spec"])

    def _start(self, payload: Any) -> None:
        """Start ``--worker`` with ``payload`` (one spec, or a host's list of specs of one environment)."""
        lead = payload[0] if isinstance(payload, list) else payload
        options = {"cpus": self.cpus} if self.cpus else {}
        try:
            # the run's own interpreter: framework.python, else its release's venv, else this one
            self.proc = start("bench.timing", ["--worker", json.dumps(payload), json.dumps(options)],
                              env=spec_env(lead), python=interpreter(lead),
                              stdin=PIPE, stdout=PIPE, stderr=self.log, wrapper=self.wrapper)
        except OSError as exc:
            self.error = f"cannot start: {exc.strerror or exc}"
            return
        self.listen()

    def listen(self) -> None:
        """Read the worker's stdout in a thread, so a wait for its reply can time out."""
        def read() -> None:
            for line in self.proc.stdout:
                if line.startswith(TAG):
                    self.replies.put(line[len(TAG):])
            self.replies.put(None)  # end of output: the worker has ended

        threading.Thread(target=read, name=f"timing-reply-{self.proc.pid}", daemon=True).start()

    def _answer(self, timeout_s: float | None = None) -> dict[str, Any]:
        timeout_s = self.reply_timeout_s if timeout_s is None else timeout_s
        try:
            line = self.replies.get(timeout=timeout_s)
        except queue.Empty:
            self.proc.kill()
            self.proc.wait()
            raise RuntimeError(f"no answer in {timeout_s:g} s, worker killed; see {self.log.name}") from None
        if line is None:
            self.proc.wait()
            raise RuntimeError(f"worker ended (exit code {self.proc.returncode}); see {self.log.name}")
        return json.loads(line)

    def ready(self) -> bool:
        if self.host is not None:
            info = self.host.ready()
            self.ready_info = {**info, **(info.get("configs") or [{}])[self.index]} if "configs" in info else info
            self.error = self.error or self.ready_info.get("error")
            return self.error is None
        self._await_ready()
        return self.error is None

    def _await_ready(self) -> None:
        """Wait for the worker's ready line (start-up's time limit); an error in it, or none, is this worker's."""
        if self.error is None:
            try:
                self.ready_info = self._answer(START_TIMEOUT_S)
                self.error = self.ready_info.get("error")
            except RuntimeError as exc:
                self.error = str(exc)

    def sample(self, steps: int) -> dict[str, Any]:
        if self.host is not None:
            return self.host.sample(self.index, steps, self.reply_timeout_s)
        self.proc.stdin.write(json.dumps({"steps": steps}) + "\n")
        self.proc.stdin.flush()
        return self._answer()

    def finish(self) -> None:
        """Tell the worker to end (its stdin closes) without waiting for it."""
        if self.host is not None:
            self.host.finish()
        elif self.proc is not None and self.proc.stdin is not None:
            try:
                self.proc.stdin.close()
            except OSError:
                pass

    def close(self) -> None:
        if self.host is not None:
            self.host.close()
            return
        if self.proc is not None:
            try:
                self.finish()
                self.proc.wait(timeout=30)
            except (OSError, TimeoutExpired):
                self.proc.kill()
                self.proc.wait()
        self.log.close()


class Host(Worker):
    """One worker process hosting several configurations (``--worker`` given a list of specs):
    their :class:`Worker` objects hold it and ask it by index. Started, readied and closed once,
    whichever of its configurations asks first; if the process fails, all of them fail."""

    def __init__(self, configs: Sequence[Mapping[str, Any]], log: IO[str], **kw: Any) -> None:
        super().__init__({"spec": [c["spec"] for c in configs], "row": {}}, log, **kw)
        self.begun = self.readied = self.closed = False

    def begin(self) -> None:
        if self.begun:
            return
        self.begun = True
        self._start(self.config["spec"])

    def ready(self) -> dict[str, Any]:  # type: ignore[override]
        if not self.readied:
            self.readied = True
            self._await_ready()
        return {"error": self.error} if self.error else self.ready_info

    def sample(self, index: int, steps: int, timeout_s: float) -> dict[str, Any]:  # type: ignore[override]
        if self.error is not None:
            raise RuntimeError(self.error)
        self.proc.stdin.write(json.dumps({"config": index, "steps": steps}) + "\n")
        self.proc.stdin.flush()
        got = self._answer(timeout_s)
        if "error" in got:
            raise RuntimeError(got["error"])
        return got

    def finish(self) -> None:
        if self.proc is not None and self.proc.stdin is not None and not self.proc.stdin.closed:
            super().finish()

    def close(self) -> None:
        if not self.closed:
            self.closed = True
            super().close()


def host_key(spec: Mapping[str, Any]) -> str:
    """Configurations with the same key can share a worker process: one framework, interpreter,
    environment (threads, device, determinism), pinning width and precision (float64 is a
    process-wide switch in JAX and Keras: a process runs one precision)."""
    return json.dumps([spec["framework"]["name"], interpreter(spec), spec_env(spec), spec.get("threads", 1),
                       spec.get("precision") or "fp32"], sort_keys=True)


def steps_for(worker: Worker, sample_s: float) -> int:
    """Steps that take about ``sample_s``, from doubling runs until one lasts long enough.

    Each size runs twice and the second is timed: a framework that compiles per input length
    (JAX, XLA) pays the compilation on the first. Above one epoch the count is rounded to whole
    epochs, so every sample is made of the epoch-sized calls a run makes (one shape to compile).
    """
    steps, target = 1, min(CALIBRATE_S, sample_s / 4)
    while True:
        worker.sample(steps)
        took = worker.sample(steps)["time_s"]
        if took >= target or steps >= 10**7:
            break
        steps *= 2 if took <= 0 else min(16, max(2, math.ceil(target / took)))
    want = max(1, round(sample_s * steps / max(took, 1e-9)))
    row = worker.config["row"]
    per_epoch = max(1, int(row["n_train"]) // int(row["batch_size"]))
    return per_epoch * max(1, round(want / per_epoch)) if want > per_epoch else want


# ------------------------------------------------------------------ the steps of a slot
class Session:
    """The samples, step counts and failures of a pass, filled step by step."""

    def __init__(self, sample_s: float, label: Callable[[dict[str, Any]], str]) -> None:
        self.sample_s, self.label = sample_s, label
        self.rows: list[dict[str, Any]] = []
        self.steps: dict[int, int] = {}
        self.errors: dict[int, str] = {}

    def guarded(self, idx: int, worker: Worker, fn: Callable[[], Any]) -> Any:
        try:
            return fn()
        except (RuntimeError, OSError, ValueError) as exc:
            worker.error = self.errors[idx] = str(exc)
            print(f"[timing] {self.label(worker.config['row'])}: failed: {exc}", file=sys.stderr, flush=True)
            return None

    def visit(self, step: Step, workers: Mapping[int, Worker]) -> None:
        """A warm-up or timed round: one sample of each live worker, in the step's order. A
        configuration's first warm-up also calibrates its step count (kept for its later processes)."""
        for idx in step.configs:
            w = workers.get(idx)
            if w is None or w.error is not None:
                continue
            w.reply_timeout_s = max(w.reply_timeout_s, 10 * self.sample_s)
            if idx not in self.steps:
                self.steps[idx] = self.guarded(idx, w, lambda w=w: steps_for(w, self.sample_s)) or 0
                if w.error is not None:
                    continue
            w.steps = self.steps[idx]
            got = self.guarded(idx, w, lambda w=w: w.sample(w.steps))
            if got is not None and step.kind == "round":
                self.rows.append({**w.config["row"], "process": step.process, "round": step.round,
                                  "steps": got["steps"], "time_s": got["time_s"],
                                  "time_per_step_s": got["time_s"] / got["steps"],
                                  "cpu_time_s": got["cpu_time_s"], "contention": got["contention"],
                                  "pace_s": got.get("pace_s", math.nan)})


def measure(workers: list[Worker], opts: dict[str, Any], spent_s: float = 0.0,
            process: int = 1) -> list[dict[str, Any]]:
    """Calibrate, warm up and time ready workers (one process each) in interleaved rounds;
    returns the rows. Samples last ``opts["sample_s"]``, or what the budget left after
    ``spent_s`` shared among them."""
    sample_s = opts.get("sample_s") or max(
        opts["min_sample_s"],
        (opts["budget_s"] - spent_s) / max(1, len(workers) * (opts["rounds"] + opts["warmup_rounds"] + 1)))
    session = Session(sample_s, lambda row: str(row.get("framework")))
    ready = {i: w for i, w in enumerate(workers) if w.error is None}
    for step in slot(len(workers), process, 1, opts["rounds"], opts["warmup_rounds"]):
        if step.kind in ("warmup", "round"):
            session.visit(step, ready)
    return session.rows


# ------------------------------------------------------------------ ASLR
def aslr_wrapper() -> tuple[list[str], str | None]:
    """``setarch <arch> -R`` when a probe run under it sees its address space unrandomised,
    else ``[]`` and one line saying why."""
    wrapper = ["setarch", platform.machine(), "-R"]
    try:
        done = run("bench.timing", ["--probe"], env=child_env(), wrapper=wrapper, timeout=60)
    except (OSError, SubprocessError) as exc:
        return [], f"setarch -R cannot run here ({exc}); timing with ASLR on"
    if done.returncode != 0:
        return [], f"setarch -R is not permitted here ({last_line(done)}); timing with ASLR on"
    try:
        off = json.loads(done.stdout.strip().splitlines()[-1])["aslr_off"]
    except (IndexError, KeyError, ValueError):
        off = None
    if not off:
        return [], "setarch -R ran but the address space is still randomised; timing with ASLR on"
    return wrapper, None


# ------------------------------------------------------------------ the whole protocol
def _start_slot(configs: Sequence[Mapping[str, Any]], process: int, settings: Settings, skip: Mapping[int, str],
                log_dir: Path, wrapper: Sequence[str], label: Callable[[dict[str, Any]], str],
                worker: type[Worker]) -> dict[int, Worker]:
    """Start process ``process`` of every configuration not in ``skip``, all at once, and wait until each is ready."""
    allowed = sorted(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else []
    workers: dict[int, Worker] = {}
    if settings.host and worker is Worker:  # one process per framework and environment hosts its configurations
        groups: dict[str, list[int]] = {}
        for idx, config in enumerate(configs):
            if idx not in skip:
                groups.setdefault(host_key(config["spec"]), []).append(idx)
        for g, members in enumerate(groups.values()):
            threads = int(configs[members[0]]["spec"].get("threads", 1))
            cpus = cpus_for(g, process, threads, allowed) if settings.pin and allowed else None
            host = Host([configs[i] for i in members], open(log_dir / f"host-{g}-p{process}.log", "w"),
                        cpus=cpus, wrapper=wrapper)
            for j, idx in enumerate(members):
                w = worker(dict(configs[idx]), host.log, cpus=cpus, wrapper=wrapper, host=host, index=j)
                w.config["began"] = time.perf_counter()
                workers[idx] = w
        for w in workers.values():
            w.begin()
    for idx, config in enumerate(configs):
        if idx in skip or idx in workers:
            continue
        threads = int(config["spec"].get("threads", 1))
        cpus = cpus_for(idx, process, threads, allowed) if settings.pin and allowed else None
        w = worker(dict(config), open(log_dir / f"worker-{idx}-p{process}.log", "w"), cpus=cpus, wrapper=wrapper)
        w.config["began"] = time.perf_counter()
        w.begin()
        workers[idx] = w
    for w in workers.values():
        if not w.ready():
            print(f"[timing] {label(w.config['row'])}: process {process} failed: {w.error}", file=sys.stderr,
                  flush=True)
        w.config["start_up_s"] = time.perf_counter() - w.config["began"]
    return workers


def _close(workers: Mapping[int, Worker]) -> None:
    for w in workers.values():  # every worker told first, so they end together
        w.finish()
    for w in workers.values():
        w.close()


def time_configs(configs: Sequence[Mapping[str, Any]], settings: Settings, log_dir: Path,
                 label: Callable[[dict[str, Any]], str] = lambda row: str(row),
                 say: Callable[[str], None] = lambda line: print(line, flush=True),
                 worker: type[Worker] = Worker) -> Measured:
    """Time ``configs`` under ``settings``; worker logs go to ``log_dir``.

    Each configuration is a mapping with ``row`` (fields copied into each of its samples) and
    ``spec`` (what its worker builds the runner from: a ``bench.spec.build_spec`` dict, whose
    ``threads`` is the number of CPUs the worker is pinned to). Returns one row per
    configuration, process and timed round: ``row`` + ``process, round, steps, time_s,
    time_per_step_s, cpu_time_s, contention``; a configuration whose worker failed keeps the
    rows it gave and is named in ``errors``. ``worker`` is the class that starts and asks a
    worker process (a subclass of :class:`Worker` whose ``begin`` starts another worker module).
    """
    log_dir.mkdir(parents=True, exist_ok=True)
    wrapper, aslr_note = aslr_wrapper() if settings.aslr == "off" else ([], None)
    if aslr_note:
        say(f"[timing] {aslr_note}")
    out = Measured([], [], None, {}, {}, aslr={"asked": settings.aslr, "used": bool(wrapper), "note": aslr_note})
    session: Session | None = None
    lock = CpuLock(exclusive=True, who="timing pass")
    t0 = time.perf_counter()
    try:
        for k in range(1, settings.processes + 1):
            workers = _start_slot(configs, k, settings, session.errors if session else {}, log_dir, wrapper, label,
                                  worker)
            if session is None:  # the first slot: plan the pass from its start-up, then hold the lock
                out.start_up_s = time.perf_counter() - t0
                out.plan = plan(settings.budget_s, out.start_up_s, len(configs), settings.processes,
                                settings.rounds, settings.warmup_rounds, settings.min_sample_s)
                say(f"[timing] start-up {out.start_up_s:.0f} s a slot; plan: {out.plan.processes} processes x "
                    f"({settings.warmup_rounds} warm-up + {out.plan.rounds} rounds) of {out.plan.sample_s:.2f} s "
                    f"samples, about {out.plan.expected_s:.0f} s" + (f"; {out.plan.note}" if out.plan.note else ""))
                session = Session(out.plan.sample_s, label)
                lock.acquire()
                out.measure_start = time.time()
            for idx, w in workers.items():
                if w.error is not None:
                    session.errors.setdefault(idx, w.error)
            try:
                for step in slot(len(configs), k, settings.processes, out.plan.rounds, settings.warmup_rounds):
                    if step.kind in ("warmup", "round"):
                        session.visit(step, workers)
            finally:
                _close(workers)
            out.processes += [{"config": idx, "process": k, "pid": w.ready_info.get("pid"),
                               "cpus": w.ready_info.get("cpus"), "aslr_off": w.ready_info.get("aslr_off"),
                               "start_up_s": round(w.config["start_up_s"], 3), "error": w.error}
                              for idx, w in workers.items()]
            say(f"[timing] process {k}/{settings.processes} of {len(workers)} configuration(s) done, "
                f"{time.perf_counter() - t0:.0f} s")
        out.measure_end = time.time()
    finally:
        lock.release()
    if session is not None:
        out.rows, out.steps, out.errors = session.rows, session.steps, session.errors
    return out

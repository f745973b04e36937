"""The parent side of ``bench.parity``: jobs from composed configs, and their runs.

A job is one comparison (its run specs, one per framework, the steps, the batch). All jobs run
in one child process per framework (``python -m bench.parity.worker``), the frameworks side by
side; the parent imports none of them. ``python -m bench.parity`` compares and writes the result.
"""
from __future__ import annotations

import functools
import itertools
import json
import re
import subprocess
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np

from bench import envs, frameworks
from bench.data import DataError, Dataset, epoch_order, load_dataset
from bench.exits import BadInput
from bench.results import write_json
from bench.run.proc import spec_env, start
from bench.spec import FRAMEWORKS, IMPLS, build_spec, check_bool, conf_group, is_default_model
from models.layers import DEFAULT_MODEL, Model, parse_model


class ParityError(Exception):
    """A framework's child process failed (exit 1); the message is one line for the user."""


def _positive_int(name: str, value: Any) -> int:
    if isinstance(value, bool) or not isinstance(value, int) or value < 1:
        raise BadInput(f"{name} must be an integer >= 1, got {value!r}")
    return value


def lead_spec(job: Mapping[str, Any]) -> dict[str, Any]:
    """The first framework's run spec: what every framework of the job shares (data, batches, optimizer)."""
    return next(iter(job["specs"].values()))


def job_model(job: Mapping[str, Any]) -> Model:
    """The model a job trains (``spec["model"]``, the same in every framework's spec); a job
    written before models were selectable trained the tutorial's MLP."""
    config = lead_spec(job).get("model") or conf_group("model", DEFAULT_MODEL)
    return parse_model(config)


def batch_plan(seed: int, n_train: int, batch_size: int, steps: int) -> list[np.ndarray]:
    """The first ``steps`` batches of a real run: epoch 1's order cut in batches, then epoch 2's..."""
    batches: list[np.ndarray] = []
    epoch = 0
    while len(batches) < steps:
        epoch += 1
        order = epoch_order(seed, epoch, n_train)
        batches.extend(order[s:s + batch_size] for s in range(0, n_train, batch_size))
    return batches[:steps]


def param_steps(steps: int, points: int) -> list[int]:
    """Steps after which the parameters are saved: about ``points`` of them, always 0, 1, 10, N."""
    every = max(1, steps // points)
    return sorted({0, 1, min(10, steps), steps} | set(range(every, steps + 1, every)))


@functools.lru_cache(maxsize=4)
def _load(data_json: str) -> Dataset:
    return load_dataset(json.loads(data_json))


def job_data(job: Mapping[str, Any]) -> Dataset:
    """The dataset a job trains on (loaded once per process)."""
    return _load(json.dumps(lead_spec(job)["data"], sort_keys=True))


def _members(given: Mapping[str, Any]) -> tuple[dict[str, dict[str, Any]], bool]:
    """Who a check compares, each with its framework settings, and whether it compares versions.

    Every registered framework at the project's versions (a framework parity.yaml does not name
    takes its conf file); or, when ``frameworks.<fw>.version`` names another release, that framework
    twice: at the project's version (``<fw>``) and at that release (``<fw>@<version>``), like two
    frameworks. ``given`` is parity.yaml's ``frameworks`` node.
    """
    settings = {fw: dict(given.get(fw) or conf_group("framework", fw)) for fw in FRAMEWORKS}
    other = {fw: s["version"] for fw, s in settings.items() if envs.env_for(fw, s.get("version"), "cpu") is not None}
    if not other:
        return settings, False
    members: dict[str, dict[str, Any]] = {}
    for fw, version in other.items():
        members[fw] = {**settings[fw], "version": None, "python": None}  # the project's own, in its own venv
        members[f"{fw}@{version}"] = settings[fw]
    return members, True


def member_framework(job: Mapping[str, Any], member: str) -> str:
    """The framework a member of the check runs (``jax`` for ``jax@0.9.2``)."""
    return member.split("@", 1)[0]


def member_version(job: Mapping[str, Any], member: str) -> str | None:
    """The framework's version a member runs: its spec's, else the project's pinned one."""
    spec = job["specs"][member]
    return spec["framework"].get("version") or envs.project_version(frameworks.get(spec["framework"]["name"]))


def label(job: Mapping[str, Any], member: str) -> str:
    """How tables name a member: the framework, with its version when the check compares versions."""
    fw = member_framework(job, member)
    return f"{fw} {member_version(job, member)}" if job.get("versions") else fw


def job_pairs(job: Mapping[str, Any]) -> list[tuple[str, str]]:
    """The pairs a check compares: every pair of frameworks in registry order (torch–tf, torch–jax,
    tf–jax), or each framework's project version against its other release."""
    members = list(job["specs"])
    if job.get("versions"):
        return [(member_framework(job, m), m) for m in members if "@" in m]
    return list(itertools.combinations(members, 2))


def make_job(key: str, cfg: Mapping[str, Any], overrides: Sequence[str] = ()) -> dict[str, Any]:
    """One comparison from a composed ``conf/parity.yaml`` (``frameworks.<fw>`` holds each runner's group).

    ``overrides`` are the command line's, to catch ``impl=`` and ``optimizer.impl=`` disagreeing.
    Raises BadInput on bad input, bad data included.
    """
    from bench.run.child import resolve_batch_size

    plain = json.loads(json.dumps(dict(cfg)))  # a deep, plain copy
    impl = plain.pop("impl", None)
    if impl is not None:
        if impl not in IMPLS:
            raise BadInput(f"impl={impl!r} is not one of {', '.join(IMPLS)}")
        given = [o.split("=", 1)[1] for o in overrides if o.startswith("optimizer.impl=")]
        if given and given[-1] != impl:
            raise BadInput(f"impl={impl} and optimizer.impl={given[-1]} disagree; give one")
        plain["optimizer"]["impl"] = impl
    steps = _positive_int("steps", plain["steps"])
    points = _positive_int("param_points", plain["param_points"])
    sensitivity = check_bool("sensitivity", plain.get("sensitivity", False))
    check_bool("keep_arrays", plain.get("keep_arrays", False))
    members, versions = _members(plain.get("frameworks") or {})
    specs = {}
    for member, framework in members.items():
        run_cfg = {k: v for k, v in plain.items() if k != "frameworks"}
        run_cfg.update(framework=framework, epochs=1, progress="none")
        specs[member] = build_spec(run_cfg)
        envs.python_for(specs[member])  # a version's venv now: when pip cannot build it, this check is bad input
    first = next(iter(specs.values()))  # every framework's spec has the same data and batch
    try:
        data = _load(json.dumps(first["data"], sort_keys=True))
        batch_size = resolve_batch_size(first, data.n_train)
    except DataError as exc:
        raise BadInput(str(exc)) from None
    return {"key": key, "specs": specs, "versions": versions, "steps": steps, "batch_size": batch_size,
            "sensitivity": sensitivity,
            "param_steps": param_steps(steps, points), "dataset": data.name, "n_train": data.n_train}


def run_jobs(jobs: Sequence[Mapping[str, Any]], workdir: Path) -> dict[str, dict[str, Any]]:
    """Run all jobs in one child process per member (a framework, or a version of one; all at once);
    returns key -> results.

    Results per key: ``{<member>: npz arrays, ..., "describe": {member: dict}}``.
    """
    members = list(jobs[0]["specs"])
    workdir.mkdir(parents=True, exist_ok=True)
    write_json(workdir / "jobs.json", list(jobs))
    procs = {}
    try:
        for fw in members:
            spec = jobs[0]["specs"][fw]
            log = open(workdir / f"stderr-{fw}.log", "w")
            python = envs.interpreter(spec)  # framework.python, a version's venv, or this one
            try:
                proc = start("bench.parity.worker", [workdir, fw], env=spec_env(spec), python=python,
                             stdout=log, stderr=subprocess.STDOUT)
            except OSError as exc:
                log.close()
                raise BadInput(f"cannot start {python} for {fw}: {exc.strerror or exc}") from None
            procs[fw] = (proc, log)
        codes = {fw: proc.wait() for fw, (proc, _) in procs.items()}
    finally:
        for proc, log in procs.values():
            if proc.poll() is None:
                proc.terminate()
                proc.wait()
            log.close()
    for fw, code in codes.items():
        if code:
            lines = (workdir / f"stderr-{fw}.log").read_text(errors="replace").strip().splitlines()
            last = lines[-1] if lines else "no output"
            raise ParityError(f"the {fw} process failed (exit {code}): {last}")
    out: dict[str, dict[str, Any]] = {}
    for job in jobs:
        key = job["key"]
        out[key] = {fw: dict(np.load(workdir / f"{key}-{fw}.npz")) for fw in members}
        out[key]["describe"] = {fw: json.loads((workdir / f"{key}-{fw}.json").read_text()) for fw in members}
    return out


def result_name(job: Mapping[str, Any], pair: Sequence[str] | None = None) -> str:
    """``<optimizer>-<impl>-bs<bs>-s<seed>``, plus a tag for each setting away from the defaults
    (the model's name first, unless it is the tutorial's MLP, so that several models' checks sit
    side by side) and for a pair other than torch–tensorflow (``-torch-jax``, ``-tensorflow-jax``;
    two versions: ``-jax0.10.2-jax0.9.2``). ``pair`` defaults to the check's first."""
    pair = tuple(pair or job_pairs(job)[0])
    spec = lead_spec(job)
    opt = spec["optimizer"]
    name = f"{opt['name']}-{opt['impl']}-bs{job['batch_size']}-s{spec['seed']}"
    model = spec.get("model")
    tags = ["" if is_default_model(model) else re.sub(r"[^A-Za-z0-9._]", "_", str(model["name"])),
            job["dataset"] if job["dataset"] != "mnist_embedded" else "",
            f"n{job['steps']}" if job["steps"] != 50 else "",
            "init_native" if spec["init"] == "native" else "",
            spec["mode"] if spec["mode"] != "eager" else "",
            spec["device"] if spec["device"] != "cpu" else "",
            spec["precision"] if spec["precision"] != "fp32" else "",
            re.sub(r"[^A-Za-z0-9._-]", "_", "-".join(label(job, m).replace(" ", "") for m in pair))
            if job.get("versions")
            else "-".join(pair) if pair != ("torch", "tensorflow") else ""]
    return "-".join([name] + [t for t in tags if t])

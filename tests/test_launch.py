"""The parent side of one run (``bench.run.launch.run_job``), in this process: what a full disk
does before and after the run has its spec. No child is started; no framework is imported."""
from __future__ import annotations

import errno
import os
from pathlib import Path

import pytest
from conftest import HARNESS_FRAMEWORK, ROOT, SMALL
from hydra import compose, initialize_config_dir
from hydra.core.hydra_config import HydraConfig
from hydra.types import RunMode
from omegaconf import DictConfig, OmegaConf, open_dict

from bench.run import launch

FAST = [*SMALL, HARNESS_FRAMEWORK, "epochs=1", "optimizer=minibatch", "progress=none"]


def _full_disk(*_args, **_kwargs):
    raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))


def _task(monkeypatch: pytest.MonkeyPatch, results: Path, multirun: bool) -> DictConfig:
    """The task config of one Hydra job writing into ``results``; HydraConfig is set as Hydra
    sets it in that job (job 0 of a sweep when ``multirun``), and put back after the test."""
    with initialize_config_dir(config_dir=str(ROOT / "conf"), version_base="1.3"):
        full = compose("config", overrides=[*FAST, f"results_dir={results}"], return_hydra_config=True)
    with open_dict(full):
        full.hydra.job.num = 0
        full.hydra.mode = RunMode.MULTIRUN if multirun else RunMode.RUN
    hydra = HydraConfig.instance()
    monkeypatch.setattr(hydra, "cfg", hydra.cfg)  # restored after the test
    hydra.set_config(full)
    return OmegaConf.masked_copy(full, [key for key in full if key != "hydra"])


def test_a_full_disk_before_the_spec_exists_is_one_line(tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
                                                        capsys: pytest.CaptureFixture[str]) -> None:
    """In a sweep's job the first write is its progress marker, before the config becomes a spec."""
    results = tmp_path / "results"
    cfg = _task(monkeypatch, results, multirun=True)
    monkeypatch.setattr(Path, "touch", _full_disk)
    outcome = launch.run_job(cfg)
    assert outcome is not None and (outcome.status, outcome.code) == ("failed", 1)
    err = capsys.readouterr().err
    assert err.splitlines() == [f"error: results_dir={results}: no space left on device; this run not started"]
    assert not (results / "runs").exists()


def test_a_full_disk_in_the_run_folder_is_one_line_and_leaves_no_folder(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]) -> None:
    results = tmp_path / "results"
    cfg = _task(monkeypatch, results, multirun=False)
    monkeypatch.setattr(launch, "write_json", _full_disk)  # spec.json, the run folder's first file
    outcome = launch.run_job(cfg)
    assert outcome is not None and (outcome.status, outcome.code) == ("failed", 1)
    run_id = outcome.out_dir.name
    err = capsys.readouterr().err
    assert err.splitlines() == [f"error: results_dir={results}: no space left on device; {run_id} not run"]
    assert list((results / "runs").iterdir()) == []

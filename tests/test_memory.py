"""A run's memory and start-up figures: the floor arithmetic, the child-side recording (fake
runners, no framework, no GPU), the report's columns and figure, and one pair of real JAX runs."""
from __future__ import annotations

import json
import math
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from conftest import HARNESS_FRAMEWORK, SMALL, run_cli

from bench import memory
from bench.report.figures import plot_startup, startup_parts
from bench.report.tables import memory_text
from bench.run import child
from models.layers import parse_model

MLP = {"name": "mlp", "layers": [{"type": "flatten"}, {"type": "dense", "units": 128}, {"type": "relu"},
                                 {"type": "dense", "units": 10}]}


# ------------------------------------------------------------------ the floor, counted by hand
def test_the_mlp_floor_is_counted_by_hand() -> None:
    model = parse_model(MLP)
    assert model.n_params == 784 * 128 + 128 + 128 * 10 + 10 == 101_770
    # input 784, flatten 784, dense 128, relu 128, dense 10
    assert model.activation_floats() == 784 + 784 + 128 + 128 + 10 == 1834
    # sgd keeps no state; adam two slots (m, v): parameters + gradients + slots, float32
    assert memory.floor_bytes(model, 0, 1) == 4 * (2 * 101_770 + 1834)
    assert memory.floor_bytes(model, 2, 32) == 4 * (4 * 101_770 + 32 * 1834)
    assert memory.floor_bytes(model, 2, 32, "fp64") == 2 * memory.floor_bytes(model, 2, 32)  # float64: 8 bytes


def test_the_floor_of_a_spec_follows_its_method_and_batch() -> None:
    spec = {"model": MLP, "optimizer": {"name": "adam"}}
    assert memory.floor_mib(spec, 32) == pytest.approx(4 * (4 * 101_770 + 32 * 1834) / 2**20)
    spec_sgd = {"model": MLP, "optimizer": {"name": "minibatch"}}
    assert memory.floor_mib(spec_sgd, 32) < memory.floor_mib(spec, 32)


def test_resident_memory_is_read_from_the_os() -> None:
    now, peak = memory.rss_now_mib(), memory.rss_peak_mib()
    assert now is not None and 1 < now <= peak + 1  # the high-water mark is never below the current


def test_a_missing_status_file_gives_none(tmp_path: Path) -> None:
    assert memory._status_kib("VmRSS", tmp_path / "absent") is None


# ------------------------------------------------------------------ the child side, with fake runners
class _FakeRunner:
    def __init__(self, device_peak: int | None) -> None:
        self.device_peak, self.warmed = device_peak, False

    def device_peak_bytes(self) -> int | None:
        return self.device_peak

    def warm_up(self, order, batch_size) -> float:
        self.warmed = True
        return 0.25


def _info(out: Path) -> dict:
    return json.loads((out / "run.json").read_text())


def test_a_device_peak_lands_in_run_json(tmp_path: Path) -> None:
    child.record_memory(tmp_path, _FakeRunner(3 * 2**20), ready_mib=1.0)
    info = _info(tmp_path)
    assert info["device_peak_mib"] == 3.0
    assert info["rss_peak_mib"] > 1 and info["train_mem_mib"] == pytest.approx(info["rss_peak_mib"] - 1.0, abs=0.11)


def test_no_device_peak_off_a_gpu_or_without_the_method(tmp_path: Path) -> None:
    child.record_memory(tmp_path, _FakeRunner(None), ready_mib=None)
    assert _info(tmp_path)["device_peak_mib"] is None and _info(tmp_path)["train_mem_mib"] is None
    child.record_memory(tmp_path, object(), ready_mib=5.0)
    assert _info(tmp_path)["device_peak_mib"] is None


def test_the_first_step_time_is_recorded_after_the_warm_up(tmp_path: Path) -> None:
    inner = _FakeRunner(None)
    wrapped = child._FirstStep(inner, tmp_path, started=0.0)
    assert wrapped.warm_up(np.arange(4), 2) == 0.25 and inner.warmed
    assert _info(tmp_path)["startup_first_step_s"] > 0
    assert wrapped.device_peak_bytes() is None  # everything else passes through


def test_the_alloc_fault_holds_its_memory() -> None:
    faulty = child.with_fault(_FakeRunner(None), "any-run", "alloc@1@8")
    faulty._runner.train_epoch = lambda order, batch_size: np.zeros(1)
    faulty.train_epoch(np.arange(2), 1)
    assert sum(a.nbytes for a in faulty._held) == 8 * 2**20
    with pytest.raises(ValueError, match="alloc@<epoch>@<MiB>"):
        child.with_fault(object(), "any-run", "alloc@1@lots")


# ------------------------------------------------------------------ the report's side
def test_the_startup_segments_are_medians_of_the_differences(tmp_path: Path) -> None:
    stats = pd.DataFrame({"framework": ["jax", "jax", "torch"], "mode": ["eager"] * 3,
                          "startup_import_s": [1.0, 3.0, 2.0], "startup_ready_s": [1.5, 3.5, 2.1],
                          "startup_first_step_s": [2.0, 5.0, 2.2]})
    parts = startup_parts(stats)
    assert list(parts["framework"]) == ["torch", "jax"]  # the registry's order
    jax = parts[parts["framework"] == "jax"].iloc[0]
    assert jax["start + data + import"] == 2.0 and jax["data to device + model"] == pytest.approx(0.5)
    assert jax["first step (compile, trace)"] == pytest.approx(1.0) and jax["runs"] == 2
    assert plot_startup(stats, tmp_path, "startup").is_file()
    assert plot_startup(stats.drop(columns="startup_ready_s"), tmp_path, "none") is None


def test_the_table_shows_memory_compactly() -> None:
    row = pd.Series({"rss_ready_mib": 412.4, "train_mem_mib": 35.2, "mem_floor_mib": 0.9, "device_peak_mib": math.nan})
    assert memory_text(row) == "412 + 35 (0.9)"
    assert memory_text(row.replace({math.nan: 120.0})) == "412 + 35 (0.9), GPU 120"
    assert memory_text(pd.Series({"rss_ready_mib": math.nan})) == "n/a"


# ------------------------------------------------------------------ two real runs
def _run(results: Path, fault: str | None) -> dict:
    args = [HARNESS_FRAMEWORK, *SMALL, "epochs=2", "optimizer=minibatch", "progress=none", f"results_dir={results}"]
    proc = run_cli(*args, env={"OPTBENCH_FAULT": fault} if fault else None)
    assert proc.returncode == 0, proc.stderr[-2000:]
    (run,) = list((results / "runs").iterdir())
    return json.loads((run / "run.json").read_text())


@pytest.mark.slow
def test_200_mib_allocated_on_purpose_show_as_training_memory(tmp_path: Path) -> None:
    plain = _run(tmp_path / "plain", None)
    heavy = _run(tmp_path / "heavy", "alloc@1@200")
    for info in (plain, heavy):
        assert 0 < info["rss_ready_mib"] <= info["rss_peak_mib"]
        assert 0 < info["startup_import_s"] <= info["startup_ready_s"] <= info["startup_first_step_s"]
        assert info["mem_floor_mib"] > 0 and info["device_peak_mib"] is None
    assert heavy["train_mem_mib"] >= plain["train_mem_mib"] + 150

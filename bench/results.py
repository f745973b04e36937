"""Where results live and how they are written: atomically, so no reader sees half a file.

Layout under ``results_dir``::

    runs/<run_id>/spec.json     what the child was asked to run
    runs/<run_id>/run.json      resolved config, versions, device, host, commit, times, status
    runs/<run_id>/metrics.csv   one row per epoch (epoch 0 = before training)
    runs/<run_id>/steps.csv     sampled per-step training loss
    report/                     python -m bench.report
"""
from __future__ import annotations

import csv
import io
import json
import math
import os
import tempfile
from collections.abc import Iterable, Mapping, Sequence
from pathlib import Path
from typing import Any

_UMASK = os.umask(0)
os.umask(_UMASK)

STATUSES = ("running", "completed", "diverged", "failed", "interrupted")
FINISHED = ("completed", "diverged")  # a re-run skips these; failed/interrupted are redone

METRIC_COLUMNS = (
    "run_id", "framework", "optimizer", "impl", "mode", "lr", "batch_size", "seed", "dataset",
    "n_train", "n_test", "device", "epoch", "steps", "train_loss", "train_acc", "step_loss_mean",
    "test_loss", "test_acc", "val_loss", "val_acc", "epoch_time_s", "eval_time_s", "wall_time_s",
    "samples_per_s", "step_time_s", "overhead_s", "overhead_frac", "status", "cpu_time_s", "contention",
    "model",  # appended later: readers take a file without it as the tutorial's "mlp"
    "framework_version",  # appended later: the version the run's child imported (package metadata)
    "precision",  # appended later: fp32 | tf32 | fp64; readers take a file without it as fp32
)
STEP_COLUMNS = ("run_id", "framework", "optimizer", "epoch", "step", "loss")


def cell_number(row: Mapping[str, Any], key: str) -> float:
    """A row's figure as a float: NaN when it is missing, empty or not a number (rows read back from
    a CSV hold text, or NaN where a cell was empty)."""
    try:
        return float(row.get(key))
    except (TypeError, ValueError):
        return math.nan


def atomic_write_text(path: str | os.PathLike, text: str) -> None:
    """Write to a temp file in the same folder, fsync, then rename over ``path``."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    try:
        os.fchmod(fd, 0o666 & ~_UMASK)  # mkstemp makes 0600; results are meant to be shared
        with os.fdopen(fd, "w", encoding="utf-8", newline="") as fh:
            fh.write(text)
            fh.flush()
            os.fsync(fh.fileno())
        os.replace(tmp, path)
    except BaseException:
        if os.path.exists(tmp):
            os.unlink(tmp)
        raise


def clear_partial_writes(folder: str | os.PathLike) -> None:
    """Remove the temp files of :func:`atomic_write_text` calls a SIGKILL cut short (``.<name>.*.tmp``).

    Only for a folder no writer is alive in (its lock held): the renamed file is whole or absent,
    and its temp file is debris either way.
    """
    for partial in Path(folder).glob(".*.tmp"):
        partial.unlink(missing_ok=True)


def _cell(value: Any) -> Any:
    if isinstance(value, float):  # numpy floats too: repr(np.float64) is not a number
        return "nan" if math.isnan(value) else repr(float(value))
    return "" if value is None else value


def csv_text(rows: Iterable[Mapping[str, Any]], columns: Sequence[str]) -> str:
    buf = io.StringIO()
    writer = csv.DictWriter(buf, fieldnames=list(columns), extrasaction="ignore", lineterminator="\n")
    writer.writeheader()
    for row in rows:
        writer.writerow({k: _cell(row.get(k)) for k in columns})
    return buf.getvalue()


def write_csv(path: str | os.PathLike, rows: Iterable[Mapping[str, Any]], columns: Sequence[str]) -> None:
    atomic_write_text(path, csv_text(rows, columns))


def write_json(path: str | os.PathLike, obj: Any) -> None:
    atomic_write_text(path, json.dumps(obj, indent=2, sort_keys=True, default=str) + "\n")


def read_json(path: str | os.PathLike) -> dict[str, Any] | None:
    """The JSON object in ``path``, or None if it is missing or unreadable."""
    try:
        with open(path, encoding="utf-8") as fh:
            obj = json.load(fh)
        return obj if isinstance(obj, dict) else None
    except (OSError, ValueError):
        return None


def run_dir(results_dir: str | os.PathLike, run_id: str) -> Path:
    """``results_dir/runs/<run_id>``, refusing ids that would leave ``results_dir``."""
    if not run_id or "/" in run_id or "\\" in run_id or run_id in (".", "..") or "\0" in run_id:
        raise ValueError(f"invalid run_id {run_id!r}")
    base = (Path(results_dir) / "runs").resolve()
    target = (base / run_id).resolve()
    if target.parent != base:
        raise ValueError(f"run_id {run_id!r} leaves {base}")
    return target


def run_status(path: str | os.PathLike) -> str | None:
    """The status recorded in ``<run dir>/run.json`` (None if there is none)."""
    info = read_json(Path(path) / "run.json")
    return None if info is None else info.get("status")


def update_run_json(path: str | os.PathLike, **fields: Any) -> dict[str, Any]:
    """Merge ``fields`` into ``<run dir>/run.json`` (created if missing); returns the result."""
    file = Path(path) / "run.json"
    info = read_json(file) or {}
    info.update(fields)
    write_json(file, info)
    return info


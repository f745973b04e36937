"""How the report orders and groups what it shows: frameworks, methods, models (pure).

* Frameworks, their order and colours come from the registry (``bench.frameworks``): the baseline
  first, then the registry's order.
* Methods come in :data:`bench.optimizers.METHODS` order. The tutorial's six
  (:data:`~bench.optimizers.TUTORIAL_METHODS`) form the main block; every other method (a METHODS
  entry with ``tutorial=False``, or a name no entry knows) is "beyond the tutorial" and is shown
  after them, in a block of its own, and never enters the tutorial's claims.
* Models: a run's ``model`` is its spec's ``model.name``; runs written before models were
  selectable have none and are the tutorial's MLP (:data:`DEFAULT_MODEL`). Two configurations that
  differ only by model are never merged: ``model`` is part of every grouping key.
* Versions: a run's ``framework_version`` is the release its child imported. When a results folder
  holds more than one release of a framework, each release is a framework of its own to the report,
  labelled ``"jax 0.9.2"`` (:func:`framework_label`), in release order; otherwise the label is the
  framework's name, as it always was. A framework's *default* release (:func:`default_version`) is the
  one pyproject.toml pins where it ran, else the newest that ran: the claims and every ratio against
  the baseline framework use it, so frameworks are compared like with like.
"""
from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from typing import Any

import pandas as pd
from packaging.version import InvalidVersion, Version

from bench import envs
from bench.exits import BadInput
from bench.frameworks import BASE, FRAMEWORKS, NAMES
from bench.optimizers import METHODS, TUTORIAL_METHODS
from bench.spec import conf_group
from models.layers import DEFAULT_MODEL, ModelError, parse_model

OTHER_COLOUR = "#555555"  # a framework the registry does not know (a foreign results folder)
BEYOND = "Beyond the tutorial"


# ------------------------------------------------------------------ frameworks
def framework_order(frameworks: Iterable[str], baseline: str = BASE) -> list[str]:
    """The baseline framework first, then the registry's order, unknown names last by name; the
    releases of one framework (labels ``"jax 0.9.2"``) in release order."""
    order = {name: i for i, name in enumerate(NAMES)}

    def key(label: str) -> tuple:
        fw, _, version = label.partition(" ")
        return (fw != baseline, order.get(fw, len(order)), fw, version_key(version) if version else (0,), label)

    return sorted(set(frameworks), key=key)


def framework_of(label: str) -> str:
    """The framework of a label: ``"jax 0.9.2"`` -> ``"jax"`` (a registry name has no space)."""
    return str(label).partition(" ")[0]


def colour(framework: str) -> str:
    """The registry's colour of a framework, or of a label's framework: every release of one has its colour."""
    fw = FRAMEWORKS.get(framework_of(framework))
    return fw.colour if fw is not None else OTHER_COLOUR


# ------------------------------------------------------------------ versions
def pinned_version(framework: str) -> str:
    """The release pyproject.toml pins for a registry framework; "" for a framework the registry does not know."""
    fw = FRAMEWORKS.get(framework)
    return (envs.project_version(fw) or "") if fw is not None else ""


def known(version: Any) -> bool:
    """A recorded release (not None, NaN or empty)."""
    return isinstance(version, str) and version.strip() != ""


def version_key(version: str) -> tuple:
    """Sort key of releases: release order (0.9.2 before 0.10.2); a name packaging cannot read comes after."""
    try:
        return (0, Version(envs.public(str(version))), "")
    except InvalidVersion:
        return (1, Version("0"), str(version))


def newest(versions: Iterable[str]) -> str:
    """The newest of some releases ("" for none)."""
    found = sorted({str(v) for v in versions if known(v)}, key=version_key)
    return found[-1] if found else ""


def default_version(framework: str, versions: Iterable[str]) -> str:
    """The release a framework is compared at: the pinned one where it ran, else the newest that ran, else
    the pinned one (nothing recorded)."""
    found = {str(v) for v in versions if known(v)}
    pinned = pinned_version(framework)
    match = [v for v in found if envs.public(v) == pinned]
    return match[0] if match else newest(found) or pinned


def framework_label(framework: str, version: Any, several: bool) -> str:
    """``"jax 0.9.2"`` when the results hold several releases of the framework, else ``"jax"``."""
    if not several:
        return str(framework)
    return f"{framework} {envs.public(str(version)) if known(version) else pinned_version(str(framework))}"


def several_versions(frame: pd.DataFrame) -> set[str]:
    """The frameworks of ``frame`` (rows with ``framework`` and ``framework_version``) that ran at more than
    one release; releases that differ only by a local label (``+cpu``) are one."""
    if frame is None or frame.empty or "framework_version" not in frame.columns:
        return set()
    out = set()
    for fw, versions in frame.groupby("framework")["framework_version"]:
        if len({envs.public(str(v)) for v in versions if known(v)}) > 1:
            out.add(str(fw))
    return out


def at_default(frame: pd.DataFrame) -> pd.Series:
    """True for the rows at their framework's default release in ``frame`` (every row where a framework
    ran at one release only, or recorded none)."""
    if frame.empty or "framework_version" not in frame.columns:
        return pd.Series(True, index=frame.index)
    versions = frame["framework_version"].astype(object)
    defaults = {fw: default_version(str(fw), grp) for fw, grp in versions.groupby(frame["framework"])}
    return pd.Series([not known(v) or envs.public(str(v)) == envs.public(defaults[fw])
                      for fw, v in zip(frame["framework"], versions)], index=frame.index)


def release_ranks(labels: Iterable[str]) -> dict[str, int]:
    """Label -> 0 for a framework's newest release among ``labels`` (and for a label without a release),
    1 for the one before, and so on: what tells the releases of one framework apart in a figure, whose
    colour is the framework's."""
    by_fw: dict[str, list[str]] = {}
    for label in set(labels):
        by_fw.setdefault(framework_of(label), []).append(label)
    out = {}
    for group in by_fw.values():
        ordered = sorted(group, key=lambda lab: version_key(lab.partition(" ")[2]), reverse=True)
        out.update({lab: (i if " " in lab else 0) for i, lab in enumerate(ordered)})
    return out


def units(frame: pd.DataFrame) -> pd.Series:
    """What the report compares, row by row: the ``fw_label`` column where the page added one (releases
    told apart), else the framework."""
    return frame["fw_label"] if "fw_label" in frame.columns else frame["framework"]


# ------------------------------------------------------------------ methods
def is_tutorial(method: str) -> bool:
    return method in TUTORIAL_METHODS


def method_order(methods: Iterable[str]) -> list[str]:
    """METHODS' order (the tutorial's six first), then names METHODS does not know, by name."""
    present = set(methods)
    return [m for m in METHODS if m in present] + sorted(m for m in present if m not in METHODS)


def method_rank(method: str) -> int:
    order = {name: i for i, name in enumerate(METHODS)}
    return order.get(method, len(order))


def split_methods(df: pd.DataFrame) -> tuple[pd.DataFrame, pd.DataFrame]:
    """(rows of the tutorial's six, rows of every other method) of a table with an ``optimizer`` column."""
    tutorial = df["optimizer"].isin(TUTORIAL_METHODS) if len(df) else pd.Series(dtype=bool)
    return df[tutorial], df[~tutorial]


# ------------------------------------------------------------------ models
def model_order(models: Iterable[str]) -> list[str]:
    """The tutorial's MLP first, the others by name."""
    return sorted({str(m) for m in models}, key=lambda m: (m != DEFAULT_MODEL, m))


def model_name(config: Mapping[str, Any] | None) -> str:
    """The model a run's spec (run.json's ``config``) names; a spec without one is the tutorial's MLP."""
    model = (config or {}).get("model")
    name = model.get("name") if isinstance(model, Mapping) else None
    return str(name) if name else DEFAULT_MODEL


@dataclass(frozen=True)
class ModelInfo:
    """What the report says about a model: its name, its layers in one line, its parameter count."""

    name: str
    layers: str  # Model.describe(), or why it is unknown
    n_params: int | None
    runs: int = 0

    def text(self) -> str:
        params = f", {self.n_params:,} parameters" if self.n_params is not None else ""
        return f"{self.name} ({self.layers}{params})"


def _default_layers(name: str) -> Mapping[str, Any] | None:
    try:
        return conf_group("model", name)
    except BadInput:
        return None


def model_infos(configs: Mapping[str, Mapping[str, Any] | None], models: Mapping[str, str]
                ) -> tuple[dict[str, ModelInfo], list[str]]:
    """Model name -> :class:`ModelInfo`, from the runs' specs (run_id -> run.json ``config``) and
    each run's model (run_id -> name, as metrics.csv says); and warnings.

    A run without a layer list in its spec (an older run) is described by ``conf/model/<name>.yaml``.
    Runs that share a model name but not a layer list are one model to the report: a warning says so.
    """
    layers: dict[str, set[str]] = {}
    params: dict[str, int | None] = {}
    runs: dict[str, int] = {}
    for run_id, name in models.items():
        spec_model = (configs.get(run_id) or {}).get("model")
        cfg = spec_model if isinstance(spec_model, Mapping) and spec_model.get("layers") else _default_layers(name)
        runs[name] = runs.get(name, 0) + 1
        if cfg is None:
            layers.setdefault(name, set()).add("layers not recorded")
            params.setdefault(name, None)
            continue
        try:
            model = parse_model({**cfg, "name": name})
        except ModelError as exc:
            layers.setdefault(name, set()).add(f"layers unreadable: {exc}")
            params.setdefault(name, None)
            continue
        layers.setdefault(name, set()).add(model.describe())
        params[name] = model.n_params
    out, warnings = {}, []
    for name in model_order(layers):
        texts = sorted(layers[name])
        if len(texts) > 1:
            warnings.append(f"model {name}: its runs have {len(texts)} different layer lists under one name "
                            f"({'; '.join(texts)}); the report treats them as one model")
        out[name] = ModelInfo(name, texts[0] if len(texts) == 1 else " | ".join(texts), params.get(name),
                              runs[name])
    return out, warnings

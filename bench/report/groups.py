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
"""
from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from typing import Any

import pandas as pd

from bench.exits import BadInput
from bench.frameworks import BASE, FRAMEWORKS, NAMES
from bench.optimizers import METHODS, TUTORIAL_METHODS
from bench.spec import conf_group
from models.layers import DEFAULT_MODEL, ModelError, parse_model

OTHER_COLOUR = "#555555"  # a framework the registry does not know (a foreign results folder)
BEYOND = "Beyond the tutorial"


# ------------------------------------------------------------------ frameworks
def framework_order(frameworks: Iterable[str], baseline: str = BASE) -> list[str]:
    """The baseline framework first, then the registry's order, unknown names last by name."""
    order = {name: i for i, name in enumerate(NAMES)}
    return sorted(set(frameworks), key=lambda f: (f != baseline, order.get(f, len(order)), f))


def colour(framework: str) -> str:
    fw = FRAMEWORKS.get(framework)
    return fw.colour if fw is not None else OTHER_COLOUR


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

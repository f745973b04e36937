"""The one registry of frameworks: everything the framework-neutral code knows about each one.

spec, the run child, the toy, parity, perf, timing, the report's figures and the tests read their
framework lists from :data:`FRAMEWORKS`; nothing else names a framework. Every module named here is
imported lazily, inside a child process of that framework only (this file imports none of them).

Adding a framework is its folder (``bench/frameworks/<package>/`` with runner, reference, naive
and toy modules), one entry here, and ``conf/framework/<name>.yaml``; docs/extending.md has the
steps. Native optimizer calls per rule are in ``bench/optimizers.py`` (``NATIVE``); a framework
without them runs ``optimizer.impl=reference`` only.
"""
from __future__ import annotations

import importlib
from dataclasses import dataclass
from typing import Any


@dataclass(frozen=True)
class Framework:
    name: str  # as conf/framework/<name>.yaml and every results column write it
    package: str  # its folder under bench/frameworks/
    colour: str  # fixed across figures, so they compare at a glance
    runner: str  # class in <package>/runner.py implementing bench.loop.Runner
    naive: str  # the ``case`` label of its tutorial-style loop in bench.perf (<package>/naive.py)
    naive_column: str  # that loop's ratio column in perf.csv
    modes: tuple[str, ...] = ("eager", "compiled")
    devices: tuple[str, ...] = ("cpu", "cuda")

    def module(self, part: str) -> str:
        """``bench.frameworks.<package>.<part>``: runner, reference, naive, toy, device."""
        return f"{__name__}.{self.package}.{part}"

    def load(self, part: str, attr: str | None = None) -> Any:
        """Import one of its modules (in its own child process only), or an attribute of it."""
        module = importlib.import_module(self.module(part))
        return module if attr is None else getattr(module, attr)


FRAMEWORKS: dict[str, Framework] = {f.name: f for f in (
    Framework("torch", "torch", "#e8590c", "TorchRunner", "naive torch DataLoader", "vs_naive_torch"),
    Framework("tensorflow", "tf", "#1c7ed6", "TFRunner", "naive keras fit", "vs_naive_tf"),
    Framework("jax", "jax", "#2b8a3e", "JaxRunner", "naive jax loop", "vs_naive_jax"),
)}
NAMES = tuple(FRAMEWORKS)
BASE = "torch"  # the framework every other one is compared against first (ratios, parity pairs)


def get(name: str) -> Framework:
    try:
        return FRAMEWORKS[name]
    except KeyError:
        raise ValueError(f"unknown framework {name!r}; known: {', '.join(NAMES)}") from None

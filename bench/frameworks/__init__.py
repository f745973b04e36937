"""The one registry of frameworks: everything the framework-neutral code knows about each one.

spec, the run child, the toy, parity, perf, timing, the report's figures and the tests read their
framework lists from :data:`FRAMEWORKS`. Every module named here is imported lazily, inside a child
process of that framework only (this file imports none of them). Framework names still written
elsewhere, each for a setting of that framework alone: ``bench.run.proc.child_env`` (TensorFlow's
determinism and JAX's XLA flags, set before the import), ``bench.perf.worker`` (torch's naive loop
takes a device), ``bench.perf.gpu_check`` (torch and JAX on a bare GPU box) and the parity CSV's
first pair of loss columns (named before there was a third framework).

Adding a framework is its folder (``bench/frameworks/<package>/`` with runner, reference, naive,
toy and profile modules), its builder ``models/<package>_model.py``, one entry here,
``conf/framework/<name>.yaml`` and its pinned packages; docs/extending.md has the steps. Native
optimizer calls per rule are in ``bench/optimizers.py`` (``NATIVE``); a framework without them runs
``optimizer.impl=reference`` only.
"""
from __future__ import annotations

import importlib
import importlib.metadata
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
    imports: tuple[str, ...]  # the top-level Python modules it brings: only its own child imports them
    modes: tuple[str, ...] = ("eager", "compiled")
    devices: tuple[str, ...] = ("cpu", "cuda")
    # "module:function" a child calls before it imports the framework (prepare_process); that
    # module imports no framework itself. None: nothing to do first.
    prepare: str | None = None
    # The pip distributions whose metadata carries its version, the first one installed wins (the
    # project's venv has tensorflow-cpu, .venv-tf-gpu tensorflow): read without importing it.
    distributions: tuple[str, ...] = ()
    # ``framework.version=<v>`` (bench.envs): the pip requirement of version ``{v}`` on a CPU and on a
    # GPU, and the project's other pins its runner imports beside it (kept at pyproject.toml's versions).
    pip_cpu: str = ""
    pip_cuda: str = ""
    companions: tuple[str, ...] = ()
    # Layer types whose gradient the framework's compiler (``framework.jit_compile=true``) has no
    # deterministic kernel for: with ``deterministic=true`` such a model is refused up front.
    jit_nondeterministic: tuple[str, ...] = ()

    def module(self, part: str) -> str:
        """``bench.frameworks.<package>.<part>``: runner, reference, naive, toy, device, profile."""
        return f"{__name__}.{self.package}.{part}"

    def prepare_process(self) -> None:
        """Ready this child process for the framework, before anything imports the framework.

        Called by the child entries that train or time one (the run's child, the timing, parity
        and perf workers) and by JAX's toy child (the other toys have no ``prepare``); a plain import
        of a framework's package never changes its process.
        """
        if self.prepare is not None:
            module, _, function = self.prepare.partition(":")
            getattr(importlib.import_module(module), function)()

    def requirement(self, version: str, device: str) -> str:
        """The pip requirement of ``version`` for ``device`` (cpu or cuda): ``jax[cpu]==0.9.2``."""
        return (self.pip_cuda if device == "cuda" else self.pip_cpu).format(v=version)

    def installed_version(self) -> str | None:
        """The version this interpreter would import, from package metadata (the framework is not
        imported); None when it is not installed here."""
        for dist in self.distributions:
            try:
                return importlib.metadata.version(dist)
            except importlib.metadata.PackageNotFoundError:
                continue
        return None

    def load(self, part: str, attr: str | None = None) -> Any:
        """Import one of its modules (in its own child process only), or an attribute of it."""
        module = importlib.import_module(self.module(part))
        return module if attr is None else getattr(module, attr)


FRAMEWORKS: dict[str, Framework] = {f.name: f for f in (
    # torchvision pins one torch release and only the naive loop of bench.perf imports it: a torch
    # version's venv goes without.
    Framework("torch", "torch", "#e8590c", "TorchRunner", "naive torch DataLoader", "vs_naive_torch",
              ("torch", "torchvision"), distributions=("torch",), pip_cpu="torch=={v}", pip_cuda="torch=={v}"),
    Framework("tensorflow", "tf", "#1c7ed6", "TFRunner", "naive keras fit", "vs_naive_tf",
              ("tensorflow", "keras", "tf_keras"), distributions=("tensorflow-cpu", "tensorflow"),
              pip_cpu="tensorflow-cpu=={v}", pip_cuda="tensorflow[and-cuda]=={v}", companions=("keras",),
              jit_nondeterministic=("maxpool2d",)),  # XLA: "MaxPool gradient ops do not yet have a deterministic ..."
    Framework("jax", "jax", "#2b8a3e", "JaxRunner", "naive jax loop", "vs_naive_jax",
              ("jax", "jaxlib", "optax", "flax"), prepare="bench.frameworks.jax:pin_to_threads",
              distributions=("jax",), pip_cpu="jax[cpu]=={v}", pip_cuda="jax[cuda12]=={v}", companions=("optax",)),
)}
NAMES = tuple(FRAMEWORKS)
BASE = "torch"  # the framework every other one is compared against first (ratios, parity pairs)


def get(name: str) -> Framework:
    try:
        return FRAMEWORKS[name]
    except KeyError:
        raise ValueError(f"unknown framework {name!r}; known: {', '.join(NAMES)}") from None

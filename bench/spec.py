"""The run spec: a validated, JSON-able description of one run, and its stable run_id.

Built in the parent from the Hydra config before any framework is imported; the child
process receives it as ``spec.json``.
"""
from __future__ import annotations

import hashlib
import json
import math
import os
import re
import shutil
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from bench import envs, frameworks
from bench.exits import BadInput
from bench.frameworks import NAMES as FRAMEWORKS
from bench.machine import resolve_device
from bench.optimizers import METHODS, required_hparams
from models.layers import DEFAULT_MODEL, ModelError, parse_flow_list, parse_model

CONF_DIR = Path(__file__).resolve().parent.parent / "conf"

DEVICES = ("cpu", "cuda", "auto")
MODES = ("eager", "compiled")
IMPLS = ("native", "reference")
INITS = ("shared", "native")
# fp64: every framework in float64, where rounding leaves the adaptive rules nothing to amplify.
PRECISIONS = ("fp32", "tf32", "fp64")
# The bookkeeping keys: they do not change what is computed, so they stay out of the run_id. The one
# list of them: ``--help`` marks them, tests hold docs/ARCHITECTURE.md to it. ``python`` is
# framework.python; of the others only ``progress`` reaches a spec, but each is bookkeeping all the same.
BOOKKEEPING = ("results_dir", "jobs", "runs_per_gpu", "force", "progress", "objective", "python")
# Keys added after run_ids were first published: they enter the run_id only when they differ
# from these defaults, so every earlier run keeps its id (and its results folder).
LATER_KEYS = {"diverge_factor": 10.0, "min_steps": 0}


# Every integer key fits an int32, so no framework, numpy dtype or C library overflows on it.
INT_MAX = 2**31 - 1
SEED_MAX = 2**32 - 1  # numpy's legacy seeding and most framework seeds take 32 bits
THREADS_MAX = 1024  # beyond any machine's cores; a bigger count is a typo
LANES_MAX = 1024  # jobs and runs_per_gpu


def check_int(name: str, value: Any, minimum: int | None = None, maximum: int = INT_MAX) -> int:
    if isinstance(value, bool) or not isinstance(value, int):
        raise BadInput(f"{name} must be an integer, got {_short(value)}")
    if minimum is not None and value < minimum:
        raise BadInput(f"{name} must be >= {minimum}, got {_short(value)}")
    if value > maximum:
        raise BadInput(f"{name} must be <= {maximum}, got {_short(value)}")
    return value


def check_bool(name: str, value: Any) -> bool:
    if not isinstance(value, bool):
        raise BadInput(f"{name} must be true or false, got {_short(value)}")
    return value


def _short(value: Any, limit: int = 80) -> str:
    """``repr(value)``, cut so that an error stays one readable line."""
    text = repr(value)
    return text if len(text) <= limit else text[:limit] + "..."


def _choice(name: str, value: Any, choices: tuple[str, ...]) -> str:
    if value not in choices:
        raise BadInput(f"{name}={_short(value)} is not one of {', '.join(choices)}")
    return value


def _positive_float(name: str, value: Any, zero: bool = False) -> float:
    """A finite number above 0 (or at it, with ``zero``)."""
    bound = ">= 0" if zero else "> 0"
    try:
        out = float(value)
    except (TypeError, ValueError, OverflowError):
        raise BadInput(f"{name} must be a finite number {bound}, got {_short(value)}") from None
    if isinstance(value, bool) or not math.isfinite(out) or out < 0 or (out == 0 and not zero):
        raise BadInput(f"{name} must be a finite number {bound}, got {_short(value)}")
    return out or 0.0  # -0.0 is 0


def _diverge_factor(value: Any) -> float:
    """0 turns the loss-ratio test off; a non-finite loss is a divergence whatever it is."""
    try:
        out = float(value)
    except (TypeError, ValueError, OverflowError):
        out = math.nan
    if isinstance(value, bool) or not math.isfinite(out) or out < 0:
        raise BadInput(f"diverge_factor must be a finite number >= 0 (0 = off), got {_short(value)}")
    return out


def _yaml_keys(path: Path) -> set[str]:
    from omegaconf import OmegaConf  # here, not at the top: make gpu-check composes specs without it

    return {k for k in OmegaConf.to_container(OmegaConf.load(path)) or {} if k != "defaults"}


def conf_groups(conf_dir: Path = CONF_DIR) -> set[str]:
    """The config groups: the folders of ``conf/`` (Hydra's own settings aside)."""
    return {p.name for p in conf_dir.iterdir() if p.is_dir() and p.name != "hydra"}


def unknown_keys(cfg: Mapping[str, Any], conf_dir: Path = CONF_DIR) -> list[str]:
    """Keys added with ``+key=...`` that no config file declares.

    The conf files are the schema: a key that appears in none of them would be ignored by
    the runners yet change the run_id, so it is refused instead (typos such as
    ``+optimizer.betas=...``). Keys that other work adds to the yaml files are known at once.
    """
    known = _yaml_keys(conf_dir / "config.yaml") - {"hydra"}
    groups = conf_groups(conf_dir)
    for profile in (conf_dir / "profile").glob("*.yaml"):
        known |= _yaml_keys(profile)
    bad = [k for k in cfg if k not in known | groups]
    for group in groups:
        node = cfg.get(group)
        if not isinstance(node, Mapping):
            continue
        chosen = conf_dir / group / f"{node.get('name')}.yaml"
        files = [chosen] if chosen.is_file() else list((conf_dir / group).glob("*.yaml"))
        allowed = set().union(*(_yaml_keys(f) for f in files))
        bad += [f"{group}.{k}" for k in node if k not in allowed]
    return sorted(bad)


GROUPS = ("framework", "optimizer", "data", "model")  # the config groups a run spec is composed of


def parse_scalar(text: str) -> Any:
    """A scalar as the flat conf files and ``key=value`` arguments write it."""
    low = text.strip().lower()
    if low in ("true", "false"):
        return low == "true"
    if low in ("null", "none", "~", ""):
        return None
    try:
        return json.loads(text)
    except ValueError:
        return text.strip().strip("'\"")


def conf_group(group: str, name: str, conf_dir: Path = CONF_DIR) -> dict[str, Any]:
    """The top-level ``key: value`` lines of ``conf/<group>/<name>.yaml`` (``group=""``: config.yaml).

    Read without omegaconf or PyYAML, which a bare GPU box may lack: the conf files are flat,
    and nested blocks (``defaults``, ``hydra``) are skipped, but for a model's ``layers``, a list
    of one-line ``- {type: ..., key: value}`` entries.
    """
    path = conf_dir / group / f"{name}.yaml"
    if not path.is_file():
        raise BadInput(f"{group}={name!r}: no {path.relative_to(conf_dir.parent)}")
    return _read_flat(path, path.relative_to(conf_dir.parent))


def _read_flat(path: Path, shown: Path) -> dict[str, Any]:
    """:func:`conf_group`'s reader; ``shown`` names the file in errors."""
    out: dict[str, Any] = {}
    block: list[str] | None = None
    for line in path.read_text(encoding="utf-8").splitlines():
        if block is not None and line.startswith((" ", "-")):
            block.append(line)
            continue
        block = None
        line = line.split(" #", 1)[0].rstrip()
        key, colon, value = line.partition(":")
        if colon and not line[0].isspace() and line[0] not in "#-":
            if value.strip():
                out[key.strip()] = parse_scalar(value)
            elif key.strip() == "layers":
                block = out["layers"] = []
    if isinstance(out.get("layers"), list):
        try:
            out["layers"] = parse_flow_list(out["layers"])
        except ModelError as exc:
            raise BadInput(f"{shown}: {exc}") from None
    return out


def model_group(model: str) -> dict[str, Any]:
    """A model's config by its ``conf/model/`` name, or by the path of its YAML file
    (``~/my-models/model/mine.yaml``: your own, outside the repository, the file that
    ``hydra.searchpath`` finds for ``python -m bench``). The file must call its model by the
    file's name, as for ``python -m bench``: runs and tables are grouped by that name."""
    if not model.endswith((".yaml", ".yml")):
        return conf_group("model", model)
    path = Path(model).expanduser()
    try:
        text = path.read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as exc:
        raise BadInput(f"model={model}: cannot read it ({getattr(exc, 'strerror', None) or exc})") from None
    try:
        import yaml  # a block-style layer list too, as Hydra reads it
    except ImportError:  # a bare GPU box: the conf files' own flat reader
        cfg: Any = _read_flat(path, path)
    else:
        try:
            cfg = yaml.safe_load(text)
        except yaml.YAMLError as exc:
            mark = getattr(exc, "problem_mark", None)
            raise BadInput(f"model={model}: not valid YAML" + (f" (line {mark.line + 1})" if mark else "")) from None
    if not isinstance(cfg, dict):
        raise BadInput(f"model={model}: a model file is a mapping with name: and layers: (docs/extending.md)")
    check_model_name(model, "the file", path.stem, cfg.get("name"))
    return cfg


def check_model_name(given: str, where: object, name: str, called: Any) -> None:
    """A model file must call its model by the file's name: runs, the report and its tables are
    grouped by that name, so a copy of LeNet-5's file still called ``lenet5`` would fold another
    network into LeNet-5's rows."""
    if called != name:
        raise BadInput(f"model={given}: {where} calls its model {called!r}; write name: {name} in it "
                       "(runs and tables are grouped by that name)")


def compose(framework: str, optimizer: str, data: str, model: str = DEFAULT_MODEL, /,
            **overrides: Any) -> dict[str, Any]:
    """The config that ``python -m bench framework=.. optimizer=.. data=.. model=..`` composes, without Hydra.

    For commands that build run specs themselves (``bench.perf``, ``make gpu-check``); pass the
    result to :func:`build_spec`, which validates it. ``overrides`` replace top-level keys of
    config.yaml; a dict given for a group (``data={"limit_train": 64}``) updates that group's keys.
    ``model`` is a ``conf/model/`` name or a model file's path (:func:`model_group`).
    """
    cfg = conf_group("", "config")
    for group, name in zip(GROUPS[:3], (framework, optimizer, data), strict=True):
        cfg[group] = conf_group(group, name)
    cfg["model"] = model_group(model)
    for key, value in overrides.items():
        if key in GROUPS and isinstance(value, Mapping):
            cfg[key].update(value)
        elif key in cfg:
            cfg[key] = value
        else:
            raise BadInput(f"unknown key {key!r}: conf/config.yaml does not declare it")
    return cfg


def build_spec(cfg: Mapping[str, Any]) -> dict[str, Any]:
    """Validate the composed config and return the run spec (a plain dict)."""
    fw = dict(cfg["framework"])
    opt = dict(cfg["optimizer"])
    data = dict(cfg["data"])
    _choice("framework", fw.get("name"), FRAMEWORKS)
    name = _choice("optimizer", opt.get("name"), tuple(METHODS))
    hparams = required_hparams(name)
    missing = [k for k in hparams if opt.get(k) is None]
    if missing:
        raise BadInput(f"optimizer {name} needs {', '.join('optimizer.' + k for k in missing)}")
    for key in hparams:
        opt[key] = _hparam(key, opt[key])
    _choice("optimizer.impl", opt.get("impl"), IMPLS)
    model = _model(cfg.get("model"))

    batch = cfg.get("batch_size")
    if batch is None:
        batch = opt.get("batch_size")
    if batch != "full":
        batch = check_int("batch_size", batch, 1)
    for key, least in (("limit_train", 1), ("limit_test", 1), ("val_size", 0)):
        if data.get(key) is not None:  # a limit is at least 1; null means no limit
            check_int(f"data.{key}", data[key], least)

    spec = {
        "framework": fw,
        "optimizer": opt,
        "data": data,
        "model": model,
        "batch_size": batch,
        "epochs": check_int("epochs", cfg.get("epochs"), 1),
        "seed": check_int("seed", cfg.get("seed"), 0, SEED_MAX),
        "device": resolve_device(_choice("device", cfg.get("device"), DEVICES)),
        "device_requested": cfg.get("device"),
        "threads": check_int("threads", cfg.get("threads"), 1, THREADS_MAX),
        "mode": _choice("mode", cfg.get("mode"), MODES),
        "init": _choice("init", cfg.get("init"), INITS),
        "deterministic": check_bool("deterministic", cfg.get("deterministic", True)),
        "precision": _choice("precision", cfg.get("precision", "fp32"), PRECISIONS),
        "step_log_points": check_int("step_log_points", cfg.get("step_log_points", 200), 1),
        "progress": _choice("progress", cfg.get("progress", "auto"), ("auto", "bar", "lines", "none")),
        "diverge_factor": _diverge_factor(cfg.get("diverge_factor", LATER_KEYS["diverge_factor"])),
        "min_steps": check_int("min_steps", cfg.get("min_steps", LATER_KEYS["min_steps"]), 0),
    }
    check_int("jobs", cfg.get("jobs", 1), 1, LANES_MAX)
    check_int("runs_per_gpu", cfg.get("runs_per_gpu", 1), 1, LANES_MAX)
    check_bool("force", cfg.get("force", False))
    python = fw.get("python")
    if python is not None and not (isinstance(python, str) and shutil.which(python)):
        shown = python if isinstance(python, str) else _short(python)
        raise BadInput(f"cannot start framework.python={shown}: no such executable")
    _supported(spec)
    _fits_in_memory(spec)
    # null unless another version than the project's trains: asked for, or framework.python's own
    fw["version"] = envs.run_version(fw["name"], fw.get("version"), python)
    spec["run_id"] = run_id(spec)
    return spec


def _fits_in_memory(spec: Mapping[str, Any]) -> None:
    """A model whose parameters, gradients and optimizer state alone (one sample's activations on
    top) exceed the machine's memory cannot train: said now, not as a child's MemoryError."""
    from bench.memory import MIB, floor_mib

    try:
        total = os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES")
    except (ValueError, OSError, AttributeError):  # not on this system: no check
        return
    need = floor_mib(dict(spec), 1) * MIB
    if need > total:
        raise BadInput(f"model {spec['model'].get('name', '')}: its {parse_model(spec['model']).n_params:,} "
                       f"parameters need at least {need / 2**30:,.1f} GiB to train with "
                       f"{spec['optimizer']['name']}, more than this machine's {total / 2**30:,.1f} GiB")


def _supported(spec: Mapping[str, Any]) -> None:
    """The framework's registry entry lists the modes and devices its runner has, and the layers
    its compiler has no deterministic gradient for."""
    entry = frameworks.get(spec["framework"]["name"])
    for key, allowed in (("mode", entry.modes), ("device", entry.devices)):
        if spec[key] not in allowed:
            raise BadInput(f"{key}={spec[key]} is not available for framework={entry.name}; "
                           f"it has {', '.join(allowed)}")
    if spec["framework"].get("jit_compile") and spec["deterministic"]:
        used = {layer["type"] for layer in spec["model"]["layers"]}
        if missing := [t for t in entry.jit_nondeterministic if t in used]:
            raise BadInput(f"framework={entry.name} with framework.jit_compile=true has no deterministic "
                           f"gradient for {', '.join(missing)}: set deterministic=false, or leave jit_compile off")


def _hparam(key: str, value: Any) -> float:
    """A hyperparameter in range: β's in (0, 1), weight decay >= 0, every other one > 0."""
    out = _positive_float(f"optimizer.{key}", value, zero=key == "weight_decay")  # no weight decay is allowed
    if key.startswith("beta") and out >= 1:
        raise BadInput(f"optimizer.{key} must be < 1, got {out}")
    return out


def _model(node: Any) -> dict[str, Any]:
    """The model's layer list, checked against the 28x28x1 input before any framework is imported."""
    if node is None:
        node = conf_group("model", DEFAULT_MODEL)
    try:
        return parse_model(node).as_config()
    except ModelError as exc:
        raise BadInput(str(exc)) from None


_TUTORIAL_MODEL: dict[str, Any] | None = None


def is_default_model(model: Mapping[str, Any] | None) -> bool:
    """The tutorial's MLP, as conf/model/mlp.yaml writes it: the model that stays out of run_ids."""
    global _TUTORIAL_MODEL
    if _TUTORIAL_MODEL is None:
        _TUTORIAL_MODEL = parse_model(conf_group("model", DEFAULT_MODEL)).as_config()
    return model is None or dict(model) == _TUTORIAL_MODEL


def _identity(spec: Mapping[str, Any]) -> dict[str, Any]:
    ident = {k: v for k, v in spec.items() if k not in BOOKKEEPING + ("run_id", "device_requested")}
    if is_default_model(spec.get("model")):
        ident.pop("model", None)
    # framework.version came later: the project's own version (null) stays out, so earlier runs keep their ids
    ident["framework"] = {k: v for k, v in spec["framework"].items() if k not in BOOKKEEPING + ("version",)}
    version = spec["framework"].get("version")
    if version:
        ident["framework"]["version"] = envs.public(version)
    ident["data"] = {k: v for k, v in spec["data"].items() if k not in ("mirrors", "timeout")}
    for key, default in LATER_KEYS.items():
        if ident.get(key, default) == default:
            ident.pop(key, None)
    return ident


def run_id(spec: Mapping[str, Any]) -> str:
    """Readable and stable: the same config always gives the same id."""
    digest = hashlib.sha256(json.dumps(_identity(spec), sort_keys=True, default=str).encode()).hexdigest()[:10]
    opt = spec["optimizer"]
    readable = (
        f"{spec['framework']['name']}-{opt['name']}-{opt['impl']}-bs{spec['batch_size']}"
        f"-lr{opt['lr']:g}-s{spec['seed']}-{spec['data']['name']}-{spec['device']}"
    )
    if not is_default_model(spec.get("model")):
        readable += f"-{spec['model']['name']}"
    if spec["framework"].get("version"):  # another version than the project's: -jax0.9.2
        readable += f"-{spec['framework']['name']}{envs.public(spec['framework']['version'])}"
    return re.sub(r"[^A-Za-z0-9._-]", "_", readable) + "-" + digest

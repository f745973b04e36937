"""The one entry wrapper of every command: bad input is one line and exit 2, Ctrl-C is 130.

``python -m bench``, ``bench.report``, ``bench.parity``, ``bench.perf``, ``bench.toy``,
``bench.tuning``, ``bench.timing`` and ``bench.perf.gpu_check`` all end in :func:`entry`, so their
exit codes and their error lines cannot drift apart; all take ``key=value`` options and ``--help``
(``bench.options`` for the commands that are not Hydra apps). Imports neither Hydra nor a framework at module
level: ``make gpu-check`` runs on a box that has neither Hydra nor TensorFlow.
"""
from __future__ import annotations

import os
import re
import signal
import sys
from collections.abc import Callable
from typing import Any

from bench.exits import EXIT_BAD_INPUT, EXIT_INTERRUPTED, BadInput, sigterm_as_interrupt


def _config_errors() -> tuple[type[BaseException], ...]:
    try:
        from hydra.errors import HydraException
        from omegaconf.errors import OmegaConfBaseException
    except ImportError:
        return ()
    return (HydraException, OmegaConfBaseException)


def _yaml_errors() -> tuple[type[BaseException], ...]:
    try:
        from yaml import YAMLError
    except ImportError:
        return ()
    return (YAMLError,)


def one_line(exc: BaseException) -> str:
    """Hydra's and OmegaConf's multi-line messages as one line (choices kept, search path dropped)."""
    parts: list[str] = []
    for err in (exc, exc.__cause__):
        if err is None:
            continue
        lines = [ln.strip() for ln in str(err).splitlines() if ln.strip()]
        for i, line in enumerate(lines):
            if line.startswith(("Config search path", "full_key:", "object_type=", "Set the environment")):
                break
            if line.startswith("Available options in"):
                options = [ln for ln in lines[i + 1:] if not ln.startswith(("Config search path", "provider="))]
                parts.append(f"choose one of: {', '.join(options)}")
                break
            if re.fullmatch(r"Key '.*' is not in struct", line):  # OmegaConf's words for an unknown key
                line = "no such key (--help lists the keys)"
            if line not in parts and not line.startswith("To append to your config"):  # we refuse new keys
                parts.append(line.rstrip("."))
    return "; ".join(parts)


def check_hydra_argv(argv: list[str]) -> None:
    """What the Hydra apps (``bench``, ``bench.parity``) refuse before Hydra sees it, in one line each:
    a config group given a list (``data=[1,2]`` would crash Hydra's defaults code), a group deleted
    (``~optimizer``: every run needs one), an empty or null ``results_dir`` (Hydra would write its
    folders at the filesystem's root and the run in the current folder), and ``--cfg hydra
    --resolve``, which cannot work: Hydra resolves its own node without the job's keys."""
    from bench.options import pathname
    from bench.spec import CONF_DIR, conf_groups

    groups = conf_groups()
    for arg in argv:
        key, eq, value = arg.lstrip("+~").partition("=")
        if eq and key in groups and value.strip()[:1] in ("[", "{"):
            choices = sorted(p.stem for p in (CONF_DIR / key).glob("*.yaml"))
            raise BadInput(f"{key}={value}: a config group takes one name, one of {', '.join(choices)} "
                           f"(sweep several with -m {key}=a,b)")
        if arg.startswith("~") and key in groups:
            raise BadInput(f"{arg}: a run cannot do without its {key} group; choose one with {key}=NAME")
        if eq and key == "results_dir":
            pathname(key, value)  # never empty or null, as in every other command
        if eq and key == "hydra.searchpath":  # Hydra only warns, in two lines, and searches on without it
            for folder in _search_folders(value):
                if not os.path.isdir(folder):
                    raise BadInput(f"hydra.searchpath: {folder} is not a folder (write [file:///abs/dir] for a "
                                   "folder holding model/NAME.yaml and the like)")
    _check_model_names(argv, CONF_DIR)
    words = [w for arg in argv for w in (arg.split("=", 1) if arg.startswith("--cfg=") else [arg])]
    asked = {words[i + 1] for i, w in enumerate(words[:-1]) if w in ("--cfg", "-c")}
    if "hydra" in asked and "--resolve" in words:
        raise BadInput("--cfg hydra --resolve: Hydra resolves its own settings without the job's keys, and its "
                       "folders point at results_dir; use --cfg all --resolve (or --cfg hydra without --resolve)")


def _search_folders(value: str) -> list[str]:
    """The local folders of a ``hydra.searchpath=[file://DIR, ...]`` value (``pkg://`` entries left out)."""
    entries = (e.strip().strip("'\"").removeprefix("file://") for e in value.strip().strip("[]").split(","))
    return [e for e in entries if e and "://" not in e]


def _check_model_names(argv: list[str], conf_dir: Any) -> None:
    """``model=mine`` (or a sweep of them): the file ``model/mine.yaml`` must call its model ``mine``
    (:func:`bench.spec.check_model_name`)."""
    import yaml

    from bench.spec import check_model_name

    folders = [os.path.join(str(conf_dir), "model")]
    for arg in argv:
        key, eq, value = arg.partition("=")
        if eq and key == "hydra.searchpath":
            folders += [os.path.join(folder, "model") for folder in _search_folders(value)]
    for arg in argv:
        key, eq, value = arg.partition("=")
        if not eq or key != "model":
            continue
        names = [v.strip() for v in value.split(",") if v.strip()]
        for name, path in ((n, os.path.join(f, f"{n}.yaml")) for n in names for f in folders):
            if not os.path.isfile(path):
                continue  # Hydra says when no folder has it, with the choices
            try:
                with open(path, encoding="utf-8") as fh:
                    called = (yaml.safe_load(fh) or {}).get("name")
            except (OSError, yaml.YAMLError, AttributeError):
                continue  # Hydra reads it next and says what is wrong
            check_model_name(name, path, name, called)


def error(message: str) -> int:
    """Print the one line of bad input and return its exit code."""
    print(f"error: {message}", file=sys.stderr, flush=True)
    return EXIT_BAD_INPUT


def entry(main: Callable[[], int | None], on_interrupt: Callable[[], str] | None = None) -> int:
    """Run a command's ``main`` and turn its ends into the project's exit codes.

    0/1 come from ``main``; ``BadInput`` (and Hydra's config errors) print one line and give
    2; an ``OSError`` escaping ``main`` is an unwritable output and gives 2 too; Ctrl-C or
    SIGTERM gives 130 after ``on_interrupt`` (which returns a line to print) has cleaned up.
    """
    sigterm_as_interrupt()
    os.environ["HYDRA_FULL_ERROR"] = "1"  # Hydra raises instead of printing; one line is printed here
    try:
        code = main()
    except BadInput as exc:
        return error(str(exc))
    except _config_errors() as exc:
        return error(one_line(exc))
    except _yaml_errors() as exc:  # a conf file (a user's model on hydra.searchpath) that is not YAML
        return error(f"a config file is not valid YAML: {one_line(exc)}")
    except OSError as exc:
        return error(f"cannot write {exc.filename or ''}: {exc.strerror or exc}; choose a writable results_dir")
    except KeyboardInterrupt:
        signal.signal(signal.SIGTERM, signal.SIG_IGN)  # a second SIGTERM must not cut the cleanup short
        line = on_interrupt() if on_interrupt else ""
        print(line or "interrupted", file=sys.stderr, flush=True)
        return EXIT_INTERRUPTED
    return int(code or 0)

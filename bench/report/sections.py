"""Sections that other modules contribute to the report, each collected in a child process.

A contributing module exposes ``report_section(results_dir: Path) -> ReportSection | None``.
It may import a framework, and torch plus TensorFlow in one process crash, so the report
calls it in a child (``python -m bench.report.sections <module> <results_dir> <out.json>``)
and reads the section back as JSON: no pickle anywhere in the project.
"""
from __future__ import annotations

import importlib
import io
import json
import subprocess
import sys
import tempfile
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from bench.run import proc

# Modules asked for a section, in page order. A module that does not exist is skipped quietly.
EXTRA_MODULES = ("bench.scaling.section", "bench.parity.section", "bench.perf.section", "bench.tuning")


@dataclass
class ReportSection:
    """A section that another module contributes to the report (parity, speed, tuning).

    ``bench.report`` renders each one: text escaped in HTML, table as HTML and markdown,
    figures embedded.
    """

    title: str
    text: str  # markdown paragraphs: **bold**, *emphasis* and `code` are rendered, the rest is escaped
    table: Any = None  # a pandas.DataFrame or None
    figures: list[Path] = field(default_factory=list)  # PNG files already written


def collect_section(module: str, results_dir: Path, timeout: float = 600) -> tuple[ReportSection | None, str]:
    """``<module>.report_section(results_dir)`` run in a child process: (section, warning).

    A missing module, a missing function or a None result give (None, ""): nothing to show.
    """
    with tempfile.TemporaryDirectory() as tmp:
        out = Path(tmp) / "section.json"
        try:
            done = proc.run("bench.report.sections", [module, str(results_dir), str(out)], timeout=timeout)
        except subprocess.TimeoutExpired:
            return None, f"{module}.report_section took over {timeout:.0f} s; section skipped"
        if not out.exists():
            return None, f"{module}.report_section crashed ({proc.last_line(done)}); section skipped"
        kind, payload = json.loads(out.read_text(encoding="utf-8"))
    if kind == "ok":
        return section_from_json(payload), ""
    if kind == "error":
        return None, f"{module}.report_section failed ({payload}); section skipped"
    return None, ""  # module absent, no report_section, or nothing to show


def section_result(module: str, results_dir: Path) -> tuple[str, Any]:
    """("ok", section as JSON) | ("missing", None) | ("error", why): what the child reports."""
    try:
        mod = importlib.import_module(module)
    except ModuleNotFoundError as exc:
        return ("missing", None) if exc.name == module else ("error", f"import: {exc}")
    except Exception as exc:  # a broken module must not take the report down
        return "error", f"import: {type(exc).__name__}: {exc}"
    fn = getattr(mod, "report_section", None)
    if fn is None:
        return "missing", None
    try:
        section = fn(Path(results_dir))
    except Exception as exc:
        return "error", f"{type(exc).__name__}: {exc}"
    return ("ok", section_to_json(section)) if isinstance(section, ReportSection) else ("missing", None)


def section_to_json(section: ReportSection) -> dict[str, Any]:
    table = section.table
    return {"title": section.title, "text": section.text,
            "table": None if table is None else table.to_json(orient="split", double_precision=15),
            "figures": [str(p) for p in section.figures]}


def section_from_json(obj: dict[str, Any]) -> ReportSection:
    import pandas as pd  # only the parent reads tables back; contributing modules need not load pandas here

    table = obj.get("table")
    return ReportSection(
        title=str(obj["title"]), text=str(obj["text"]),
        table=None if table is None else pd.read_json(io.StringIO(table), orient="split"),
        figures=[Path(p) for p in obj.get("figures", [])])


def main(argv: list[str]) -> int:
    module, results_dir, out = argv
    Path(out).write_text(json.dumps(section_result(module, Path(results_dir))), encoding="utf-8")
    return 0


if __name__ == "__main__":
    # Run through the imported module: a section is checked against bench.report.sections.ReportSection,
    # which is not this __main__ copy's class.
    from bench.report import sections

    sys.exit(sections.main(sys.argv[1:]))

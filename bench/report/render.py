"""index.html and report.md from the same parts, through Jinja2 templates.

The Python side only prepares data (strings, cells, figure bytes); the templates under
``templates/`` hold every tag. HTML autoescaping is on: text from result files, run.json or
another module's section can never become markup. The page's one script (``templates/sort.js``:
columns sort on click) and its style sheet are our own files, inlined: the page needs no network.
"""
from __future__ import annotations

import base64
import math
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import jinja2
import numpy as np
import pandas as pd
from markdown_it import MarkdownIt
from markupsafe import Markup

TEMPLATES = Path(__file__).resolve().parent / "templates"
# Paragraphs, emphasis and code spans only; raw HTML in the text is escaped ("zero" preset: html off).
_MARKDOWN = MarkdownIt("zero").enable(["emphasis", "backticks"])


@dataclass
class Part:
    """One report section, rendered twice (HTML and markdown) from the same content.

    ``level``: 2 for a section (listed in the page's navigation), 3 for a section inside the one
    before it (a model's comparison, claims, curves when the results hold several models).
    """

    anchor: str
    title: str
    blocks: list[tuple[str, Any]] = field(default_factory=list)  # (kind, payload)
    level: int = 2

    def text(self, s: str) -> Part:
        self.blocks.append(("text", s))
        return self

    def loud(self, s: str) -> Part:
        self.blocks.append(("loud", s))
        return self

    def table(self, df: pd.DataFrame) -> Part:
        self.blocks.append(("table", df))
        return self

    def figure(self, png: Path | None, caption: str) -> Part:
        if png is not None:
            self.blocks.append(("figure", (png, caption)))
        return self

    def items(self, lines: Sequence[str], cls: str = "") -> Part:
        self.blocks.append(("items", (list(lines), cls)))
        return self


def paragraphs(text: str) -> Markup:
    """Markdown paragraphs as HTML: **bold**, *emphasis* and `code` rendered, raw HTML escaped."""
    return Markup(_MARKDOWN.render(text))  # noqa: S704 - markdown-it with html off escapes every tag


def cell_text(v: Any) -> str:
    """Floats from other modules' tables get 3 significant digits; NaN stays empty."""
    if v is None:
        return ""
    if isinstance(v, (float, np.floating)):
        if math.isnan(v):
            return ""
        return str(int(v)) if float(v).is_integer() and abs(v) < 1e6 else f"{v:.3g}"
    return str(v)


PROSE = 60  # characters: a longer cell (evidence, an interval list) wraps inside its column; others never do


def cell_class(text: str) -> str:
    """Verdicts and divergence stand out, long text wraps; the class names are the style sheet's."""
    if text == "diverged" or text.startswith("not supported"):
        tone = "bad"
    elif text.startswith("supported"):
        tone = "good"
    else:
        tone = "unsure" if text.startswith("inconclusive") else ""
    return " ".join(c for c in (tone, "prose" if len(text) > PROSE else "") if c)


def md_cell(v: Any) -> str:
    return cell_text(v).replace("\\", "\\\\").replace("|", "\\|").replace("\n", " ")


def _block(kind: str, payload: Any, out_dir: Path) -> dict[str, Any]:
    """A block as the templates see it: plain values, no markup."""
    if kind == "text":
        return {"kind": kind, "text": payload, "html": paragraphs(payload)}
    if kind == "loud":
        return {"kind": kind, "text": payload}
    if kind == "table":
        rows = [[{"text": (t := cell_text(v)), "cls": cell_class(t)} for v in row]
                for row in payload.itertuples(index=False)]
        return {"kind": kind, "columns": [str(c) for c in payload.columns], "rows": rows}
    if kind == "figure":
        png, caption = payload
        rel = png.relative_to(out_dir) if png.is_relative_to(out_dir) else png
        return {"kind": kind, "caption": caption, "rel": rel.as_posix(),
                "png_base64": base64.b64encode(png.read_bytes()).decode("ascii")}
    lines, cls = payload
    return {"kind": kind, "lines": lines, "cls": cls}


def _context(title: str, subtitle: str, parts: Sequence[Part], out_dir: Path) -> dict[str, Any]:
    return {"title": title, "subtitle": subtitle,
            "parts": [{"anchor": p.anchor, "title": p.title, "level": p.level,
                       "blocks": [_block(k, v, out_dir) for k, v in p.blocks]} for p in parts]}


def _environment(autoescape: bool) -> jinja2.Environment:
    env = jinja2.Environment(loader=jinja2.FileSystemLoader(TEMPLATES), autoescape=autoescape,
                             trim_blocks=True, lstrip_blocks=True, keep_trailing_newline=True,
                             undefined=jinja2.StrictUndefined)
    env.filters["md_cell"] = md_cell
    return env


def render_html(title: str, subtitle: str, parts: Sequence[Part], out_dir: Path) -> str:
    """The self-contained page: style sheet and script inlined, figures embedded as data URIs."""
    css = Markup((TEMPLATES / "style.css").read_text(encoding="utf-8"))  # noqa: S704 - our own file
    js = Markup((TEMPLATES / "sort.js").read_text(encoding="utf-8"))  # noqa: S704 - our own file
    return _environment(True).get_template("page.html.j2").render(css=css, js=js,
                                                                  **_context(title, subtitle, parts, out_dir))


def render_md(title: str, subtitle: str, parts: Sequence[Part], out_dir: Path) -> str:
    """report.md: the same parts, figures linked next to it."""
    return _environment(False).get_template("report.md.j2").render(**_context(title, subtitle, parts, out_dir))

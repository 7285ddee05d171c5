"""The report's ``index.html``: one self-contained page, every figure linked by a relative path."""

from __future__ import annotations

import os
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from html import escape
from pathlib import Path
from typing import Any
from urllib.parse import quote

_STYLE = """
body { font-family: system-ui, sans-serif; margin: 2em auto; max-width: 1200px; color: #222; }
table { border-collapse: collapse; margin-bottom: 1.5em; font-size: 0.9em; }
td, th { border: 1px solid #ccc; padding: 0.25em 0.6em; text-align: left; vertical-align: top; }
figure { margin: 1em 0 2em; }
img { max-width: 100%; border: 1px solid #eee; }
figcaption { color: #555; font-size: 0.9em; }
nav a { margin-right: 1em; }
summary { font-size: 1.2em; font-weight: bold; cursor: pointer; margin: 1em 0; }
"""


@dataclass
class Section:
    """A heading with figures (``(file name in the report folder, caption)`` pairs) and/or a table of rows."""

    title: str
    figures: list[tuple[str, str]] = field(default_factory=list)
    note: str = ""
    table: list[Mapping[str, Any]] = field(default_factory=list)  # rows with the same keys: the columns

    @property
    def anchor(self) -> str:
        return quote(self.title.lower().replace(" ", "-"))


def _text(value: Any) -> str:
    """Plain reading text for a metadata value: lists comma-separated, mappings as ``key: value``."""
    if isinstance(value, list | tuple):
        return ", ".join(_text(v) for v in value)
    if isinstance(value, dict):
        return "; ".join(f"{k}: {_text(v)}" for k, v in value.items())
    return str(value)


def metadata_table(rows: Mapping[str, Any]) -> str:
    body = "".join(f"<tr><th>{escape(str(k))}</th><td>{escape(_text(v))}</td></tr>" for k, v in rows.items())
    return f"<table>{body}</table>"


def rows_table(rows: Sequence[Mapping[str, Any]]) -> str:
    """An HTML table of ``rows``; floats with three decimals, as every score in the report."""
    head = "".join(f"<th>{escape(str(k))}</th>" for k in rows[0])
    cells = ("".join(f"<td>{escape(f'{v:.3f}' if isinstance(v, float) else str(v))}</td>" for v in row.values())
             for row in rows)
    return f"<table><tr>{head}</tr>{''.join(f'<tr>{c}</tr>' for c in cells)}</table>"


def write_index(path: Path, title: str, metadata: Mapping[str, Any], sections: Sequence[Section]) -> Path:
    """Write the page whole (temporary file, then rename): a reader never sees half a report."""
    nav = "".join(f'<a href="#{s.anchor}">{escape(s.title)}</a>' for s in sections)
    parts = [
        "<!doctype html>",
        f'<html lang="en"><head><meta charset="utf-8"><title>{escape(title)}</title>',
        f"<style>{_STYLE}</style></head><body>",
        f"<h1>{escape(title)}</h1><nav>{nav}</nav>",
    ]
    for section in sections:
        parts.append(f'<h2 id="{section.anchor}">{escape(section.title)}</h2>')
        if section.note:
            parts.append(f"<p>{escape(section.note)}</p>")
        if section.table:
            parts.append(rows_table(section.table))
        for name, caption in section.figures:
            parts.append(
                f'<figure><a href="{quote(name)}"><img src="{quote(name)}" alt="{escape(caption)}"></a>'
                f"<figcaption>{escape(caption)}</figcaption></figure>"
            )
    parts.append(f"<details><summary>Run configuration</summary>{metadata_table(metadata)}</details>")
    parts.append("</body></html>\n")
    tmp = path.with_name(f".{path.name}.tmp")
    tmp.write_text("\n".join(parts), encoding="utf-8")
    os.replace(tmp, path)
    return path

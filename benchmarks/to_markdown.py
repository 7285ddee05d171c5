"""Results tables (``benchmarks/results/<table>.json``) as Markdown: how README's performance tables are made.

    python benchmarks/to_markdown.py benchmarks/results/sweep_sizes_interleaved.json [more.json ...]

Each table is printed with the cells its script printed, under a line saying where it came from
(command, CPU, cores, load at start and end, date, the note, the JSON file), so a table pasted
into the README keeps its provenance.
"""

from __future__ import annotations

import argparse
import json
import shlex
from pathlib import Path
from typing import Any

from _common import REPO, Column


def shown_command(command: str) -> str:
    """The command without its ``--note`` (the note is shown on its own) and ``--results-dir`` (the
    line links the JSON; where a trial run put it changes no number)."""
    words = shlex.split(command)
    for option in ("--note", "--results-dir"):
        if option in words:
            i = words.index(option)
            del words[i : i + 2]
    return shlex.join(words)


def _cell(column: Column, row: dict[str, Any]) -> str:
    """The printed cell, Markdown-escaped; leading spaces (a phase's depth in the fixed-cost tree) kept as
    no-break spaces."""
    text = column.cell(row)
    escaped = text.strip().replace("\\", "\\\\")
    for char in "_*|`":
        escaped = escaped.replace(char, "\\" + char)
    return "&nbsp;" * (len(text) - len(text.lstrip(" "))) + escaped


def markdown(record: dict[str, Any], path: Path, *, note: bool = True) -> str:
    """One results file as a Markdown table (first column left-aligned) under a line saying where it came from."""
    columns = [Column(**c) for c in record["columns"]]
    m = record["machine"]
    shown = path.resolve().relative_to(REPO) if path.resolve().is_relative_to(REPO) else path
    lines = [f"`{shown_command(record['command'])}` — {m['cpu']}, {m['cores']} cores, load "
             f"{m['load_avg_1m']:.1f}→{m['load_avg_1m_at_end']:.1f}, {m['date'][:10]}, torch {m['versions']['torch']}"
             + (f"; {record['note']}" if note and record["note"] else "") + f" ([{shown.name}]({shown}))",
             "",
             "| " + " | ".join(c.header for c in columns) + " |",
             "|" + "|".join("---" if i == 0 else "---:" for i in range(len(columns))) + "|"]
    lines += ["| " + " | ".join(_cell(c, row) for c in columns) + " |" for row in record["rows"]]
    return "\n".join(lines)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("files", nargs="+", type=Path, help="results JSON files")
    parser.add_argument("--hide-note", action="store_true", help="leave each file's note out (the text says it once)")
    args = parser.parse_args()
    for path in args.files:
        print(markdown(json.loads(path.read_text()), path, note=not args.hide_note) + "\n")


if __name__ == "__main__":
    main()

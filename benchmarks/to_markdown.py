"""Results tables (``benchmarks/results/<table>.json``) as Markdown: how README's performance tables are made.

    python benchmarks/to_markdown.py benchmarks/results/sweep_sizes_interleaved.json [more.json ...]

Each table is printed with the cells its script printed, under a line saying where it came from
(command, CPU, cores, load, date), so a table pasted into the README keeps its provenance.
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path
from typing import Any

from _common import Column


def markdown(record: dict[str, Any]) -> str:
    """One results file as a Markdown table (first column left-aligned), its provenance above it."""
    columns = [Column(**c) for c in record["columns"]]
    m = record["machine"]
    lines = [f"<!-- {record['command']} -->",
             f"<!-- {m['cpu']}, {m['cores']} cores, load {m['load_avg_1m']:.1f}-{m['load_avg_1m_at_end']:.1f}, "
             f"{m['date']}, torch {m['versions']['torch']}, zarr {m['versions']['zarr']}"
             + (f"; {record['note']}" if record["note"] else "") + " -->",
             "| " + " | ".join(c.header for c in columns) + " |",
             "|" + "|".join("---" if i == 0 else "---:" for i in range(len(columns))) + "|"]
    lines += ["| " + " | ".join(c.cell(row).strip() for c in columns) + " |" for row in record["rows"]]
    return "\n".join(lines)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("files", nargs="+", type=Path, help="results JSON files")
    for path in parser.parse_args().files:
        print(markdown(json.loads(path.read_text())) + "\n")


if __name__ == "__main__":
    main()

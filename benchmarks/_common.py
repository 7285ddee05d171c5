"""Shared helpers of the benchmark scripts: the machine record, interleaved rounds, child processes, tables.

A contender that must own its peak RSS runs in its own subprocess; repetitions run in interleaved
rounds whose start rotates (so slow drift of a shared machine's load hits every contender alike),
and are summarised by the median. Every script prints its table and writes it, with the machine
and the exact command that produced it, to ``benchmarks/results/<table>.json`` (tracked in git:
the numbers behind README's tables). Trial runs go to ``--results-dir benchmarks/scratch``
(ignored).
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import resource
import shlex
import statistics
import subprocess
import sys
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import asdict, dataclass
from datetime import datetime, timezone
from importlib import metadata
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parents[1]
RESULTS_DIR = REPO / "benchmarks" / "results"
DISTRIBUTIONS = ("attrstream", "torch", "torchvision", "triton", "zarr", "zarrs", "numcodecs", "numpy", "captum")


def _version(dist: str) -> str | None:
    try:
        return metadata.version(dist)
    except metadata.PackageNotFoundError:
        return None


def cpu_model() -> str:
    """The CPU's marketing name (``platform.processor()`` is empty on most Linux systems)."""
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine()


def revision() -> str | None:
    """The repository's commit (``+dirty`` with uncommitted changes): which code produced the numbers."""
    try:
        head = subprocess.run(["git", "-C", str(REPO), "rev-parse", "--short", "HEAD"], capture_output=True,
                              text=True, check=True).stdout.strip()
        dirty = subprocess.run(["git", "-C", str(REPO), "status", "--porcelain", "--untracked-files=no"],
                               capture_output=True, text=True, check=True).stdout.strip()
    except (OSError, subprocess.CalledProcessError):
        return None
    return head + ("+dirty" if dirty else "")


def _memory_gb() -> float | None:
    try:
        return os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES") / 2**30
    except (ValueError, OSError):
        return None


def environment(device: str = "cpu") -> dict[str, Any]:
    """Machine, load, versions and date: what every results file carries so numbers can be compared."""
    env: dict[str, Any] = {
        "host": platform.node(),
        "cpu": cpu_model(),
        "cores": len(os.sched_getaffinity(0)),  # the cores this process may use
        "logical_cpus": os.cpu_count(),
        "memory_gb": _memory_gb(),
        "load_avg_1m": os.getloadavg()[0],
        "python": platform.python_version(),
        "versions": {d: _version(d) for d in DISTRIBUTIONS},
        "revision": revision(),
        "date": datetime.now(timezone.utc).isoformat(timespec="seconds"),
        "device": device,
    }
    if device.startswith("cuda"):
        import torch

        env["gpu"] = torch.cuda.get_device_name(torch.device(device))
    return env


def command_line() -> str:
    """This process's command as a reader reruns it from the repository root."""
    script = Path(sys.argv[0]).resolve()
    shown = script.relative_to(REPO) if script.is_relative_to(REPO) else script
    return shlex.join(["python", str(shown), *sys.argv[1:]])


def add_output_args(parser: argparse.ArgumentParser) -> None:
    """``--results-dir`` and ``--note``: where the table's JSON goes and what to say about the run."""
    parser.add_argument("--results-dir", type=Path, default=RESULTS_DIR,
                        help="where <table>.json is written (default benchmarks/results; trial runs: benchmarks/scratch)")
    parser.add_argument("--note", default="", help="recorded in the JSON, e.g. 'machine loaded by other jobs'")


def add_contest_args(parser: argparse.ArgumentParser, contenders: Sequence[str]) -> None:
    """The options every interleaved contender benchmark shares: rounds, device, threads, output,
    and the hidden ``--child`` that runs one contender in its own process."""
    parser.add_argument("--repeats", type=int, default=3, help="interleaved rounds; the table shows medians")
    parser.add_argument("--device", default="cpu", help="cpu or cuda[:i]")
    parser.add_argument("--threads", type=int, default=0, help="torch intra-op threads per contender (0: torch's default)")
    add_output_args(parser)
    parser.add_argument("--child", choices=contenders, help=argparse.SUPPRESS)


def child_or_compare(args: argparse.Namespace, child: Callable[[argparse.Namespace], dict[str, Any]],
                     compare: Callable[[argparse.Namespace], None]) -> None:
    """In a ``--child`` process, print that contender's measurement as JSON; else run the comparison."""
    if args.child:
        print(json.dumps(child(args)))
    else:
        compare(args)


def peak_rss_mb() -> float:
    """This process's peak resident set size in MB (Linux reports ``ru_maxrss`` in KiB)."""
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def dir_bytes(path: Path) -> int:
    """Bytes of every file under ``path`` (what a contender left on disk)."""
    return sum(p.stat().st_size for p in Path(path).rglob("*") if p.is_file())


def run_child(argv: Sequence[str], timeout: float | None = None) -> dict[str, Any]:
    """Run ``python argv...`` and return the JSON object its last stdout line holds.

    The child's stderr (its progress) passes through; a failing child raises, so a broken
    contender is never averaged in.
    """
    done = subprocess.run([sys.executable, *argv], stdout=subprocess.PIPE, text=True, timeout=timeout)
    if done.returncode != 0:
        raise RuntimeError(f"benchmark child {shlex.join(argv)} exited {done.returncode} (its stderr is above)")
    return json.loads(done.stdout.strip().splitlines()[-1])


def rotated(items: Sequence[Any], start: int) -> list[Any]:
    """``items`` starting at index ``start`` (mod len): round r of an interleaved schedule."""
    k = start % len(items)
    return [*items[k:], *items[:k]]


def interleaved(
    contenders: Sequence[str], repeats: int, run: Callable[[str, int], dict[str, Any]],
    on_result: Callable[[str, int, dict[str, Any]], None] | None = None,
) -> dict[str, list[dict[str, Any]]]:
    """``run(contender, rep)`` for every contender in each of ``repeats`` rounds.

    Round r starts at contender r (mod count): no contender always runs first (cold page cache)
    or last (a machine whose load grows), so medians compare like with like.
    """
    results: dict[str, list[dict[str, Any]]] = {c: [] for c in contenders}
    for rep in range(repeats):
        for name in rotated(contenders, rep):
            result = run(name, rep)
            results[name].append(result)
            if on_result is not None:
                on_result(name, rep, result)
    return results


def median(runs: Iterable[Mapping[str, Any]], key: str) -> float | None:
    """Median of ``key`` over the runs that report it (None if none does)."""
    values = [r[key] for r in runs if r.get(key) is not None]
    return statistics.median(values) if values else None


@dataclass(frozen=True)
class Column:
    """One column of a printed table: the row key, its header and its format spec."""

    key: str
    header: str
    spec: str = ""  # format() spec of the value, e.g. ".2f"; None values print as "-"

    def cell(self, row: Mapping[str, Any]) -> str:
        value = row.get(self.key)
        return "-" if value is None else format(value, self.spec)


def print_table(columns: Sequence[Column], rows: Sequence[Mapping[str, Any]]) -> None:
    """Rows as aligned text columns (first column left-aligned, the others right-aligned)."""
    cells = [[c.header for c in columns], *([c.cell(r) for c in columns] for r in rows)]
    widths = [max(len(line[i]) for line in cells) for i in range(len(columns))]
    for line in cells:
        print("  ".join(v.ljust(w) if i == 0 else v.rjust(w) for i, (v, w) in enumerate(zip(line, widths, strict=True))))


def write_table(name: str, rows: Sequence[Mapping[str, Any]], *, columns: Sequence[Column], config: Mapping[str, Any],
                machine: Mapping[str, Any], results_dir: Path = RESULTS_DIR, note: str = "",
                runs: Sequence[Mapping[str, Any]] = ()) -> Path:
    """Print the table and write ``<results_dir>/<name>.json``: rows, raw runs, machine, command, config.

    ``machine`` is :func:`environment` taken when the measurement started; the load at the end is
    added, so a reader sees whether the machine was busy throughout.
    """
    print_table(columns, rows)
    path = Path(results_dir) / f"{name}.json"
    path.parent.mkdir(parents=True, exist_ok=True)
    record = {
        "table": name, "command": command_line(), "note": note,
        "machine": {**machine, "load_avg_1m_at_end": os.getloadavg()[0]}, "config": dict(config),
        "columns": [asdict(c) for c in columns], "rows": list(rows), "runs": list(runs),
    }
    path.write_text(json.dumps(record, indent=1) + "\n")
    print(f"-> {path}")
    return path

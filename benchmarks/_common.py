"""Shared helpers of the benchmark scripts: the run record, interleaved repetitions, child processes.

Every number a benchmark reports comes from a contender run in its own subprocess (so its peak RSS
is its own, and no contender inherits another's allocator or thread state), repeated in
interleaved rounds whose start rotates (so slow drift of a shared machine's load hits every
contender alike), and summarised by the median.
"""

from __future__ import annotations

import json
import os
import platform
import resource
import statistics
import subprocess
import sys
from collections.abc import Callable, Iterable, Mapping, Sequence
from datetime import datetime, timezone
from importlib import metadata
from pathlib import Path
from typing import Any

RESULTS_DIR = Path(__file__).resolve().parent / "results"
DISTRIBUTIONS = ("attrstream", "torch", "torchvision", "triton", "zarr", "numcodecs", "numpy", "captum")


def _version(dist: str) -> str | None:
    try:
        return metadata.version(dist)
    except metadata.PackageNotFoundError:
        return None


def environment(device: str = "cpu") -> dict[str, Any]:
    """Machine, load, versions and date: what every JSON line carries so results can be compared."""
    env: dict[str, Any] = {
        "machine": platform.node(),
        "cpu": platform.processor() or platform.machine(),
        "cores": len(os.sched_getaffinity(0)),
        "load_avg_1m": os.getloadavg()[0],
        "python": platform.python_version(),
        "versions": {d: _version(d) for d in DISTRIBUTIONS},
        "date": datetime.now(timezone.utc).isoformat(timespec="seconds"),
        "device": device,
    }
    if device.startswith("cuda"):
        import torch

        env["gpu"] = torch.cuda.get_device_name(torch.device(device))
    return env


def peak_rss_mb() -> float:
    """This process's peak resident set size in MB (Linux reports ``ru_maxrss`` in KiB)."""
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def dir_bytes(path: Path) -> int:
    """Bytes of every file under ``path`` (what a contender left on disk)."""
    return sum(p.stat().st_size for p in Path(path).rglob("*") if p.is_file())


def run_child(argv: Sequence[str], timeout: float | None = None) -> dict[str, Any]:
    """Run ``python argv...`` and return the JSON object its last stdout line holds.

    A failing child raises with its stderr tail, so a broken contender is never averaged in.
    """
    done = subprocess.run([sys.executable, *argv], capture_output=True, text=True, timeout=timeout)
    if done.returncode != 0:
        raise RuntimeError(f"benchmark child {' '.join(argv)} exited {done.returncode}:\n{done.stderr[-4000:]}")
    return json.loads(done.stdout.strip().splitlines()[-1])


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
        for i in range(len(contenders)):
            name = contenders[(rep + i) % len(contenders)]
            result = run(name, rep)
            results[name].append(result)
            if on_result is not None:
                on_result(name, rep, result)
    return results


def median(runs: Iterable[Mapping[str, Any]], key: str) -> float | None:
    """Median of ``key`` over the runs that report it (None if none does)."""
    values = [r[key] for r in runs if r.get(key) is not None]
    return statistics.median(values) if values else None


def append_jsonl(path: Path, records: Iterable[Mapping[str, Any]]) -> None:
    """Append one JSON object per line to ``path`` (results accumulate across runs and machines)."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    with path.open("a") as f:
        for record in records:
            f.write(json.dumps(record) + "\n")

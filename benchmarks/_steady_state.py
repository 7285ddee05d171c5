"""A sweep's steady state against the bare loop: batch cycles apart from the fixed cost.

A whole run's ratio mixes the sweep's rate per batch with its fixed cost (store creation, probe,
weights hash, last-unit flush, finalize: ``_fixed_cost.FIXED``) and with this VM's drift from one
run to the next. Here both are taken apart, in one process, bare and attrstream alternated:

- every real forward of the model is timestamped (a forward pre-hook; the sweep's shape probe runs
  on the meta device and is not counted), and the time from one forward's start to the next is one
  batch's whole cycle: data loading, forward, backward and, in the sweep, the statistics, maps,
  thumbnails, host copy and append. A run's median cycle is what a longer run converges to, and it
  shrugs off the stalls a shared machine inserts;
- the fixed-cost phases are timed in place (``_fixed_cost.timing_phases``) and subtracted from the
  sweep's wall time.
"""

from __future__ import annotations

import statistics
import time
from collections.abc import Iterator
from contextlib import contextmanager
from itertools import pairwise
from pathlib import Path
from typing import Any

from _common import rotated
from _fixed_cost import FIXED, timing_phases
from _sweep_contenders import Case, Setup, timed

CONTENDERS = ("bare", "attrstream")


@contextmanager
def forward_starts(model: Any) -> Iterator[list[float]]:
    """``perf_counter()`` at the start of each forward of ``model`` on a real device."""
    starts: list[float] = []

    def mark(_module: Any, args: tuple) -> None:
        if not (args and getattr(args[0], "is_meta", False)):
            starts.append(time.perf_counter())

    handle = model.register_forward_pre_hook(mark)
    try:
        yield starts
    finally:
        handle.remove()


def steady_job(s: Setup, job: dict[str, Any], scratch: Path) -> dict[str, Any]:
    """Rounds of (bare, attrstream) over the case's data, first contender rotated, after a warm-up of each."""
    (case,) = [Case(**{**c, "methods": tuple(c["methods"])}) for c in job["cases"]]
    for name in CONTENDERS:
        timed(s, name, case, s.dataset(s.args.batch_size, seed=1), scratch / "warmup")
    data = s.dataset(case.n)
    runs = []
    for rep in range(job["repeats"]):
        for name in rotated(CONTENDERS, rep):
            with forward_starts(s.model) as starts, timing_phases(FIXED) as fixed:
                r = timed(s, name, case, data, scratch / "out")
            cycles = [b - a for a, b in pairwise(starts)]
            runs.append({"round": rep, **r, "batches": len(starts), "fixed": fixed,
                         "batch_ms": 1e3 * statistics.median(cycles) if cycles else None})
    return {"runs": runs, "layers": list(s.layers(case))}


def steady_rows(runs: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """One row per round (bare and attrstream side by side), then the medians over rounds."""
    rows = []
    for rep in sorted({r["round"] for r in runs}):
        bare, sweep = (next(r for r in runs if r["round"] == rep and r["contender"] == c) for c in CONTENDERS)
        fixed = sum(sweep["fixed"].values())
        rows.append({
            "round": str(rep + 1), "bare_s": bare["wall_s"], "attrstream_s": sweep["wall_s"],
            "ratio_to_bare": bare["wall_s"] / sweep["wall_s"], "fixed_s": fixed,
            "ratio_without_fixed": bare["wall_s"] / (sweep["wall_s"] - fixed),
            "bare_batch_ms": bare["batch_ms"], "attrstream_batch_ms": sweep["batch_ms"],
            "batch_ratio": bare["batch_ms"] / sweep["batch_ms"] if sweep["batch_ms"] else None,
        })
    medians = {k: statistics.median(r[k] for r in rows) for k in rows[0] if k != "round" and rows[0][k] is not None}
    return [*rows, {"round": "median", **{k: medians.get(k) for k in rows[0] if k != "round"}}]

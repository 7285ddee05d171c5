"""Where a one-batch sweep's time goes: the real phases of ``sweep()``, timed in place.

Each phase is a function the sweep calls (``pipeline._prepare``, ``plan.probe_model``,
``prepare.open_writer`` through the name ``pipeline`` imported, ``StoreWriter.close``, ...); for
the measurement it is replaced by a wrapper that adds its wall time to the phase, and restored
after. Nothing is estimated: a phase the code no longer has is an error naming it, so the
breakdown follows the engine instead of silently reporting zeros.
"""

from __future__ import annotations

import functools
import importlib
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from _common import rotated
from _sweep_contenders import Case, Setup, timed


@dataclass(frozen=True)
class Phase:
    """A function of the sweep (``module:Owner.attr``) timed as ``label``, nested in ``parent``."""

    label: str
    target: str
    parent: str = "sweep"


TOTAL = "sweep"
PLAN, FINALIZE = "plan_sweep", "finalize_store (dataset_stats)"
PHASES = (
    Phase("_prepare", "attrstream.engine.pipeline:_prepare"),
    Phase(PLAN, "attrstream.engine.pipeline:plan_sweep", "_prepare"),
    Phase("probe_model (shape probe)", "attrstream.engine.plan:probe_model", PLAN),
    Phase("weights_sha256 (weights hash)", "attrstream.engine.plan:weights_sha256", PLAN),
    Phase("open_writer (store creation, lock)", "attrstream.engine.pipeline:open_writer", "_prepare"),
    Phase("_run", "attrstream.engine.pipeline:_run"),
    Phase("IndexedItems.__getitem__ (data loading)", "attrstream.engine.data:IndexedItems.__getitem__", "_run"),
    Phase("thumbnails", "attrstream.engine.loop:thumbnails", "_run"),
    Phase("extract_batch (batch compute)", "attrstream.engine.loop:extract_batch", "_run"),
    Phase("StoreWriter.append (rows into the unit buffer)", "attrstream.engine.store.writer:StoreWriter.append", "_run"),
    Phase("StoreWriter.close (last-unit flush)", "attrstream.engine.store.writer:StoreWriter.close", "_run"),
    Phase("_finish", "attrstream.engine.pipeline:_finish"),
    Phase(FINALIZE, "attrstream.engine.pipeline:finalize_store", "_finish"),
    Phase("consolidate (metadata)", "attrstream.engine.store.finalize:consolidate", FINALIZE),
    Phase("open_run", "attrstream.engine.pipeline:open_run", "_finish"),
)
# What a sweep pays once, whatever its length: before the first batch, the last unit's flush, after.
FIXED = tuple(p for p in PHASES if p.label in ("_prepare", "StoreWriter.close (last-unit flush)", "_finish"))


def _owner(target: str) -> tuple[Any, str]:
    module, _, path = target.partition(":")
    owner: Any = importlib.import_module(module)
    *parents, attr = path.split(".")
    for name in parents:
        owner = getattr(owner, name)
    if not hasattr(owner, attr):
        raise SystemExit(f"fixed-cost phase {target}: the engine has no such function any more; update "
                         f"benchmarks/_fixed_cost.py PHASES")
    return owner, attr


@contextmanager
def timing_phases(phases: tuple[Phase, ...]) -> Iterator[dict[str, float]]:
    """Seconds spent in each phase's function while the block runs (wrappers removed after)."""
    seconds = {p.label: 0.0 for p in phases}
    patched = []
    try:
        for phase in phases:
            owner, attr = _owner(phase.target)
            original = getattr(owner, attr)

            @functools.wraps(original)
            def wrapper(*a, _original=original, _label=phase.label, **kw):
                t0 = time.perf_counter()
                try:
                    return _original(*a, **kw)
                finally:
                    seconds[_label] += time.perf_counter() - t0

            setattr(owner, attr, wrapper)
            patched.append((owner, attr, original))
        yield seconds
    finally:
        for owner, attr, original in reversed(patched):
            setattr(owner, attr, original)


def fixed_cost_job(s: Setup, job: dict[str, Any], scratch: Path) -> dict[str, Any]:
    """Rounds of (bare batch, instrumented one-batch sweep), after one warm-up of each."""
    case = Case(n=s.args.batch_size)
    data = s.dataset(case.n)
    timed(s, "attrstream", case, s.dataset(case.n, seed=1), scratch / "warmup")
    timed(s, "bare", case, s.dataset(case.n, seed=1), scratch / "warmup")
    runs = []
    for rep in range(job["repeats"]):
        for name in rotated(("bare", "attrstream"), rep):
            if name == "bare":
                runs.append({"round": rep, **timed(s, name, case, data, scratch / "out")})
                continue
            with timing_phases(PHASES) as seconds:
                r = timed(s, name, case, data, scratch / "out")
            runs.append({"round": rep, **r, "phases": {TOTAL: r["wall_s"], **seconds}})
    return {"runs": runs, "layers": list(s.layers(case))}

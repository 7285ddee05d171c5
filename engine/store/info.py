"""``attrstream info STORE``: what a store holds, how far it got and how well it compresses."""

from __future__ import annotations

import json
import os
import warnings

import numpy as np
import zarr

from attrstream.engine.store.location import StoreLocation
from attrstream.engine.store.meta import repair_hint
from attrstream.engine.store.reader import Run, open_run
from attrstream.engine.store.verify import describe_damage, missing_objects


def _size(nbytes: int) -> str:
    for unit in ("B", "KiB", "MiB", "GiB"):
        if nbytes < 1024 or unit == "GiB":
            return f"{nbytes:.0f} {unit}" if unit == "B" else f"{nbytes:.1f} {unit}"
        nbytes /= 1024
    raise AssertionError("unreachable")


def _writers(writers: list[dict]) -> str:
    """The runs that wrote units, last three: version, device, host and start (not fingerprinted)."""
    shown = [f"attrstream {w.get('version')} {w.get('device', '?')} {w.get('host')} {w.get('started')}"
             for w in writers[-3:]]
    return "; ".join(shown) + (f" (and {len(writers) - 3} earlier)" if len(writers) > 3 else "") or "-"


def describe_store(path: str | os.PathLike | StoreLocation) -> str:
    """A plain-text report: run config, progress, then every array with its sizes and ratio."""
    run = open_run(path)
    meta, spec = run.meta, run.spec
    done = run.units_done
    lines = [
        f"store     {run.path}",
        f"schema    {meta.get('schema_version')}  attrstream {meta.get('version')}  created {meta.get('created')}",
        "versions  " + "  ".join(f"{k} {v}" for k, v in meta.get("versions", {}).items()),
        f"examples  {spec.n}  unit {spec.unit}  dtype {spec.dtype}  compressor {spec.compressor}",
        f"methods   {', '.join(spec.methods) or '-'}",
        f"layers    {', '.join(run.layers) or '-'}  ({', '.join(spec.layer_methods) or '-'})",
        f"progress  {int(done.sum())}/{len(done)} units done"
        + ("  finalized " + meta["finalized"] if "finalized" in meta else ""),
        *_missing_line(run),
        f"fingerprint {meta.get('fingerprint')}",
        f"writers   {_writers(meta.get('writers', []))}",
        f"config    {json.dumps(spec.config, sort_keys=True)}",
        "",
    ]
    rows = []
    for name, array in sorted(_all_arrays(run.group), key=lambda item: item[0]):
        stored, raw = array.nbytes_stored(), array.nbytes
        ratio = f"{raw / stored:.2f}" if stored else "-"
        rows.append((name, "×".join(map(str, array.shape)), str(array.dtype), _size(stored), _size(raw), ratio))
    header = ("array", "shape", "dtype", "stored", "raw", "ratio")
    widths = [max(len(r[i]) for r in [header, *rows]) for i in range(len(header))]
    for row in [header, *rows]:
        lines.append("  ".join(cell.ljust(w) if i < 3 else cell.rjust(w) for i, (cell, w) in enumerate(zip(row, widths, strict=True))))
    return "\n".join(lines)


def _missing_line(run: Run) -> list[str]:
    """A ``damaged`` line when objects of done units are missing (a listing; ``verify`` reads them all)."""
    missing = missing_objects(run.path, run.spec, np.flatnonzero(run.units_done))
    if not missing:
        return []
    return [f"damaged   objects missing in {describe_damage(missing)}; {repair_hint(run.path)}"]


def _all_arrays(group: zarr.Group) -> list[tuple[str, zarr.Array]]:
    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", message=".*not recognized as a component.*")  # writer lock files
        members = group.members(max_depth=None)
    return [(name, node) for name, node in members if isinstance(node, zarr.Array)]

"""Integrity of a store: which objects of the done units are missing (a listing) or damaged (a full read).

Zarr reads a missing shard object silently as the fill value, and an empty one the same way, so
the existence of every done unit's shard objects is checked by listing (:func:`missing_objects`,
cheap: resume, finalize and ``info`` run it). :func:`verify_store` also reads every shard of
every done unit, whose crc32c checksums (``Crc32cCodec``, on each inner chunk and on the shard
index) catch a corrupted or truncated object. It goes one unit at a time, so memory stays bounded
by one shard whatever the store's size.
"""

from __future__ import annotations

import math
import os
import sys
from collections.abc import Iterable, Sequence
from dataclasses import dataclass

import numpy as np
import zarr

from attrstream.engine.errors import StoreError
from attrstream.engine.store.layout import ArraySpec, example_arrays, shard_key
from attrstream.engine.store.location import StoreLocation, locate, open_group
from attrstream.engine.store.meta import (
    DONE_PATH,
    ROOT_META,
    SWEEP_COMMAND,
    decode_failure,
    load_root_doc,
    looks_like_store,
    read_root_meta,
    repair_hint,
    scan_done,
)
from attrstream.engine.store.spec import RunSpec, UnitGrid


@dataclass(frozen=True)
class Damage:
    """One damaged object: the array (or ``zarr.json``), the unit and its examples, and what is wrong."""

    array: str
    unit: int | None = None
    examples: tuple[int, int] | None = None  # [start, stop)
    reason: str = ""

    def __str__(self) -> str:
        if self.unit is None:
            return f"damaged {self.array}: {self.reason}"
        start, stop = self.examples
        return f"damaged {self.array} unit {self.unit} (examples {start}..{stop - 1}): {self.reason}"


@dataclass(frozen=True)
class JobCheck:
    """What :func:`verify_store` checked of one later job's group (``features/<layer>``, ``metrics``)."""

    group: str
    units: int
    units_done: int
    arrays: int
    command: str  # how a user reruns the job, for the repair hint


@dataclass(frozen=True)
class VerifyReport:
    """What :func:`verify_store` found: every damaged object, and how much was checked (the sweep's
    arrays, then each later job's group)."""

    store: str
    units: int
    units_done: int
    arrays: int  # per-example arrays checked in every done unit
    damaged: tuple[Damage, ...]
    jobs: tuple[JobCheck, ...] = ()

    @property
    def intact(self) -> bool:
        return not self.damaged

    @property
    def root_damaged(self) -> bool:
        """The root metadata is missing or unreadable (nothing else could be checked)."""
        return any(d.array == ROOT_META for d in self.damaged)

    @property
    def damaged_units(self) -> list[int]:
        """The sweep's units with damage (a job's are in :meth:`job_damage`)."""
        return sorted({d.unit for d in self.sweep_damage() if d.unit is not None})

    def job_damage(self, group: str) -> list[Damage]:
        return [d for d in self.damaged if _under(d.array, group)]

    def sweep_damage(self) -> list[Damage]:
        return [d for d in self.damaged if not any(_under(d.array, job.group) for job in self.jobs)]

    def summary(self) -> str:
        """The sweep's line: what was checked, and what to rerun."""
        checked = f"{self.store}: {self.units_done} of {self.units} units done, {self.arrays} arrays each"
        if self.root_damaged:
            return f"{self.store}: root metadata damaged, arrays not checked; rerun the same sweep with --repair"
        damage = self.sweep_damage()
        if not damage:
            return f"{checked}: intact"
        return _damaged_line(checked, damage, "the same sweep")

    def lines(self) -> list[str]:
        """One line per damaged object, one per job, the sweep's summary last (what ``attrstream verify`` prints)."""
        jobs = []
        for job in self.jobs:
            checked = f"{self.store}/{job.group}: {job.units_done} of {job.units} units done, {job.arrays} arrays each"
            damage = self.job_damage(job.group)
            jobs.append(_damaged_line(checked, damage, job.command) if damage else f"{checked}: intact")
        return [*map(str, self.damaged), *jobs, self.summary()]


def _under(path: str, group: str) -> bool:
    return path == group or path.startswith(f"{group}/")


def _damaged_line(checked: str, damage: Sequence[Damage], command: str) -> str:
    units = sorted({d.unit for d in damage if d.unit is not None})
    return (f"{checked}: {len(damage)} damaged object(s) in {len(units)} unit(s) "
            f"{format_units(units)}; rerun {command} with --repair to recompute them")


def format_units(units: Sequence[int], shown: int = 10) -> str:
    listed = ", ".join(map(str, units[:shown]))
    return f"[{listed}{', ...' if len(units) > shown else ''}]"


def _absent(sizes: dict[str, int], key: str) -> str | None:
    size = sizes.get(key)
    if size is None:
        return f"object {key} missing"
    return f"object {key} empty (0 bytes)" if size == 0 else None


def missing_objects(location: StoreLocation, spec: RunSpec, units: Iterable[int],
                    arrays: Sequence[ArraySpec] | None = None) -> list[Damage]:
    """Shard objects of ``units`` that are absent or empty: one listing per array, no reads.

    ``arrays``: the per-example arrays to check (default: the sweep's, :func:`example_arrays`).
    """
    units = [int(u) for u in units]
    if not units:
        return []
    found = []
    for arr in example_arrays(spec) if arrays is None else arrays:
        sizes = location.object_sizes(arr.path)
        for u in units:
            reason = _absent(sizes, arr.shard_key(u))
            if reason:
                found.append(Damage(arr.path, u, spec.unit_range(u), reason))
    return found


def describe_damage(damage: Sequence[Damage], shown: int = 3) -> str:
    """A short one-line account: the units, and the first few damaged objects."""
    units = sorted({d.unit for d in damage if d.unit is not None})
    first = "; ".join(f"{d.array} unit {d.unit}: {d.reason}" for d in damage[:shown])
    return f"units {format_units(units)} ({first}{'; ...' if len(damage) > shown else ''})"


def damaged_read_error(location: StoreLocation, array: str, unit: int, examples: tuple[int, int],
                       reason: str, command: str = SWEEP_COMMAND) -> StoreError:
    """The error a read of a damaged array raises: which array, unit and examples, and what to do
    (rerun ``command``, the job that wrote the array, with --repair)."""
    start, stop = examples
    return StoreError(
        f"Expected intact data in {array} of {location}, got a damaged unit {unit} (examples {start}..{stop - 1}): "
        f"{reason}; {repair_hint(location, command)}."
    )


def read_checked(location: StoreLocation, array: zarr.Array, spec: RunSpec | UnitGrid, rows: slice | np.ndarray,
                 done: np.ndarray | None = None, command: str = SWEEP_COMMAND) -> np.ndarray:
    """``rows`` (a slice, or 1-d non-negative indices) of a per-example array, refusing damage.

    A missing or empty shard object of a unit marked in ``done`` (zarr would read it as the fill
    value) and an object that fails to decode raise :func:`damaged_read_error` for its unit, naming
    ``command``, the job that wrote ``array``.
    """
    if isinstance(rows, slice):
        units = np.unique(np.arange(*rows.indices(spec.n)) // spec.unit)
    else:
        units = np.unique(rows // spec.unit)
    for u in units if done is not None else ():
        if done[u]:
            key = shard_key(array.path, array.ndim, int(u))
            reason = _absent(location.object_sizes(key), key)
            if reason:
                raise damaged_read_error(location, array.path, int(u), spec.unit_range(int(u)), reason, command)
    try:
        return np.asarray(array[rows] if isinstance(rows, slice) else array.get_orthogonal_selection((rows,)))
    except ValueError:  # find the unit that fails
        for u in map(int, units):
            start, stop = spec.unit_range(u)
            try:
                array[start:stop]
            except ValueError as err:
                raise damaged_read_error(location, array.path, u, (start, stop), decode_failure(err), command) from None
        raise


def _root_damage(location: StoreLocation) -> tuple[dict | None, Damage | None]:
    try:
        doc = load_root_doc(location)
    except (OSError, ValueError) as err:
        return None, Damage(ROOT_META, reason=f"root metadata unreadable ({err})")
    if doc is None:
        return None, Damage(ROOT_META, reason="root metadata missing")
    try:
        return read_root_meta(location), None
    except StoreError:
        return None, Damage(ROOT_META, reason="root metadata without the attrstream attributes")


def _marker_damage(location: StoreLocation, group: zarr.Group, spec: RunSpec | UnitGrid, finalized: bool,
                   progress: str) -> tuple[np.ndarray, list[Damage]]:
    done, unreadable = scan_done(group, progress)
    damage = [Damage(progress, u, spec.unit_range(u), f"done marker {reason}") for u, reason in unreadable.items()]
    markers = group[progress]
    sizes = location.object_sizes(progress)
    for u in range(spec.n_units()):
        key = f"{progress}/{markers.metadata.encode_chunk_key((u,))}"
        if u in unreadable:
            continue
        if sizes.get(key) == 0:
            damage.append(Damage(progress, u, spec.unit_range(u), f"done marker {key} empty (0 bytes)"))
        elif finalized and not done[u]:
            damage.append(Damage(progress, u, spec.unit_range(u), "not marked done in a finalized store (marker lost)"))
    return done, sorted(damage, key=lambda d: d.unit)


def _progress_bar(total: int, show: bool | None, desc: str):
    from tqdm.auto import tqdm

    show = sys.stderr.isatty() if show is None else show
    return tqdm(total=total, unit="unit", desc=desc, disable=not show, dynamic_ncols=True, file=sys.stderr)


def verify_store(path: str | os.PathLike | StoreLocation, *, progress: bool | None = None,
                 jobs: bool = True) -> VerifyReport:
    """Check the root metadata, the done markers and every object of every done unit.

    ``jobs``: the later jobs' groups too (:func:`job_groups`), each on its own unit grid; a sweep's
    ``--repair`` checks its own arrays only, since it recomputes nothing else.

    Every shard of a done unit must exist, be non-empty and decode with valid checksums. Raises
    :class:`StoreError` only when ``path`` holds no attrstream store at all; damage is reported.
    ``progress`` shows a bar on stderr (default: when stderr is a terminal).
    """
    location = locate(path)
    if not looks_like_store(location):
        raise StoreError(f"Expected an attrstream store at {location}, found none.")
    meta, root = _root_damage(location)
    if root is not None:
        return VerifyReport(str(location), 0, 0, 0, (root,))
    if meta.get("layout") != "ready":
        raise StoreError(f"Expected a store whose layout is complete at {location}, got one still being created; "
                         "rerun the sweep to create it.")
    spec = RunSpec.from_dict(meta["spec"])
    group = open_group(location, "r", use_consolidated=False)
    arrays = example_arrays(spec)
    done, damage = verify_units(location, group, spec, arrays, DONE_PATH, finalized="finalized" in meta,
                                progress=progress)
    checked = []
    for job in job_groups(group) if jobs else ():
        job_done, job_damage = verify_units(location, group, job.grid, job.arrays, job.progress, finalized=False,
                                            progress=progress)
        damage += job_damage
        checked.append(JobCheck(job.group, job.grid.n_units(), int(job_done.sum()), len(job.arrays), job.command))
    return VerifyReport(str(location), spec.n_units(), int(done.sum()), len(arrays), tuple(damage), tuple(checked))


JOB_MARKERS = "unit_done"  # the name of a later job's done-marker array, within its group
UNKNOWN_JOB_COMMAND = "the same job"  # stores written before jobs recorded their command


def job_command(meta: dict) -> str:
    """How a later job's metadata names the command that reruns (and repairs) it."""
    return meta.get("command", UNKNOWN_JOB_COMMAND)


@dataclass(frozen=True)
class FoundJob:
    """A later job's group as the store describes it: its unit grid, per-example arrays and markers."""

    group: str
    grid: UnitGrid
    arrays: tuple[ArraySpec, ...]
    progress: str
    command: str


def job_groups(root: zarr.Group) -> list[FoundJob]:
    """Every later job's group in the store whose layout is complete, found from the store alone.

    A job's group carries its metadata (``layout: ready`` and a fingerprint) in an attribute, and its
    done markers in an ``unit_done`` array; its per-example arrays are those sharded on the markers'
    unit grid (axis 0 cut into as many shards as there are markers).
    """
    found = []
    for path, node in sorted(root.members(max_depth=None), key=lambda member: member[0]):
        if not isinstance(node, zarr.Group):
            continue
        meta = next((v for v in node.attrs.values()
                     if isinstance(v, dict) and v.get("layout") == "ready" and "fingerprint" in v), None)
        if meta is None:
            continue
        members = {f"{path}/{name}": a for name, a in node.members(max_depth=None) if isinstance(a, zarr.Array)}
        markers = [p for p, a in members.items() if p.rsplit("/", 1)[-1] == JOB_MARKERS and a.ndim == 1]
        if len(markers) != 1:
            continue
        n_units = members[markers[0]].shape[0]
        arrays, grid = [], None
        for p, a in sorted(members.items()):
            shard = a.metadata.chunk_grid.chunk_shape[0] if a.ndim else 0
            if p == markers[0] or not shard or math.ceil(a.shape[0] / shard) != n_units:
                continue
            grid = grid or UnitGrid(a.shape[0], shard)
            if (a.shape[0], shard) == (grid.n, grid.unit):
                arrays.append(ArraySpec(p, str(a.dtype), a.shape, ()))
        if grid is not None:
            found.append(FoundJob(path, grid, tuple(arrays), markers[0], job_command(meta)))
    return found


def verify_units(location: StoreLocation, group: zarr.Group, spec: RunSpec | UnitGrid, arrays: Sequence[ArraySpec],
                 markers: str, *, finalized: bool, progress: bool | None = None) -> tuple[np.ndarray, list[Damage]]:
    """The done units (markers at ``markers``) and every damaged object among them: a marker, or a
    shard of one of ``arrays`` that is missing, empty or fails to decode. ``finalized``: every unit
    must be marked done. Serves the sweep's arrays and any later job's own (evaluation metrics)."""
    done, damage = _marker_damage(location, group, spec, finalized, markers)
    opened = {a.path: group[a.path] for a in arrays}
    sizes = {path: location.object_sizes(path) for path in opened}
    units = np.flatnonzero(done).tolist()
    with _progress_bar(len(units), progress, f"verify {location.name}") as bar:
        for u in units:
            examples = spec.unit_range(u)
            for path, array in opened.items():
                reason = _absent(sizes[path], shard_key(path, array.ndim, u))
                if reason is None:
                    try:
                        array[examples[0]:examples[1]]
                    except ValueError as err:  # crc32c mismatch, or bytes the codecs cannot decode
                        reason = decode_failure(err)
                if reason:
                    damage.append(Damage(path, u, examples, reason))
            bar.update(1)
    return done, damage

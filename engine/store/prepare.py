"""Opening a store for writing: create, resume, or refuse — the one way a writer gets a store.

Nothing is written before the path is known to be either absent, empty, or an attrstream store:
a user's directory is never turned into (or deleted as) a store by mistake. :func:`open_writer`
checks the target, takes the writer lock, prepares the layout and hands lock and group to one
:class:`StoreWriter`, which owns them until it closes.
"""

from __future__ import annotations

import os
import socket
import warnings
from collections.abc import Callable, Mapping, Sequence
from datetime import datetime, timezone
from typing import Any

import numpy as np
import zarr

from attrstream.engine.errors import (
    FingerprintMismatchError,
    StoreError,
    StoreLockedError,
    disk_full_as_error,
)
from attrstream.engine.store.layout import (
    ArraySpec,
    array_specs,
    create_layout,
    example_arrays,
    run_metadata,
    shard_key,
)
from attrstream.engine.store.location import PARTIAL_SUFFIX, NoLock, StoreLocation, locate, open_group
from attrstream.engine.store.lock import WriterLock, is_lock_file
from attrstream.engine.store.meta import (
    DONE_PATH,
    ROOT_META,
    check_schema,
    looks_like_store,
    read_root_meta,
    scan_done,
)
from attrstream.engine.store.spec import RunSpec, spec_differences
from attrstream.engine.store.verify import Damage, VerifyReport, describe_damage, missing_objects
from attrstream.engine.store.writer import StoreWriter
from attrstream.kernels.names import STAT_NAMES


def _check_target(location: StoreLocation) -> dict[str, Any] | None:
    kind = location.kind()
    if kind == "file":
        raise StoreError(f"Expected a directory for the store at {location}, got a file.")
    meta = read_root_meta(location) if kind == "dir" else None
    if meta is None and looks_like_store(location):
        raise StoreError(
            f"Expected root metadata {location}/{ROOT_META}, found none although the store's arrays are there; "
            "rerun the same sweep with --repair to rewrite it."
        )
    if meta is None and kind == "dir":
        # A writer killed before its layout existed leaves only its lock and temp files: not foreign.
        foreign = [name for name in location.children() if not (is_lock_file(name) or name.endswith(PARTIAL_SUFFIX))]
        if foreign:
            shown = ", ".join(foreign[:5]) + (", ..." if len(foreign) > 5 else "")
            raise StoreError(
                f"Expected an attrstream store or an empty directory at {location}, got a directory "
                f"containing {shown}; nothing was written. Choose another output path."
            )
    return meta


def _check_fingerprint(root: StoreLocation, meta: dict[str, Any], spec: RunSpec) -> None:
    diffs = spec_differences(meta["spec"], spec.to_dict())
    if meta.get("fingerprint") != spec.fingerprint() or diffs:
        raise FingerprintMismatchError(
            f"Store {root} was written with a different configuration (expected fingerprint "
            f"{meta.get('fingerprint', '?')[:12]}, got {spec.fingerprint()[:12]}): "
            + "; ".join(diffs or ["(schema change)"])
            + ". Pass --overwrite (overwrite=True) to start over, or choose another output path."
        )


def _check_stat_names(root: StoreLocation, meta: dict[str, Any], spec: RunSpec) -> None:
    """A store of another statistic list (five, written before relevance) cannot take this version's
    units: its ``stats`` arrays have another width. It stays readable; resuming it is refused."""
    stored = tuple(meta.get("stat_names", ()))
    if "stats" in spec.layer_methods and stored != STAT_NAMES:
        raise FingerprintMismatchError(
            f"Store {root} holds the per-channel statistics {', '.join(stored) or '(none recorded)'}, "
            f"this attrstream writes {', '.join(STAT_NAMES)}: its units cannot be resumed. It stays readable; "
            "pass --overwrite (overwrite=True) to start over, or choose another output path."
        )


def _record_writer(group, about: Mapping[str, Any]) -> None:
    """Append this process to the store's ``writers`` list (not fingerprinted: who, where, with what)."""
    from attrstream.engine import __version__

    meta = dict(group.attrs["attrstream"])
    entry = {"version": __version__, "host": socket.gethostname(), "pid": os.getpid(),
             "started": datetime.now(timezone.utc).isoformat(timespec="seconds"), **about}
    group.attrs["attrstream"] = {**meta, "writers": [*meta.get("writers", []), entry]}


def clean_if_alone(root: StoreLocation, lock: WriterLock | NoLock) -> list[str]:
    """The other live writers of ``root``; with none alive, every temp file is a crash leftover: deleted."""
    others = root.other_writers(lock)
    if not others:
        root.clean_partials()
    return others


def _prepare_layout(root: StoreLocation, meta: dict[str, Any] | None, spec: RunSpec, overwrite: bool,
                    lock: WriterLock | NoLock) -> tuple[zarr.Group, dict[str, zarr.Array]]:
    """The root group, and the arrays when they were created just now (else none: the writer opens them)."""
    # Ranks joining a prepared store (prepare=False) never clean: the preparing rank did, before
    # they took their locks.
    others = clean_if_alone(root, lock)
    if meta is None or overwrite or meta.get("layout") != "ready":
        if others:
            raise StoreLockedError(f"Expected no other writer while (re)creating {root}, got live locks {others}.")
        root.clear(keep=lock)
        group = open_group(root, "a", attributes={"attrstream": {"layout": "creating"}})
        return group, create_layout(root, group, spec)
    return open_group(root, "r+", use_consolidated=False), {}


def _rewrite_root_meta(root: StoreLocation, spec: RunSpec) -> None:
    """Write lost root metadata anew from ``spec``, once every array of the layout is found as ``spec`` has it."""
    store = root.store()
    for arr in array_specs(spec):
        try:
            found = zarr.open_array(store, path=arr.path, mode="r", zarr_format=3)
        except (FileNotFoundError, KeyError, ValueError) as err:
            raise StoreError(f"Expected the array {arr.path} in {root} to rewrite its root metadata, got: {err}.") from None
        if found.shape != arr.shape or (arr.dtype != "str" and found.dtype != np.dtype(arr.dtype)):
            raise StoreError(
                f"Expected {arr.path} of shape {arr.shape} and dtype {arr.dtype} (this sweep's configuration) to "
                f"rewrite the root metadata of {root}, got {found.shape} {found.dtype}: the store was written by "
                "another configuration. Pass --overwrite to start over."
            )
    root.delete(ROOT_META)
    open_group(root, "a", attributes={"attrstream": {**run_metadata(spec), "layout": "ready"}})


def done_units(root: StoreLocation, group: zarr.Group, spec: RunSpec, damaged: Sequence[Damage] = (), *,
               arrays: Sequence[ArraySpec] | None = None, progress: str = DONE_PATH) -> np.ndarray:
    """The units marked done (markers at ``progress``) and whole, resetting the others so that they
    are computed again.

    A unit is not whole when a shard object of ``arrays`` (default: the sweep's) is missing or empty
    (one listing per array), its marker is unreadable, or it is among the ``damaged`` that a full
    verify found; its damaged shard objects are deleted, its marker reset, and one warning names
    them all.
    """
    done, unreadable = scan_done(group, progress)
    damage = [Damage(progress, u, spec.unit_range(u), f"done marker {why}") for u, why in unreadable.items()]
    damage += missing_objects(root, spec, np.flatnonzero(done), arrays)
    damage += [d for d in damaged if d.unit is not None]
    damage = list(dict.fromkeys(damage))  # repair's report repeats what the listing finds
    redo = sorted({d.unit for d in damage})
    if not redo:
        return done
    for d in damage:
        if d.array != progress:
            root.delete(shard_key(d.array, group[d.array].ndim, d.unit))
    markers = group[progress]
    for u in redo:
        markers[u] = 0
        done[u] = False
    warnings.warn(f"{root}: recomputing {len(redo)} unit(s) whose objects are missing or damaged: "
                  f"{describe_damage(damage)}", stacklevel=3)
    return done


def open_writer(
    target: str | os.PathLike | StoreLocation,
    spec: RunSpec,
    *,
    overwrite: bool = False,
    prepare: bool = True,
    lock_name: str = "writer",
    share: tuple[int, int] = (0, 1),
    units: Sequence[int] | None = None,
    on_unit_done: Callable[[int, Mapping[str, np.ndarray]], None] | None = None,
    repair: VerifyReport | None = None,
    writer_info: Mapping[str, Any] | None = None,
    break_lock: bool = False,
) -> StoreWriter:
    """A running :class:`StoreWriter` for the units of ``spec`` not yet done.

    ``prepare`` (one process, or rank 0 before its barrier) creates, recreates or validates the
    layout; ``prepare=False`` joins a layout another process prepared. ``share=(rank, world)``
    gives this writer every ``world``-th unit still to do, starting at ``rank``; ``units``
    restricts it further to the listed units. ``writer_info`` (e.g. the device) joins this
    writer's entry in the store's ``writers`` list, which a preparing writer appends to.
    ``break_lock`` takes over a lock another process holds (see :class:`WriterLock`).

    Before it skips a unit marked done, a preparing writer checks by listing that the unit's
    objects exist, and recomputes the units whose objects are missing. ``repair`` (the report of
    :func:`~attrstream.engine.store.verify.verify_store`) adds every unit it found damaged, and
    rewrites lost root metadata from ``spec``.
    """
    root = locate(target)
    if repair is not None and repair.root_damaged and prepare and not overwrite:
        lock = root.lock(lock_name)
        lock.acquire()
        try:
            _rewrite_root_meta(root, spec)
        finally:
            lock.release()
    meta = _check_target(root)
    if meta is not None and not overwrite and meta.get("layout") == "ready":
        check_schema(root, meta)
        _check_fingerprint(root, meta, spec)
        _check_stat_names(root, meta, spec)
    if not prepare and (meta is None or meta.get("layout") != "ready"):
        raise StoreError(f"Expected a prepared store layout at {root} (prepare=False), found none.")
    with disk_full_as_error(root):  # creating the layout, writing the lock or the metadata
        if prepare:
            root.make_dir()
        lock = root.lock(lock_name, break_lock=break_lock)
        lock.acquire()
        try:
            created: dict[str, zarr.Array] = {}
            if prepare:
                group, created = _prepare_layout(root, meta, spec, overwrite, lock)
                _record_writer(group, writer_info or {})
                done = done_units(root, group, spec, () if overwrite or repair is None else repair.damaged)
            else:
                group = open_group(root, "r+", use_consolidated=False)
                done = scan_done(group)[0]
            wanted = range(spec.n_units()) if units is None else sorted(set(int(u) for u in units))
            bad = [u for u in wanted if not 0 <= u < spec.n_units()]
            if bad:
                raise StoreError(f"Expected unit indices in [0, {spec.n_units()}), got {bad}.")
            rank, world = share
            todo = [u for u in range(spec.n_units()) if not done[u]][rank::world]
            return StoreWriter(root, group, spec, lock, [u for u in todo if u in set(wanted)],
                               arrays=example_arrays(spec), units_done=int(done.sum()), on_unit_done=on_unit_done,
                               opened=created)
        except BaseException:
            lock.release()
            raise

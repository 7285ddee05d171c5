"""A later job's own arrays in a finished store: evaluation metrics beside the sweep's maps.

Such a job writes its per-example arrays into one group of the store, on the sweep's unit grid,
with its own done markers and its own description in the group's attributes (fingerprinted). It
follows the sweep's rules: one writer (its own lock name), a rerun resumes the units not marked
done after checking that the done ones' objects exist, ``repair`` reads every done unit and
recomputes the damaged ones, and another configuration is refused, naming what changed, unless
``overwrite``, which recreates the job's group alone. The sweep's arrays are only read.
"""

from __future__ import annotations

import hashlib
import json
import os
import sys
from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import datetime, timezone
from typing import Any

import zarr

from attrstream.engine.errors import FingerprintMismatchError, disk_full_as_error
from attrstream.engine.store.finalize import consolidate
from attrstream.engine.store.layout import ArraySpec, array_metadata, create_arrays
from attrstream.engine.store.location import StoreLocation, locate, open_group
from attrstream.engine.store.prepare import clean_if_alone, done_units
from attrstream.engine.store.spec import RunSpec, dict_differences
from attrstream.engine.store.verify import verify_units
from attrstream.engine.store.writer import StoreWriter


@dataclass(frozen=True)
class JobLayout:
    """Where a job's results go: its group, the attribute key of its metadata, its per-example arrays
    (paths from the root), its done markers, and the description that decides its numbers."""

    group: str
    key: str
    arrays: tuple[ArraySpec, ...]
    progress: str
    description: Mapping[str, Any] = field(default_factory=dict)
    command: str = "the same command"  # how a user reruns the job, for the refusal message

    def fingerprint(self) -> str:
        canonical = json.dumps(self.description, sort_keys=True, separators=(",", ":"))
        return hashlib.sha256(canonical.encode()).hexdigest()

    def meta(self, group: zarr.Group) -> dict[str, Any] | None:
        """The job's metadata in an open store's root group, None when the job never started there."""
        return dict(group[self.group].attrs.get(self.key, {})) if self.group in group else None


def _create(location: StoreLocation, root: zarr.Group, spec: RunSpec, job: JobLayout) -> dict[str, zarr.Array]:
    """The job's group anew: arrays first, then the metadata that marks the layout whole; returns the arrays."""
    if job.group in root:
        del root[job.group]
    group = root.create_group(job.group, attributes={job.key: {"layout": "creating"}})
    n_units = spec.n_units()
    arrays = (*job.arrays, ArraySpec(job.progress, "uint8", (n_units,), ("unit",), per_example=False, chunks=(1,)))
    created = create_arrays(location, group, {arr.path: array_metadata(spec, arr) for arr in arrays})
    group.attrs[job.key] = {"layout": "ready", "description": dict(job.description),
                            "fingerprint": job.fingerprint(), "command": job.command,
                            "created": datetime.now(timezone.utc).isoformat(timespec="seconds")}
    return created


def _check_fingerprint(location: StoreLocation, found: Mapping[str, Any], job: JobLayout) -> None:
    if found.get("fingerprint") == job.fingerprint():
        return
    changed = dict_differences(found.get("description", {}), job.description) or ["(format change)"]
    raise FingerprintMismatchError(
        f"{location}/{job.group} was written with another configuration: {'; '.join(changed)}. "
        f"Pass --overwrite (overwrite=True) to recompute {job.group}/ with the new one, or rerun {job.command}."
    )


def open_job_writer(target: str | os.PathLike | StoreLocation, spec: RunSpec, job: JobLayout, *,
                    overwrite: bool = False, repair: bool = False, break_lock: bool = False,
                    progress: bool = False) -> StoreWriter:
    """A running :class:`StoreWriter` for the job's units not yet done, in the finished store ``target``.

    ``repair`` first reads every done unit of the job's arrays (checksums) and recomputes the
    damaged ones, naming them on stderr; ``progress`` shows that read's bar.
    """
    location = locate(target)
    with disk_full_as_error(location):
        lock = location.lock(job.group, break_lock=break_lock)
        lock.acquire()
        try:
            clean_if_alone(location, lock)
            root = open_group(location, "r+", use_consolidated=False)
            found = job.meta(root)
            created: dict[str, zarr.Array] = {}
            if found is not None and found.get("layout") == "ready" and not overwrite:
                _check_fingerprint(location, found, job)
            else:
                created = _create(location, root, spec, job)
            damaged = []
            if repair:
                damaged = verify_units(location, root, spec, job.arrays, job.progress, finalized=False,
                                       progress=progress)[1]
                for damage in damaged:
                    print(f"attrstream: {damage}", file=sys.stderr)
            done = done_units(location, root, spec, damaged, arrays=job.arrays, progress=job.progress)
            todo = [u for u in range(spec.n_units()) if not done[u]]
            return StoreWriter(location, root, spec, lock, todo, arrays=job.arrays, progress=job.progress,
                               units_done=int(done.sum()), opened=created)
        except BaseException:
            lock.release()
            raise


def annotate_job(target: str | os.PathLike | StoreLocation, job_group: str, attributes: Mapping[str, Any], *,
                 break_lock: bool = False) -> None:
    """Set attributes of a job's group (its data-set summary once every unit is done, the demo's
    localization table) under the job's lock, then consolidate the store's metadata again, so that a
    plain ``zarr.open_group(path, mode="r")`` (and :func:`open_run`) sees the job's arrays."""
    location = locate(target)
    with disk_full_as_error(location, f"recording {job_group}"):
        lock = location.lock(job_group, break_lock=break_lock)
        lock.acquire()
        try:
            open_group(location, "r+", use_consolidated=False)[job_group].attrs.update(dict(attributes))
            consolidate(location)
        finally:
            lock.release()

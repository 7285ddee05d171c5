"""Opening a store for writing: create, resume, or refuse (DESIGN §2 "Resume").

Nothing is written before the path is known to be either absent, empty, or an attrstream store:
a user's directory is never turned into (or deleted as) a store by mistake.
"""

from __future__ import annotations

import json
import os
from dataclasses import dataclass
from typing import Any

import numpy as np
import zarr

from attrstream.engine.errors import FingerprintMismatchError, StoreError, StoreLockedError
from attrstream.engine.store.layout import create_layout
from attrstream.engine.store.location import NoLock, StoreLocation, locate, open_group
from attrstream.engine.store.lock import LOCK_SUFFIX, WriterLock
from attrstream.engine.store.spec import RunSpec, spec_differences


def read_root_meta(location: StoreLocation) -> dict[str, Any] | None:
    """``attributes["attrstream"]`` of the store at ``location``; None when there is no root group."""
    try:
        raw = location.read("zarr.json")
        doc = None if raw is None else json.loads(raw)
    except (OSError, ValueError) as err:
        raise StoreError(f"Expected an attrstream store at {location}, but its zarr.json is unreadable: {err}") from None
    if raw is None:
        return None
    meta = doc.get("attributes", {}).get("attrstream") if isinstance(doc, dict) else None
    if not isinstance(meta, dict):
        raise StoreError(
            f"Expected an attrstream store at {location}, got a Zarr group without attrstream metadata; "
            "choose another output path."
        )
    return meta


def _check_target(location: StoreLocation) -> dict[str, Any] | None:
    kind = location.kind()
    if kind == "file":
        raise StoreError(f"Expected a directory for the store at {location}, got a file.")
    meta = read_root_meta(location) if kind == "dir" else None
    if meta is None and kind == "dir":
        foreign = [name for name in location.children() if not name.endswith(LOCK_SUFFIX)]
        if foreign:
            shown = ", ".join(foreign[:5]) + (", ..." if len(foreign) > 5 else "")
            raise StoreError(
                f"Expected an attrstream store or an empty directory at {location}, got a directory "
                f"containing {shown}; nothing was written. Choose another output path."
            )
    return meta


def read_done(group: zarr.Group) -> np.ndarray:
    """``progress/unit_done`` as a bool array."""
    return np.asarray(group["progress/unit_done"][:]).astype(bool)


@dataclass
class OpenedStore:
    group: zarr.Group
    lock: WriterLock | NoLock
    done: np.ndarray


def open_for_writing(
    target: str | os.PathLike | StoreLocation, spec: RunSpec, *, overwrite: bool, create: bool, lock_name: str
) -> OpenedStore:
    """Check the target, take the lock, then create / recreate / resume the layout."""
    root = locate(target)
    meta = _check_target(root)
    if not create and meta is None:
        raise StoreError(f"Expected an existing attrstream store at {root} (create=False), found none.")
    if meta is not None and not overwrite and meta.get("layout") == "ready":
        diffs = spec_differences(meta["spec"], spec.to_dict())
        if meta.get("fingerprint") != spec.fingerprint() or diffs:
            raise FingerprintMismatchError(
                f"Store {root} was written with a different configuration (expected fingerprint "
                f"{meta.get('fingerprint', '?')[:12]}, got {spec.fingerprint()[:12]}): "
                + "; ".join(diffs or ["(schema change)"])
                + ". Pass --overwrite (overwrite=True) to start over, or choose another output path."
            )
    if create:
        root.make_dir()
    lock = root.lock(lock_name)
    lock.acquire()
    try:
        others = root.other_writers(lock)
        if create and not others:
            # The creating writer (rank 0 before its barrier) and no other writer alive: every temp
            # file is a crash leftover. Ranks joining with create=False never clean.
            root.clean_partials()
        fresh = meta is None or overwrite or meta.get("layout") != "ready"
        if fresh and not create:
            raise StoreError(f"Expected a complete store layout at {root} (create=False), found none.")
        if fresh and others:
            raise StoreLockedError(f"Expected no other writer while (re)creating {root}, got live locks {others}.")
        if fresh:
            root.clear(keep=lock)
            group = open_group(root, "a", attributes={"attrstream": {"layout": "creating"}})
            create_layout(group, spec)
        else:
            group = open_group(root, "r+", use_consolidated=False)
        return OpenedStore(group, lock, read_done(group))
    except BaseException:
        lock.release()
        raise

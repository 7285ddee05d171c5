"""Opening a store for writing: create, resume, or refuse (DESIGN §2 "Resume").

Nothing is written before the path is known to be either absent, empty, or an attrstream store:
a user's directory is never turned into (or deleted as) a store by mistake.
"""

from __future__ import annotations

import json
import shutil
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import zarr

from attrstream.engine.errors import FingerprintMismatchError, StoreError, StoreLockedError
from attrstream.engine.store.layout import create_layout
from attrstream.engine.store.lock import LOCK_SUFFIX, WriterLock, live_locks
from attrstream.engine.store.spec import RunSpec, spec_differences

PARTIAL_SUFFIX = ".partial"  # zarr's LocalStore writes <key>.<uuid>.partial, then renames


def read_root_meta(root: Path) -> dict[str, Any] | None:
    """``attributes["attrstream"]`` of the store at ``root``; None when there is no root group."""
    meta_file = root / "zarr.json"
    if not meta_file.is_file():
        return None
    try:
        doc = json.loads(meta_file.read_text())
    except (OSError, ValueError) as err:
        raise StoreError(f"Expected an attrstream store at {root}, but {meta_file} is unreadable: {err}") from None
    meta = doc.get("attributes", {}).get("attrstream") if isinstance(doc, dict) else None
    if not isinstance(meta, dict):
        raise StoreError(
            f"Expected an attrstream store at {root}, got a Zarr group without attrstream metadata; "
            "choose another output path."
        )
    return meta


def _check_target(root: Path) -> dict[str, Any] | None:
    if root.exists() and not root.is_dir():
        raise StoreError(f"Expected a directory for the store at {root}, got a file.")
    meta = read_root_meta(root) if root.is_dir() else None
    if meta is None and root.is_dir():
        foreign = sorted(p.name for p in root.iterdir() if not p.name.endswith(LOCK_SUFFIX))
        if foreign:
            shown = ", ".join(foreign[:5]) + (", ..." if len(foreign) > 5 else "")
            raise StoreError(
                f"Expected an attrstream store or an empty directory at {root}, got a directory "
                f"containing {shown}; nothing was written. Choose another output path."
            )
    return meta


def _make_dir(root: Path) -> None:
    try:
        root.mkdir(parents=True, exist_ok=True)
        probe = root / f".write-probe{PARTIAL_SUFFIX}"
        probe.write_bytes(b"")
        probe.unlink()
    except OSError as err:
        raise StoreError(f"Expected a writable store path, got {root}: {err.strerror or err}.") from None


def clean_partials(root: Path) -> int:
    """Delete temp files a killed writer left behind; returns how many."""
    leftovers = list(root.rglob(f"*{PARTIAL_SUFFIX}"))
    for path in leftovers:
        path.unlink(missing_ok=True)
    return len(leftovers)


def _clear(root: Path, keep: Path) -> None:
    for child in root.iterdir():
        if child == keep:
            continue
        if child.is_dir() and not child.is_symlink():
            shutil.rmtree(child)
        else:
            child.unlink()


def read_done(group: zarr.Group) -> np.ndarray:
    """``progress/unit_done`` as a bool array."""
    return np.asarray(group["progress/unit_done"][:]).astype(bool)


@dataclass
class OpenedStore:
    group: zarr.Group
    lock: WriterLock
    done: np.ndarray


def open_for_writing(path: Path, spec: RunSpec, *, overwrite: bool, create: bool, lock_name: str) -> OpenedStore:
    """Check the target, take the lock, then create / recreate / resume the layout."""
    root = Path(path)
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
        _make_dir(root)
    lock = WriterLock(root, lock_name)
    lock.acquire()
    try:
        if create and all(p == lock.path for p in live_locks(root)):
            # The creating writer (rank 0 before its barrier) and no other writer alive: every temp
            # file is a crash leftover. Ranks joining with create=False never clean.
            clean_partials(root)
        fresh = meta is None or overwrite or meta.get("layout") != "ready"
        if fresh and not create:
            raise StoreError(f"Expected a complete store layout at {root} (create=False), found none.")
        others = [p.name for p in live_locks(root) if p != lock.path]
        if fresh and others:
            raise StoreLockedError(f"Expected no other writer while (re)creating {root}, got live locks {others}.")
        if fresh:
            _clear(root, keep=lock.path)
            group = zarr.open_group(root, mode="a", zarr_format=3,
                                    attributes={"attrstream": {"layout": "creating"}})
            create_layout(group, spec)
        else:
            group = zarr.open_group(root, mode="r+", zarr_format=3, use_consolidated=False)
        return OpenedStore(group, lock, read_done(group))
    except BaseException:
        lock.release()
        raise

"""Store metadata read by every entry point: the root attributes and the units marked done.

Readers import only this (never the code that creates or resumes a store).
"""

from __future__ import annotations

import json
from typing import Any

import numpy as np
import zarr

from attrstream.engine.errors import StoreError
from attrstream.engine.store.location import StoreLocation
from attrstream.engine.store.spec import SCHEMA_VERSION

ROOT_META = "zarr.json"
DONE_PATH = "progress/unit_done"
SWEEP_COMMAND = "the sweep"  # how the repair hint names the job that wrote the sweep's own arrays


def repair_hint(store: object, command: str = SWEEP_COMMAND) -> str:
    """What to do about damage found in ``store``: list it, then rerun the job that wrote it (``command``,
    as a later job records it in its metadata) with --repair."""
    return f"run `attrstream verify {store}` to list the damage, and rerun {command} with --repair to recompute it"


ROOT_REPAIR_HINT = "if it is an attrstream store, rerun the same sweep with --repair to rewrite it"


def looks_like_store(location: StoreLocation) -> bool:
    """Whether ``location`` holds an attrstream layout, even one whose root metadata is lost."""
    return location.kind() == "dir" and bool(
        location.read(ROOT_META) is not None or location.object_sizes(f"{DONE_PATH}/{ROOT_META}")
    )


def load_root_doc(location: StoreLocation) -> Any:
    """The parsed root ``zarr.json``, None when absent (OSError or ValueError when unreadable)."""
    raw = location.read(ROOT_META)
    return None if raw is None else json.loads(raw)


def read_root_meta(location: StoreLocation) -> dict[str, Any] | None:
    """``attributes["attrstream"]`` of the store at ``location``; None when there is no root group."""
    try:
        doc = load_root_doc(location)
    except (OSError, ValueError) as err:
        raise StoreError(
            f"Expected readable root metadata {location}/{ROOT_META}, got an unreadable file ({err}); "
            f"{ROOT_REPAIR_HINT}."
        ) from None
    if doc is None:
        return None
    meta = doc.get("attributes", {}).get("attrstream") if isinstance(doc, dict) else None
    if not isinstance(meta, dict):
        raise StoreError(
            f"Expected an attrstream store at {location}, got a Zarr group without attrstream metadata; "
            "choose another output path."
        )
    return meta


def read_ready_meta(location: StoreLocation) -> dict[str, Any]:
    """The root metadata of a store whose layout is complete, else a :class:`StoreError`."""
    meta = read_root_meta(location) if location.kind() == "dir" else None
    if meta is None and looks_like_store(location):
        raise StoreError(f"Expected root metadata {location}/{ROOT_META}, found none; {ROOT_REPAIR_HINT}.")
    if meta is None or meta.get("layout") != "ready":
        raise StoreError(f"Expected an attrstream store at {location}, found none.")
    check_schema(location, meta)
    return meta


def check_schema(location: StoreLocation, meta: dict[str, Any]) -> None:
    """Refuse a store of another format version: the one difference in versions a store cannot absorb."""
    from attrstream.engine import __version__

    found = meta.get("schema_version")
    if found != SCHEMA_VERSION:
        raise StoreError(
            f"Store {location} is in store format {found}; attrstream {__version__} reads and writes format "
            f"{SCHEMA_VERSION}. Use the attrstream release that wrote it, or rewrite it with --overwrite."
        )


def decode_failure(err: ValueError) -> str:
    """What a failed zarr read of stored bytes means, in a few words."""
    return "checksum mismatch (crc32c)" if "checksum" in str(err) else f"undecodable ({err})"


def scan_done(group: zarr.Group, progress: str = DONE_PATH) -> tuple[np.ndarray, dict[int, str]]:
    """The done markers at ``progress`` (a sweep's ``progress/unit_done``, or a later job's own) as
    bools, and the units whose marker is unreadable (read as not done).

    One read of the whole array; only when that fails is each unit's chunk read on its own.
    """
    markers = group[progress]
    try:
        return np.asarray(markers[:]).astype(bool), {}
    except ValueError:  # a chunk fails its checksum
        pass
    done, damaged = np.zeros(markers.shape[0], dtype=bool), {}
    for u in range(len(done)):
        try:
            done[u] = bool(markers[u])
        except ValueError as err:
            damaged[u] = decode_failure(err)
    return done, damaged


def read_done(group: zarr.Group, location: StoreLocation, progress: str = DONE_PATH,
              command: str = SWEEP_COMMAND) -> np.ndarray:
    """The done markers at ``progress`` as a bool array; a damaged marker is a :class:`StoreError` naming its
    units and ``command``, the job to rerun with --repair."""
    done, damaged = scan_done(group, progress)
    if damaged:
        raise StoreError(
            f"Expected readable unit markers in {location}/{progress}, got damaged ones for units "
            f"{sorted(damaged)}: {repair_hint(location, command)}."
        )
    return done

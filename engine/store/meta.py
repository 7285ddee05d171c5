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


def read_ready_meta(location: StoreLocation) -> dict[str, Any]:
    """The root metadata of a store whose layout is complete, else a :class:`StoreError`."""
    meta = read_root_meta(location) if location.kind() == "dir" else None
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


def read_done(group: zarr.Group) -> np.ndarray:
    """``progress/unit_done`` as a bool array."""
    return np.asarray(group["progress/unit_done"][:]).astype(bool)

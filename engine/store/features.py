"""Feature visualizations in a store: ``features/<layer>/``, one row per optimized channel.

``attrstream features`` writes them, into a sweep's store (same model) or a new one, as a job of
its own (:mod:`~attrstream.engine.store.job`): the example axis of these arrays is the list of
optimized channels (``channel`` holds their indices), cut into units of channels with their own
done markers, so that a killed job resumes like a sweep. This module holds the layout and the
reader; it imports no code that creates or resumes a store.

    features/<layer>/channel     int64   [K]                     the channel each row optimized (coordinate)
    features/<layer>/input       float16 [K, 3, S, S]            the optimized model input (normalized)
    features/<layer>/image       uint8   [K, S, S, 3]            its RGB pixels, for display
    features/<layer>/activation  float32 [K]                     the channel's mean activation for `input`
    features/<layer>/curve       float32 [K, ceil(steps / 16)]   the objective during optimization, means of 16 steps
    features/<layer>/unit_done   uint8   [ceil(K / unit)]        the job's done markers
"""

from __future__ import annotations

import math
from typing import Any

import numpy as np
import zarr

from attrstream.engine.errors import StoreError, close_matches
from attrstream.engine.store.layout import ArraySpec
from attrstream.engine.store.location import StoreLocation, open_group
from attrstream.engine.store.meta import read_done
from attrstream.engine.store.spec import UnitGrid
from attrstream.engine.store.verify import job_command, read_checked

FEATURES_GROUP = "features"
FEATURES_KEY = "attrstream_features"  # the group attribute holding the job's description and fingerprint
CURVE_EVERY = 16  # optimization steps averaged into one point of `curve`


def features_group(layer: str) -> str:
    return f"{FEATURES_GROUP}/{layer}"


def progress_path(layer: str) -> str:
    return f"{features_group(layer)}/unit_done"


def curve_points(steps: int) -> int:
    """Points of the stored optimization curve: one per ``CURVE_EVERY`` steps, the last block maybe short."""
    return math.ceil(steps / CURVE_EVERY)


def feature_arrays(layer: str, n: int, size: int, steps: int) -> tuple[ArraySpec, ...]:
    """The per-channel arrays of ``features/<layer>`` (axis 0: the optimized channels)."""
    g = features_group(layer)
    return (
        ArraySpec(f"{g}/channel", "int64", (n,), ("channel",)),
        ArraySpec(f"{g}/input", "float16", (n, 3, size, size), ("channel", "color", "y", "x")),
        ArraySpec(f"{g}/image", "uint8", (n, size, size, 3), ("channel", "y", "x", "rgb")),
        ArraySpec(f"{g}/activation", "float32", (n,), ("channel",)),
        ArraySpec(f"{g}/curve", "float32", (n, curve_points(steps)), ("channel", "checkpoint")),
    )


def _ready(group: zarr.Group) -> dict[str, Any] | None:
    meta = group.attrs.get(FEATURES_KEY)
    return dict(meta) if isinstance(meta, dict) and meta.get("layout") == "ready" else None


def feature_layers(location: StoreLocation) -> list[str]:
    """The layers with a ``features/<layer>`` group whose layout is complete, sorted."""
    root = open_group(location, "r", use_consolidated=False)  # a job adds groups after consolidation
    if FEATURES_GROUP not in root:
        return []
    return sorted(name for name, group in root[FEATURES_GROUP].groups() if _ready(group) is not None)


def read_features(location: StoreLocation, layer: str) -> dict[str, Any]:
    """The rows of ``features/<layer>`` in finished units: ``channel``, ``input``, ``image``,
    ``activation``, ``curve`` (numpy, as stored), and ``settings``, the job's description.

    Unfinished units are left out (their rows hold fill values), so a running or killed job reads
    as the channels done so far.
    """
    layers = feature_layers(location)
    if layer not in layers:
        raise StoreError(f"Expected a layer with feature visualizations in {location} ({', '.join(layers) or 'none'}), "
                         f"got {layer!r}.{close_matches(layer, layers)}")
    root = open_group(location, "r", use_consolidated=False)
    group = root[features_group(layer)]
    meta = _ready(group)
    settings, command = meta["description"], job_command(meta)
    grid = UnitGrid(int(group["channel"].shape[0]), int(settings["unit"]))
    done = read_done(root, location, progress_path(layer), command)
    rows = np.concatenate([np.arange(*grid.unit_range(int(u))) for u in np.flatnonzero(done)] or [np.empty(0, np.int64)])
    out: dict[str, Any] = {name: read_checked(location, group[name], grid, rows.astype(np.int64), done, command)
                           for name in ("channel", "input", "image", "activation", "curve")}
    out["settings"] = settings
    return out

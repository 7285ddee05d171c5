"""The array list of a store (format :data:`SCHEMA_VERSION`), derived from a :class:`RunSpec` in one place.

The writer's expected keys, the layout creation, the reader and ``describe_store`` all read this
list, so a new array is added here once.
"""

from __future__ import annotations

import asyncio
import math
import sys
from dataclasses import dataclass, field
from datetime import datetime, timezone
from importlib import metadata as importlib_metadata
from typing import Any

import numpy as np
import zarr
import zarr.api.asynchronous
from zarr.codecs import BloscCodec, Crc32cCodec
from zarr.core.sync import sync

from attrstream.engine.store.spec import SCHEMA_VERSION, RunSpec
from attrstream.kernels.names import STAT_NAMES

# Not stored in the array metadata: every handle that writes must carry it (see StoreWriter).
WRITE_CONFIG = {"write_empty_chunks": True}
CHUNK_TARGET_BYTES = 4 << 20  # inner chunks of at most ~4 MB (at least one example)
STORAGE_NOTE = (
    f"attrstream store format {SCHEMA_VERSION}. Maps (attributions/<m>, layers/<l>/grad_x_act, "
    "layers/<l>/grad_cam) are stored as map / scale in the spec dtype (float16 or float32) with a "
    "float32 per-example scale (max |map|) in <array>_scale: map = stored * scale. "
    "progress/unit_done[u] = 1 once every array of unit u (spec.unit examples) is written."
)


@dataclass(frozen=True)
class ArraySpec:
    """One array of the layout: path relative to the root, dtype, shape and dimension names."""

    path: str
    dtype: str
    shape: tuple[int, ...]
    dims: tuple[str, ...]
    per_example: bool = True  # axis 0 is the example axis, sharded by unit and fed by append
    attrs: dict[str, Any] = field(default_factory=dict)

    @property
    def row_shape(self) -> tuple[int, ...]:
        return self.shape[1:]


def _map_arrays(prefix: str, spec: RunSpec, hw: tuple[int, int], dims: tuple[str, str]) -> list[ArraySpec]:
    n = spec.n
    return [
        ArraySpec(prefix, spec.dtype, (n, *hw), ("example", *dims), attrs={"scale": f"{prefix}_scale"}),
        ArraySpec(f"{prefix}_scale", "float32", (n,), ("example",), attrs={"map": prefix}),
    ]


def array_specs(spec: RunSpec) -> list[ArraySpec]:
    """Every array of a store for ``spec``, per-example arrays first, in a stable order."""
    n, (_, height, width) = spec.n, spec.input_shape
    arrays = [
        ArraySpec("inputs/index", "int64", (n,), ("example",)),
        ArraySpec("inputs/label", "int64", (n,), ("example",)),
        ArraySpec("inputs/thumbnail", "uint8", (n, *spec.thumb_size, 3), ("example", "thumb_y", "thumb_x", "rgb")),
        ArraySpec("inputs/skipped", "uint8", (n,), ("example",)),
    ]
    if spec.has_mask:
        arrays.append(ArraySpec("inputs/mask", "uint8", (n, height, width), ("example", "y", "x")))
    if spec.topk:
        arrays += [
            ArraySpec("outputs/topk_index", "int64", (n, spec.topk), ("example", "k")),
            ArraySpec("outputs/topk_prob", "float32", (n, spec.topk), ("example", "k")),
        ]
    else:
        # float32: random-init logits reach 1e12 (older stores hold float16; the reader upcasts them)
        arrays.append(ArraySpec("outputs/logits", "float32", (n, spec.num_classes), ("example", "class")))
    arrays += [
        ArraySpec("outputs/pred", "int64", (n,), ("example",)),
        ArraySpec("outputs/target", "int64", (n,), ("example",)),
        ArraySpec("outputs/score", "float32", (n,), ("example",)),
    ]
    for method in spec.methods:
        arrays += _map_arrays(f"attributions/{method}", spec, (height, width), ("y", "x"))
    for layer in spec.layers:
        group = f"layers/{layer.name}"
        if "stats" in spec.layer_methods:
            arrays.append(
                ArraySpec(f"{group}/stats", "float32", (n, layer.channels, len(STAT_NAMES)),
                          ("example", "channel", "stat"))
            )
        for method in ("grad_x_act", "grad_cam"):
            if method in spec.layer_methods and layer.map_shape is not None:
                arrays += _map_arrays(f"{group}/{method}", spec, layer.map_shape, ("y", "x"))
    arrays.append(ArraySpec("progress/unit_done", "uint8", (spec.n_units(),), ("unit",), per_example=False))
    for layer in spec.layers:
        if "stats" in spec.layer_methods:
            arrays.append(ArraySpec(f"layers/{layer.name}/stat", "str", (len(STAT_NAMES),), ("stat",),
                                    per_example=False))
    return arrays


def example_arrays(spec: RunSpec) -> list[ArraySpec]:
    """The arrays :meth:`StoreWriter.append` expects, one key per array."""
    return [a for a in array_specs(spec) if a.per_example]


def inner_chunk_rows(row_bytes: int, unit: int) -> int:
    """Largest divisor of ``unit`` whose chunk stays under the chunk target (at least 1 row)."""
    best = 1
    for rows in range(1, unit + 1):
        if unit % rows == 0 and rows * row_bytes <= CHUNK_TARGET_BYTES:
            best = rows
    return best


def compressors_for(spec: RunSpec, dtype: np.dtype) -> tuple[BloscCodec, Crc32cCodec]:
    """Blosc then crc32c (last, so it checks the bytes on disk).

    Bitshuffle: on float16 maps it compresses like byte shuffle at ~1.7x the speed here; zstd at
    level 1: ~6x faster than level 5 for ~7% larger output (benchmarks/bench_store.py).
    """
    clevel = 5 if spec.compressor == "lz4" else 1
    return BloscCodec(cname=spec.compressor, clevel=clevel, shuffle="bitshuffle", typesize=dtype.itemsize), Crc32cCodec()


def _fill_value(dtype: str) -> Any:
    # Unwritten rows of an unfinished store read as NaN (floats), never as plausible values.
    return np.nan if dtype.startswith("float") else 0


def array_options(spec: RunSpec, arr: ArraySpec) -> dict[str, Any]:
    """``create_array`` arguments of one array of the layout: sharded by unit along the example
    axis, Blosc + crc32c."""
    if arr.dtype == "str":
        return {"shape": arr.shape, "dtype": str, "dimension_names": arr.dims}
    dtype = np.dtype(arr.dtype)
    options: dict[str, Any] = {
        "shape": arr.shape,
        "dtype": dtype,
        "compressors": compressors_for(spec, dtype),
        "dimension_names": arr.dims,
        "fill_value": _fill_value(arr.dtype),
        "attributes": arr.attrs,
        "config": WRITE_CONFIG,
    }
    if arr.per_example:
        row_bytes = dtype.itemsize * math.prod(arr.row_shape)
        rows = inner_chunk_rows(row_bytes, spec.unit)
        options["chunks"] = (rows, *arr.row_shape)
        options["shards"] = (spec.unit, *arr.row_shape)
    else:
        options["chunks"] = (1,)  # progress/unit_done: one object per unit, never shared by two ranks
    return options


def create_arrays(group: zarr.Group, arrays: dict[str, dict[str, Any]]) -> dict[str, zarr.Array]:
    """Create the arrays ``{path: create_array options}`` under ``group`` concurrently: one
    round of metadata writes instead of one per array (a store has dozens; see :func:`create_layout`)."""
    async def create() -> list[zarr.AsyncArray]:
        return await asyncio.gather(*(
            zarr.api.asynchronous.create_array(group.store, name=f"{group.path}/{path}".strip("/"), **options)
            for path, options in arrays.items()
        ))

    return {path: zarr.Array(created) for path, created in zip(arrays, sync(create()), strict=True)}


def _version(dist: str) -> str | None:
    loaded = sys.modules.get(dist)  # cheaper than reading the distribution's metadata
    if loaded is not None and isinstance(getattr(loaded, "__version__", None), str):
        return loaded.__version__
    try:
        return importlib_metadata.version(dist)
    except importlib_metadata.PackageNotFoundError:
        return None


def run_metadata(spec: RunSpec) -> dict[str, Any]:
    """The root ``attributes["attrstream"]`` of a new store."""
    from attrstream.engine import __version__

    return {
        "schema_version": SCHEMA_VERSION,
        "version": __version__,
        "versions": {name: _version(name) for name in ("torch", "triton", "zarr", "numpy")},
        "created": datetime.now(timezone.utc).isoformat(timespec="seconds"),
        "spec": spec.to_dict(),
        "config": spec.to_dict()["config"],
        "fingerprint": spec.fingerprint(),
        "stat_names": list(STAT_NAMES),
        "storage": STORAGE_NOTE,
    }


def create_layout(root: zarr.Group, spec: RunSpec) -> None:
    """Create every array of ``spec`` under an empty root group, then the metadata and coordinates."""
    specs = array_specs(spec)
    created = create_arrays(root, {arr.path: array_options(spec, arr) for arr in specs})
    for arr in specs:
        if arr.dtype == "str":
            created[arr.path][:] = np.array(STAT_NAMES)
    root.attrs["attrstream"] = {**run_metadata(spec), "layout": "ready"}  # last: marks the layout whole

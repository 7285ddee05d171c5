"""The array list of a store (format :data:`SCHEMA_VERSION`), derived from a :class:`RunSpec` in one place.

The writer's expected keys, the layout creation, the reader and ``describe_store`` all read this
list, so a new array is added here once.
"""

from __future__ import annotations

import math
import sys
from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import datetime, timezone
from importlib import metadata as importlib_metadata
from typing import Any

import numpy as np
import zarr
from zarr.codecs import BloscCodec, BytesCodec, Crc32cCodec, ShardingCodec, VLenUTF8Codec, ZstdCodec
from zarr.core.buffer import default_buffer_prototype
from zarr.core.common import ZARR_JSON
from zarr.core.dtype import parse_dtype
from zarr.core.group import GroupMetadata
from zarr.core.metadata.v3 import ArrayV3Metadata
from zarr.storage import StorePath

from attrstream.engine.store.location import StoreLocation
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
    chunks: tuple[int, ...] | None = None  # off the example axis: the chunk shape (None: one chunk)

    @property
    def row_shape(self) -> tuple[int, ...]:
        return self.shape[1:]

    def shard_key(self, unit: int) -> str:
        """The store key of unit ``unit``'s shard (a per-example array)."""
        return shard_key(self.path, len(self.shape), unit)


def shard_key(path: str, ndim: int, unit: int) -> str:
    """The store key of unit ``unit``'s shard of the per-example array at ``path`` with ``ndim``
    axes: zarr's default chunk key encoding (``c/`` then the chunk's grid indices joined by ``/``),
    which every array of a store has, and shard length = unit."""
    return f"{path}/c/" + "/".join(map(str, (unit,) + (0,) * (ndim - 1)))


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
    arrays.append(ArraySpec("progress/unit_done", "uint8", (spec.n_units(),), ("unit",), per_example=False,
                            chunks=(1,)))
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


# Zarr's defaults for a string array (zarr.create_array(dtype=str)): the stat coordinate.
STRING_CODECS = (VLenUTF8Codec(), ZstdCodec(level=0, checksum=False))
CHUNK_KEY_ENCODING = {"name": "default", "separator": "/"}


def array_metadata(spec: RunSpec, arr: ArraySpec) -> ArrayV3Metadata:
    """The zarr metadata of one array of the layout, exactly as ``zarr.create_array`` writes it for
    the same options (tests/store/test_layout.py): per-example arrays sharded by unit along the
    example axis, Blosc + crc32c inside the shards; the others in ``arr.chunks``."""
    chunks = arr.chunks or arr.shape
    if arr.dtype == "str":
        dtype, fill, codecs = parse_dtype(str, zarr_format=3), "", STRING_CODECS
    else:
        np_dtype = np.dtype(arr.dtype)
        dtype, fill = parse_dtype(np_dtype, zarr_format=3), _fill_value(arr.dtype)
        codecs = (BytesCodec(), *compressors_for(spec, np_dtype))
        if arr.per_example:
            rows = inner_chunk_rows(np_dtype.itemsize * math.prod(arr.row_shape), spec.unit)
            codecs = (ShardingCodec(chunk_shape=(rows, *arr.row_shape), codecs=codecs),)
            chunks = (spec.unit, *arr.row_shape)
    return ArrayV3Metadata(
        shape=arr.shape, data_type=dtype, chunk_grid={"name": "regular", "configuration": {"chunk_shape": chunks}},
        chunk_key_encoding=CHUNK_KEY_ENCODING, fill_value=fill, codecs=codecs, attributes=arr.attrs,
        dimension_names=arr.dims,
    )


def create_arrays(location: StoreLocation, group: zarr.Group,
                  arrays: Mapping[str, ArrayV3Metadata]) -> dict[str, zarr.Array]:
    """Create the arrays ``{path from the root: metadata}`` under ``group``, whose subtree holds none
    of them yet: their metadata documents, and those of the new groups between, written directly.

    ``zarr.create_array`` costs ~2.5 ms an array in existence checks of the array and its parents
    and event-loop round trips, most of a one-batch sweep's store creation (a store has dozens of
    arrays); the documents are the same bytes. The handles returned write with :data:`WRITE_CONFIG`.
    """
    prototype = default_buffer_prototype()
    base = group.path.strip("/")
    inside = f"{base}/" if base else ""
    groups: set[str] = set()
    for path in arrays:
        if not path.startswith(inside):
            raise ValueError(f"Expected array paths under {base!r}, got {path!r}.")
        parts = path.split("/")
        groups.update(p for p in ("/".join(parts[:i]) for i in range(1, len(parts))) if len(p) > len(base))
    group_document = GroupMetadata().to_buffer_dict(prototype)[ZARR_JSON].to_bytes()
    for path in sorted(groups):
        location.write(f"{path}/{ZARR_JSON}", [group_document])
    for path, meta in arrays.items():
        location.write(f"{path}/{ZARR_JSON}", [meta.to_buffer_dict(prototype)[ZARR_JSON].to_bytes()])
    return {path: zarr.Array(zarr.AsyncArray(metadata=meta, store_path=StorePath(group.store, path), config=WRITE_CONFIG))
            for path, meta in arrays.items()}


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


def create_layout(location: StoreLocation, root: zarr.Group, spec: RunSpec) -> dict[str, zarr.Array]:
    """Create every array of ``spec`` under an empty root group, then the coordinates and the
    metadata; returns the arrays (open handles, for the writer)."""
    specs = array_specs(spec)
    created = create_arrays(location, root, {arr.path: array_metadata(spec, arr) for arr in specs})
    for arr in specs:
        if arr.dtype == "str":
            created[arr.path][:] = np.array(STAT_NAMES)
    root.attrs["attrstream"] = {**run_metadata(spec), "layout": "ready"}  # last: marks the layout whole
    return created

"""The streaming Zarr v3 store (DESIGN §2): layout, unit writer, resume, finalize, reader, info."""

from attrstream.engine.store.finalize import finalize_store
from attrstream.engine.store.info import describe_store
from attrstream.engine.store.layout import array_specs, example_arrays
from attrstream.engine.store.reader import Run, open_run
from attrstream.engine.store.spec import (
    LAYER_METHODS,
    METHODS,
    SCHEMA_VERSION,
    STAT_NAMES,
    LayerSpec,
    RunSpec,
)
from attrstream.engine.store.writer import StoreWriter

__all__ = [
    "LAYER_METHODS",
    "METHODS",
    "SCHEMA_VERSION",
    "STAT_NAMES",
    "LayerSpec",
    "Run",
    "RunSpec",
    "StoreWriter",
    "array_specs",
    "describe_store",
    "example_arrays",
    "finalize_store",
    "open_run",
]

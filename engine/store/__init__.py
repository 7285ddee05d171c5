"""The streaming Zarr v3 store: layout, unit writer, prepare/resume, finalize, reader, info."""

from attrstream.engine.store.finalize import finalize_store
from attrstream.engine.store.info import describe_store
from attrstream.engine.store.layout import array_specs, example_arrays
from attrstream.engine.store.prepare import open_writer
from attrstream.engine.store.reader import Run, open_run
from attrstream.engine.store.spec import SCHEMA_VERSION, LayerSpec, RunSpec
from attrstream.engine.store.writer import StoreWriter

__all__ = [
    "SCHEMA_VERSION",
    "LayerSpec",
    "Run",
    "RunSpec",
    "StoreWriter",
    "array_specs",
    "describe_store",
    "example_arrays",
    "finalize_store",
    "open_run",
    "open_writer",
]

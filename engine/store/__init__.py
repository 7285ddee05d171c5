"""The streaming Zarr v3 store: layout, unit writer, prepare/resume, finalize, reader, info.

Imports are lazy, so that reading a store (``open_run``) loads only the reader and the metadata
helpers, never the code that creates or resumes a store.
"""

from __future__ import annotations

from importlib import import_module
from typing import Any

_LAZY = {
    "Run": "reader",
    "open_run": "reader",
    "describe_store": "info",
    "finalize_store": "finalize",
    "RunningPools": "finalize",
    "open_writer": "prepare",
    "StoreWriter": "writer",
    "array_specs": "layout",
    "example_arrays": "layout",
    "SCHEMA_VERSION": "spec",
    "LayerSpec": "spec",
    "RunSpec": "spec",
    "Damage": "verify",
    "VerifyReport": "verify",
    "verify_store": "verify",
}

__all__ = sorted(_LAZY)


def __getattr__(name: str) -> Any:
    try:
        module = _LAZY[name]
    except KeyError:
        raise AttributeError(f"module 'attrstream.engine.store' has no attribute {name!r}") from None
    return getattr(import_module(f"attrstream.engine.store.{module}"), name)

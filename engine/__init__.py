"""attrstream engine: one forward and one backward per batch, streamed into Zarr v3 stores.

Public API: :func:`sweep` runs an extraction, :func:`open_run` reads a store back.
Imports are lazy so that ``attrstream --help`` does not pay for torch.
"""

from __future__ import annotations

from importlib import import_module
from typing import Any

__version__ = "0.1.0"

_LAZY = {
    "sweep": ("attrstream.engine.pipeline", "sweep"),
    "SweepConfig": ("attrstream.engine.pipeline", "SweepConfig"),
    "open_run": ("attrstream.engine.store", "open_run"),
}

__all__ = ["SweepConfig", "__version__", "open_run", "sweep"]


def __getattr__(name: str) -> Any:
    try:
        module, attr = _LAZY[name]
    except KeyError:
        raise AttributeError(f"module 'attrstream.engine' has no attribute {name!r}") from None
    return getattr(import_module(module), attr)

"""attrstream engine: one forward and one backward per batch, streamed into Zarr v3 stores.

Public API: :func:`sweep` runs an extraction, :func:`open_run` reads a store back, :func:`evaluate`
adds deletion/insertion curves of its maps.
Imports are lazy so that ``attrstream --help`` does not pay for torch.
"""

from __future__ import annotations

from importlib import import_module
from typing import Any

__version__ = "0.1.0"

_LAZY = {
    "sweep": ("attrstream.engine.pipeline", "sweep"),
    "SweepStats": ("attrstream.engine.pipeline", "SweepStats"),
    "SweepConfig": ("attrstream.engine.config", "SweepConfig"),
    "ModelSpec": ("attrstream.engine.config", "ModelSpec"),
    "DataSpec": ("attrstream.engine.config", "DataSpec"),
    "build_model": ("attrstream.engine.models", "build_model"),
    "build_dataset": ("attrstream.engine.data", "build_dataset"),
    "register_model": ("attrstream.engine.models", "register_model"),
    "register_dataset": ("attrstream.engine.data", "register_dataset"),
    "open_run": ("attrstream.engine.store", "open_run"),
    "evaluate": ("attrstream.engine.faithfulness.run", "evaluate"),
    "EvaluateConfig": ("attrstream.engine.config", "EvaluateConfig"),
    "export_tensorboard": ("attrstream.engine.export", "export_tensorboard"),
    "visualize_features": ("attrstream.engine.features.run", "visualize_features"),
    "FeaturesConfig": ("attrstream.engine.config", "FeaturesConfig"),
}

__all__ = ["DataSpec", "EvaluateConfig", "FeaturesConfig", "ModelSpec", "SweepConfig", "SweepStats", "__version__",
           "build_dataset", "build_model", "evaluate", "export_tensorboard", "open_run", "register_dataset",
           "register_model", "sweep", "visualize_features"]


def __getattr__(name: str) -> Any:
    try:
        module, attr = _LAZY[name]
    except KeyError:
        raise AttributeError(f"module 'attrstream.engine' has no attribute {name!r}") from None
    return getattr(import_module(module), attr)

"""Faithfulness of stored maps at data-set scale: deletion and insertion curves (Petsiuk et al., 2018).

- :mod:`.layout`: where the curves live in a store and which maps a store holds (torch-free: the
  renderer reads it).
- :mod:`.curves`: the definition in pure torch, batched over (example, step) pairs on any device.
- :mod:`.run`: :func:`evaluate`, the store job: read the maps, rerun the model on perturbed inputs,
  write ``metrics/`` unit by unit, resumably.

Imports are lazy, so that the command line's parser and the renderer never load torch through here.
"""

from __future__ import annotations

from importlib import import_module
from typing import Any

__all__ = ["evaluate"]


def __getattr__(name: str) -> Any:
    if name == "evaluate":
        return import_module("attrstream.engine.faithfulness.run").evaluate
    raise AttributeError(f"module 'attrstream.engine.faithfulness' has no attribute {name!r}")

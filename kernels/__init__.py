"""attrstream's fused attribution kernels, usable on their own (this package never imports the engine).

Each op takes activations or gradients as tensors and returns small per-example tensors; the
Triton kernel runs for CUDA tensors and the torch reference (the specification) otherwise, see
:class:`Backend`. The ops live in private modules, one per op, so that ``attrstream.kernels.<op>``
is the function itself. Attributes load on first use: ``attrstream.kernels.names`` and
``attrstream.kernels.errors`` stay importable without torch.
"""

from __future__ import annotations

from importlib import import_module
from typing import Any

_LAZY = {
    "BACKEND_ENV_VAR": ("_backend", "ENV_VAR"),
    "Backend": ("_backend", "Backend"),
    "channel_stats": ("_channel_stats", "channel_stats"),
    "grad_cam": ("_grad_cam", "grad_cam"),
    "layer_maps": ("_layer_maps", "layer_maps"),
    "product_map": ("_product_map", "product_map"),
    "saliency": ("_saliency", "saliency"),
    "ACTIVATION_STAT_NAMES": ("names", "ACTIVATION_STAT_NAMES"),
    "LAYOUTS": ("names", "LAYOUTS"),
    "REDUCTIONS": ("names", "REDUCTIONS"),
    "RELEVANCE": ("names", "RELEVANCE"),
    "SALIENCY_REDUCTIONS": ("names", "SALIENCY_REDUCTIONS"),
    "STAT_NAMES": ("names", "STAT_NAMES"),
    "BackendError": ("errors", "BackendError"),
    "KernelError": ("errors", "KernelError"),
    "KernelInputError": ("errors", "KernelInputError"),
}

__all__ = sorted(_LAZY)


def __getattr__(name: str) -> Any:
    try:
        module, attr = _LAZY[name]
    except KeyError:
        raise AttributeError(f"module 'attrstream.kernels' has no attribute {name!r}") from None
    value = getattr(import_module(f"attrstream.kernels.{module}"), attr)
    globals()[name] = value  # later lookups skip __getattr__
    return value

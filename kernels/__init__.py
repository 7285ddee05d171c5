"""attrstream's fused attribution kernels, usable on their own (this package never imports the engine).

Each op takes activations or gradients as tensors and returns small per-example tensors; the
Triton kernel runs for CUDA tensors and the torch reference (the specification) otherwise, see
:class:`Backend`. The ops live in private modules, one per op, so that ``attrstream.kernels.<op>``
is the function itself.
"""

from attrstream.kernels._backend import ENV_VAR as BACKEND_ENV_VAR
from attrstream.kernels._backend import Backend
from attrstream.kernels._channel_stats import channel_stats
from attrstream.kernels._grad_cam import grad_cam
from attrstream.kernels._layer_maps import layer_maps
from attrstream.kernels._product_map import product_map
from attrstream.kernels._saliency import saliency
from attrstream.kernels._vocabulary import LAYOUTS, REDUCTIONS, SALIENCY_REDUCTIONS, STAT_NAMES
from attrstream.kernels.errors import BackendError, KernelError, KernelInputError

__all__ = [
    "BACKEND_ENV_VAR",
    "LAYOUTS",
    "REDUCTIONS",
    "SALIENCY_REDUCTIONS",
    "STAT_NAMES",
    "Backend",
    "BackendError",
    "KernelError",
    "KernelInputError",
    "channel_stats",
    "grad_cam",
    "layer_maps",
    "product_map",
    "saliency",
]

"""grad×input and layer grad×activation: a channel reduction of x·g at every position.

``x`` is the model input (grad×input) or a layer's activation (grad×activation) and ``g`` its
gradient; both are read once by the shared channel-map kernel (``_maps``), in any memory layout.
The map comes back as ``values`` (map / scale in ``out_dtype``) and a per-example ``scale``
(max |map|), because a raw gradient map in float16 underflows.
"""

from __future__ import annotations

import torch

from attrstream.kernels import _maps
from attrstream.kernels._aot import CompileTarget
from attrstream.kernels._backend import Backend, dispatch
from attrstream.kernels.names import REDUCTIONS


def product_map_triton(
    x: torch.Tensor, g: torch.Tensor, reduce: str = "sum", out_dtype: torch.dtype = torch.float16
) -> tuple[torch.Tensor, torch.Tensor]:
    """Triton launcher of :func:`product_map`."""
    _check(x, g, reduce, out_dtype)
    return _maps.channel_maps_triton(x, g, None, reduce, out_dtype)[0]


def product_map_torch(
    x: torch.Tensor, g: torch.Tensor, reduce: str = "sum", out_dtype: torch.dtype = torch.float16
) -> tuple[torch.Tensor, torch.Tensor]:
    """Reference of :func:`product_map`: the specification and the CPU path."""
    _check(x, g, reduce, out_dtype)
    acc = _maps.accumulation_dtype(x.dtype)
    with torch.no_grad():
        m = _maps.reduce_channels_torch(x.to(acc) * g.to(acc), reduce)
        return _maps.normalize_torch(m, out_dtype)


def product_map(
    x: torch.Tensor, g: torch.Tensor, reduce: str = "sum", out_dtype: torch.dtype = torch.float16,
    backend: Backend | str | None = None,
) -> tuple[torch.Tensor, torch.Tensor]:
    """Reduce x·g over channels: ``(values [N,H,W] out_dtype, scale [N] float32)``.

    ``reduce`` (:data:`REDUCTIONS`): ``sum`` (signed), ``abs_sum``, ``l2`` (sqrt of Σ (x·g)²) or
    ``max_abs``. ``values * scale[:, None, None]`` is the map; ``scale[n]`` = max |map[n]|, 1 for
    an all-zero map. NaN in one example reaches that example's outputs only.
    """
    return dispatch(product_map_torch, product_map_triton, (x, g), backend, x, g, reduce, out_dtype)


def compile_targets() -> list[CompileTarget]:
    """Every specialization :func:`product_map_triton` can launch."""
    return _maps.channel_maps_targets(load_x=True, load_g=True, cam=False, reduces=REDUCTIONS)


def _check(x: torch.Tensor, g: torch.Tensor, reduce: str, out_dtype: torch.dtype) -> None:
    _maps.check_map_args("product_map", out_dtype, reduce, REDUCTIONS, x=x, g=g)

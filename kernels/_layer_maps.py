"""A sweep's per-layer work fused: statistics, grad×activation and Grad-CAM of one layer.

Separately, ``channel_stats``, ``product_map`` and ``grad_cam`` would read the activation ``a``
three times and its gradient ``g`` twice. Here each is read twice in all: pass 1 (one kernel,
per-(n, c) reductions over space) gives the statistics of ``a``, the relevance Σ a·g and the
spatial mean of ``g``, the Grad-CAM weights; pass 2 (one kernel, per-position reductions over channels) gives Σ_c a·g
and Σ_c mean(g)·a from the same loads, then both maps are scaled in one launch.
"""

from __future__ import annotations

import torch

from attrstream.kernels import _maps
from attrstream.kernels._aot import CompileTarget
from attrstream.kernels._backend import Backend, dispatch
from attrstream.kernels._channel_stats import channel_stats_torch, stats_and_grad_mean_triton
from attrstream.kernels._grad_cam import grad_cam_torch
from attrstream.kernels._product_map import product_map_torch
from attrstream.kernels.names import REDUCTIONS

Maps = tuple[torch.Tensor, tuple[torch.Tensor, torch.Tensor], tuple[torch.Tensor, torch.Tensor]]


def layer_maps_triton(
    a: torch.Tensor, g: torch.Tensor, reduce: str = "sum", out_dtype: torch.dtype = torch.float16
) -> Maps:
    """Triton launcher of :func:`layer_maps`: two passes over ``a`` and ``g``."""
    _check(a, g, reduce, out_dtype)
    stats, g_mean = stats_and_grad_mean_triton(a, g)
    grad_x_act, cam = _maps.channel_maps_triton(a, g, g_mean, reduce, out_dtype)
    return stats, grad_x_act, cam


def layer_maps_torch(
    a: torch.Tensor, g: torch.Tensor, reduce: str = "sum", out_dtype: torch.dtype = torch.float16
) -> Maps:
    """Reference of :func:`layer_maps`: by definition, the three separate ops."""
    _check(a, g, reduce, out_dtype)
    return channel_stats_torch(a, g=g), product_map_torch(a, g, reduce, out_dtype), grad_cam_torch(a, g, out_dtype)


def layer_maps(
    a: torch.Tensor, g: torch.Tensor, reduce: str = "sum", out_dtype: torch.dtype = torch.float16,
    backend: Backend | str | None = None,
) -> Maps:
    """Statistics, grad×activation and Grad-CAM of activation ``a`` and its gradient ``g``
    (``[N,C,h,w]``): ``(stats [N,C,6] float32, (gxa_values, gxa_scale), (cam_values, cam_scale))``,
    equal to ``channel_stats(a, g=g)`` (``STAT_NAMES``, relevance last),
    ``product_map(a, g, reduce, out_dtype)`` and ``grad_cam(a, g, out_dtype)``."""
    return dispatch(layer_maps_torch, layer_maps_triton, (a, g), backend, a, g, reduce, out_dtype)


def compile_targets() -> list[CompileTarget]:
    """Every specialization of pass 2 :func:`layer_maps_triton` can launch (pass 1 is listed by
    ``_channel_stats.compile_targets``)."""
    return _maps.channel_maps_targets(load_x=True, load_g=True, cam=True, reduces=REDUCTIONS)


def _check(a: torch.Tensor, g: torch.Tensor, reduce: str, out_dtype: torch.dtype) -> None:
    _maps.check_map_args("layer_maps", out_dtype, reduce, REDUCTIONS, a=a, g=g)

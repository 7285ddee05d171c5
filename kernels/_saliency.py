"""Saliency: a channel reduction of |g|, the input gradient's magnitude at every position.

The shared channel-map kernel (``_maps``) with the gradient alone: one read of ``g``.
``max_abs`` is Captum's ``Saliency(abs=True)`` followed by ``.amax(1)``.
"""

from __future__ import annotations

import torch

from attrstream.kernels import _maps
from attrstream.kernels._aot import CompileTarget
from attrstream.kernels._backend import Backend, dispatch
from attrstream.kernels.names import SALIENCY_REDUCTIONS


def saliency_triton(
    g: torch.Tensor, reduce: str = "max_abs", out_dtype: torch.dtype = torch.float16
) -> tuple[torch.Tensor, torch.Tensor]:
    """Triton launcher of :func:`saliency`."""
    _check(g, reduce, out_dtype)
    return _maps.channel_maps_triton(None, g, None, reduce, out_dtype)[0]


def saliency_torch(
    g: torch.Tensor, reduce: str = "max_abs", out_dtype: torch.dtype = torch.float16
) -> tuple[torch.Tensor, torch.Tensor]:
    """Reference of :func:`saliency`: the specification and the CPU path."""
    _check(g, reduce, out_dtype)
    with torch.no_grad():
        m = _maps.reduce_channels_torch(g.to(_maps.accumulation_dtype(g.dtype)), reduce)
        return _maps.normalize_torch(m, out_dtype)


def saliency(
    g: torch.Tensor,
    reduce: str = "max_abs",
    out_dtype: torch.dtype = torch.float16,
    backend: Backend | str | None = None,
) -> tuple[torch.Tensor, torch.Tensor]:
    """Reduce |g| over channels: ``(values [N,H,W] out_dtype, scale [N] float32)``.

    ``reduce`` (:data:`SALIENCY_REDUCTIONS`): ``max_abs`` (max |g|), ``abs_sum`` (Σ |g|) or ``l2``
    (sqrt of Σ g²). ``values * scale[:, None, None]`` is the map; ``scale[n]`` = max |map[n]|, 1
    for an all-zero map.
    """
    return dispatch(saliency_torch, saliency_triton, (g,), backend, g, reduce, out_dtype)


def compile_targets() -> list[CompileTarget]:
    """Every specialization :func:`saliency_triton` can launch."""
    return _maps.channel_maps_targets(load_x=False, load_g=True, cam=False, reduces=SALIENCY_REDUCTIONS)


def _check(g: torch.Tensor, reduce: str, out_dtype: torch.dtype) -> None:
    _maps.check_map_args("saliency", out_dtype, reduce, SALIENCY_REDUCTIONS, g=g)

"""Grad-CAM of one layer: ReLU(Σ_k mean_hw(g_k) · a_k) at every position.

Captum's ``LayerGradCam(relu_attributions=True)`` semantics. The channel weights are a spatial
mean of ``g`` (one read of ``g``, fp32 accumulation), then the shared channel-map kernel
(``_maps``) reads ``a`` once for the weighted channel sum, the ReLU and the scaling.
:func:`attrstream.kernels.layer_maps` computes the same map in a sweep's fused pass.
"""

from __future__ import annotations

import torch

from attrstream.kernels import _maps
from attrstream.kernels._aot import CompileTarget
from attrstream.kernels._backend import Backend, dispatch


def grad_cam_triton(
    a: torch.Tensor, g: torch.Tensor, out_dtype: torch.dtype = torch.float16
) -> tuple[torch.Tensor, torch.Tensor]:
    """Triton launcher of :func:`grad_cam`."""
    _check(a, g, out_dtype)
    with torch.no_grad():
        weights = g.mean(dim=(2, 3), dtype=torch.float32).contiguous()
    return _maps.channel_maps_triton(a, None, weights, "sum", out_dtype)[0]


def grad_cam_torch(
    a: torch.Tensor, g: torch.Tensor, out_dtype: torch.dtype = torch.float16
) -> tuple[torch.Tensor, torch.Tensor]:
    """Reference of :func:`grad_cam`: the specification and the CPU path."""
    _check(a, g, out_dtype)
    acc = _maps.accumulation_dtype(a.dtype)
    with torch.no_grad():
        weights = g.to(acc).mean(dim=(2, 3))
        # einsum contracts channels without an [N,K,h,w] temporary (~2x faster on CPU); relu keeps NaN
        cam = torch.relu(torch.einsum("nk,nkhw->nhw", weights, a.to(acc)))
        return _maps.normalize_torch(cam, out_dtype)


def grad_cam(
    a: torch.Tensor,
    g: torch.Tensor,
    out_dtype: torch.dtype = torch.float16,
    backend: Backend | str | None = None,
) -> tuple[torch.Tensor, torch.Tensor]:
    """Grad-CAM of activation ``a`` and its gradient ``g`` (``[N,K,h,w]``):
    ``(values [N,h,w] out_dtype, scale [N] float32)``, ``values * scale[:, None, None]`` the map."""
    return dispatch(grad_cam_torch, grad_cam_triton, (a, g), backend, a, g, out_dtype)


def compile_targets() -> list[CompileTarget]:
    """Every specialization :func:`grad_cam_triton` can launch."""
    return _maps.channel_maps_targets(load_x=True, load_g=False, cam=True, reduces=("sum",))


def _check(a: torch.Tensor, g: torch.Tensor, out_dtype: torch.dtype) -> None:
    _maps.check_map_args("grad_cam", out_dtype, a=a, g=g)
